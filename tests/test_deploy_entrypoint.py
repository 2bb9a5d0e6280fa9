"""docker/entrypoint.sh on this host: it waits for the database, migrates it once however many
containers start together, and only then runs the image's command."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import MARIADB, Database, free_port
from images import ROOT

ENTRYPOINT = os.path.join(ROOT, "docker", "entrypoint.sh")
DBCHK = ["pacifica-ingest-cmd", "dbchk", "--equal"]


def mariadb_answers() -> bool:
    """MariaDB listens where the harness expects it."""
    try:
        socket.create_connection((MARIADB["host"], MARIADB["port"]), timeout=2).close()
        return True
    except OSError:
        return False


needs_mariadb = pytest.mark.skipif(not mariadb_answers(), reason="MariaDB does not answer")


@pytest.fixture
def database(tmp_path):
    """A fresh, empty MariaDB schema."""
    created = Database("mariadb", str(tmp_path))
    yield created
    created.drop()


def entrypoint_env(url: str, **extra: str) -> dict:
    """The environment a container would get, pointed at this database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("INGEST_")}
    env.update(PEEWEE_URL=url, PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                                     env.get("PATH", "")]))
    env.update(extra)
    return env


def run_entrypoint(command: list[str], env: dict, cwd: str) -> subprocess.CompletedProcess:
    """docker/entrypoint.sh COMMAND..., as the container runs it."""
    return subprocess.run([ENTRYPOINT, *command], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@needs_mariadb
def test_containers_starting_together_migrate_once(database, tmp_path):
    env = entrypoint_env(database.url)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: run_entrypoint(DBCHK, env, str(tmp_path)), range(4)))
    logs = "".join(result.stderr for result in results)
    assert [result.returncode for result in results] == [0, 0, 0, 0], logs
    assert logs.count("creating the database schema") == 1, logs
    assert logs.count("database schema already at") == 3, logs


class LateDatabase:
    """A port that starts forwarding to MariaDB only after a delay: a database container
    that is still starting when ours is."""

    def __init__(self, delay: float):
        self.port = free_port()
        self.delay = delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "LateDatabase":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        if self._stop.wait(self.delay):
            return
        with socket.create_server(("127.0.0.1", self.port)) as server:
            server.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    client, _ = server.accept()
                except socket.timeout:
                    continue
                upstream = socket.create_connection((MARIADB["host"], MARIADB["port"]))
                for source, target in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@needs_mariadb
def test_waits_for_a_database_that_comes_up_late(database, tmp_path):
    with LateDatabase(delay=3) as late:
        url = database.url.replace(f":{MARIADB['port']}/", f":{late.port}/")
        env = entrypoint_env(url, DATABASE_CONNECT_ATTEMPTS="60", DATABASE_CONNECT_WAIT="0.5")
        result = run_entrypoint(DBCHK, env, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "database not ready" in result.stderr
    assert "creating the database schema" in result.stderr


def test_gives_up_and_never_starts_the_command(tmp_path):
    marker = tmp_path / "started"
    env = entrypoint_env(f"mysql://root@127.0.0.1:{free_port()}/nothing",
                         DATABASE_CONNECT_ATTEMPTS="2", DATABASE_CONNECT_WAIT="0.1")
    result = run_entrypoint(["touch", str(marker)], env, str(tmp_path))
    assert result.returncode != 0
    assert not marker.exists()
    assert "not starting touch" in result.stderr


def test_skip_runs_the_command_straight_away(tmp_path):
    marker = tmp_path / "started"
    env = entrypoint_env(f"mysql://root@127.0.0.1:{free_port()}/nothing", INGEST_DB_INIT="skip")
    result = run_entrypoint(["touch", str(marker)], env, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert marker.exists()


def test_refuses_unknown_mode_and_missing_command(tmp_path):
    env = entrypoint_env("sqlite:///unused.sqlite3", INGEST_DB_INIT="sometimes")
    assert run_entrypoint(["true"], env, str(tmp_path)).returncode == 64
    assert run_entrypoint([], entrypoint_env("sqlite:///unused"), str(tmp_path)).returncode == 64


def test_sqlite_default_syncs_and_runs(tmp_path):
    """Without any database server: the embedded SQLite file, as on a laptop."""
    env = entrypoint_env(f"sqlite:///{tmp_path / 'ingest.sqlite3'}")
    result = run_entrypoint(DBCHK, env, str(tmp_path))
    assert result.returncode == 0, result.stderr
