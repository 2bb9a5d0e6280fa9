"""Real processes for end-to-end tests and benchmarks: a frontend, workers, a database, a broker.

The database and broker are chosen by environment, not by editing code:
``INGEST_TEST_DATABASE`` = ``sqlite`` (default) | ``mariadb``;
``INGEST_TEST_BROKER`` = ``filesystem`` (default) | ``rabbitmq`` | ``redis``.
Each Stack gets its own database (a fresh MariaDB schema) and its own queue name,
so runs never see each other's jobs.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import closing

import requests

import processes

logger = logging.getLogger(__name__)

MARIADB = dict(host=os.environ.get("INGEST_TEST_MYSQL_HOST", "127.0.0.1"),
               port=int(os.environ.get("INGEST_TEST_MYSQL_PORT", "3306")), user="root",
               password="")
BROKERS = {
    "filesystem": "filesystem://",
    "rabbitmq": os.environ.get("INGEST_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    "redis": os.environ.get("INGEST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}
READY_TIMEOUT = 60


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chosen_database() -> str:
    """The database kind the environment asks for."""
    return os.environ.get("INGEST_TEST_DATABASE", "sqlite")


def chosen_broker() -> str:
    """The broker kind the environment asks for."""
    return os.environ.get("INGEST_TEST_BROKER", "filesystem")


class Database:
    """A fresh database for one stack: a SQLite file or a new MariaDB schema."""

    def __init__(self, kind: str, base: str):
        self.kind = kind
        self.name = f"ingest_test_{uuid.uuid4().hex[:12]}"
        if kind == "sqlite":
            self.url = f"sqlite:///{os.path.join(base, 'ingest.sqlite3')}"
        elif kind == "mariadb":
            self._mysql(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4")
            self.url = f"mysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{self.name}"
        else:
            raise ValueError(f"unknown INGEST_TEST_DATABASE {kind!r}")

    @staticmethod
    def _mysql(statement: str) -> None:
        import pymysql  # pylint: disable=import-outside-toplevel
        connection = pymysql.connect(**MARIADB)
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def drop(self) -> None:
        """Remove the MariaDB schema (a SQLite file goes with its directory)."""
        if self.kind == "mariadb":
            self._mysql(f"DROP DATABASE IF EXISTS `{self.name}`")


class Stack:
    """One frontend and N workers sharing a volume, an archive, a database and a queue."""

    def __init__(self, base: str, database: str | None = None, broker: str | None = None,
                 workers: int = 1, concurrency: int = 2, extra_env: dict | None = None,
                 frontend_command: list[str] | None = None,
                 worker_command: list[str] | None = None):
        self.base = base
        os.makedirs(base, exist_ok=True)
        self.volume = os.path.join(base, "volume")
        self.archive = os.path.join(base, "archive")
        self.database = Database(database or chosen_database(), base)
        self.broker_kind = broker or chosen_broker()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update({
            "VOLUME_PATH": self.volume,
            "ARCHIVE_PATH": self.archive,
            "PEEWEE_URL": self.database.url,
            "BROKER_URL": BROKERS[self.broker_kind],
            "INGEST_CELERY_QUEUE_PATH": os.path.join(base, "queue"),
            "INGEST_CELERY_QUEUE_NAME": f"ingest-{uuid.uuid4().hex[:10]}",
            "INGEST_CELERY_CONCURRENCY": str(concurrency),
            "INGEST_INGEST_PROGRESS_INTERVAL": "0.1",
            "INGEST_LOG_LEVEL": "INFO",
            "INGEST_BIND": f"127.0.0.1:{self.port}",  # gunicorn/uwsgi (docker/*.conf)
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
            "PYTHONUNBUFFERED": "1",
        })
        self.env.pop("INGEST_CONFIG", None)
        self.env.update(extra_env or {})
        self.frontend: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.worker_count = workers
        # Other start commands (e.g. the Docker images'); default: CherryPy's own server and
        # `celery worker`.  The frontend one must listen on $INGEST_BIND.
        self.frontend_command = frontend_command
        self.worker_command = worker_command
        self._logs: list = []
        self.session = requests.Session()

    # -- processes -------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(os.path.join(self.base, f"{name}.log"), "ab")  # pylint: disable=consider-using-with
        self._logs.append(log)
        return processes.spawn(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                               cwd=self.base)

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``pacifica-ingest-cmd`` with this stack's settings."""
        result = subprocess.run([sys.executable, "-m", "pacifica.ingest.admin", *args],
                                env=self.env, cwd=self.base, capture_output=True, text=True,
                                timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"pacifica-ingest-cmd {' '.join(args)} failed:\n{result.stderr}")
        return result

    def start_frontend(self, wait: bool = True) -> subprocess.Popen:
        """Start the frontend on this stack's port."""
        command = self.frontend_command or [sys.executable, "-m", "pacifica.ingest", "-p",
                                            str(self.port), "-a", "127.0.0.1"]
        self.frontend = self._spawn("frontend", command)
        if wait:
            self.wait_ready()
        return self.frontend

    def start_worker(self) -> subprocess.Popen:
        """Start one more Celery worker process."""
        index = len(self.workers)
        command = self.worker_command or [
            sys.executable, "-m", "celery", "-A", "pacifica.ingest.tasks", "worker",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        worker = self._spawn(f"worker{index}",
                             [*command, "-n", f"w{index}-{uuid.uuid4().hex[:6]}@%h"])
        self.workers.append(worker)
        return worker

    def start(self) -> "Stack":
        """dbsync, then the frontend and the workers."""
        self.admin("dbsync")
        self.start_frontend()
        for _ in range(self.worker_count):
            self.start_worker()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until ``GET /`` answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.frontend is not None and self.frontend.poll() is not None:
                raise AssertionError(f"frontend exited with {self.frontend.returncode}:\n"
                                     + self.log("frontend"))
            try:
                if self.session.get(self.url + "/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("frontend did not come up:\n" + self.log("frontend"))

    @staticmethod
    def kill(process: subprocess.Popen | None, sig: int = signal.SIGTERM,
             timeout: float = 30) -> None:
        """Stop a process and its whole group (see ``processes.end``)."""
        processes.end(process, sig, timeout)

    def stop(self) -> None:
        """Stop every process and drop the database."""
        for worker in self.workers:
            self.kill(worker)
        self.kill(self.frontend)
        for log in self._logs:
            log.close()
        self.session.close()
        self.database.drop()

    def log(self, name: str) -> str:
        """The tail of a process's log."""
        path = os.path.join(self.base, f"{name}.log")
        if not os.path.exists(path):
            return ""
        with open(path, "rb") as handle:
            return handle.read()[-6000:].decode("utf-8", "replace")

    # -- client ----------------------------------------------------------------------------

    def upload(self, body: bytes, path: str = "/upload", headers: dict | None = None) -> dict:
        """POST a bundle; return the JSON answer (asserting 200)."""
        headers = {"Content-Type": "application/octet-stream", **(headers or {})}
        try:
            reply = self.session.post(self.url + path, data=body, timeout=120, headers=headers)
        except requests.ConnectionError:
            if not isinstance(body, bytes):
                raise
            # A kept-alive connection the server closed as idle just as this request went
            # out: nothing was answered, so send it again on a new connection.
            self.session.close()
            reply = self.session.post(self.url + path, data=body, timeout=120, headers=headers)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def move(self, document) -> requests.Response:
        """POST a move request (a JSON document, or raw bytes sent as they are)."""
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        return self.session.post(self.url + "/move", data=body, timeout=60,
                                 headers={"Content-Type": "application/json"})

    def state(self, job_id: int) -> dict:
        """The job state object."""
        reply = self.session.get(self.url + "/get_state", params={"job_id": job_id}, timeout=30)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def wait(self, job_id: int, timeout: float = 120) -> dict:
        """Poll until the job is complete or FAILED, as the real client does."""
        deadline = time.monotonic() + timeout
        state = self.state(job_id)
        while time.monotonic() < deadline:
            state = self.state(job_id)
            if state["complete"] or state["state"] == "FAILED":
                return state
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish in {timeout}s: {state}\n"
                             + "\n".join(self.log(f"worker{n}") for n in range(len(self.workers))))

    def ingest(self, body: bytes, timeout: float = 120, **kwargs) -> dict:
        """Upload and wait for the outcome."""
        return self.wait(self.upload(body, **kwargs)["job_id"], timeout)

    def files(self, job_id: int, page: int = 10000) -> dict:
        """What a job put in the embedded catalog: every page of ``get_files`` joined."""
        listing: dict = {}
        while not listing or len(listing["files"]) < listing["total"]:
            reply = self.session.get(self.url + "/get_files", timeout=60, params={
                "job_id": job_id, "offset": len(listing.get("files", [])), "limit": page})
            assert reply.status_code == 200, reply.text
            answer = reply.json()
            if not listing:
                listing = answer
            else:
                listing["files"].extend(answer["files"])
            if not answer["files"]:
                break
        return listing

    def archived(self, job_id: int) -> dict[str, bytes]:
        """What a job stored, as {"subdir/name": bytes read back from the archive}."""
        found = {}
        for entry in self.files(job_id)["files"]:
            path = f"{entry['subdir']}/{entry['name']}" if entry["subdir"] else entry["name"]
            with open(self.archive_path(entry["_id"]), "rb") as handle:
                found[path] = handle.read()
        return found

    def archive_path(self, file_id: int) -> str:
        """Where the local archive keeps a file id."""
        return os.path.join(self.archive, str(file_id // 1_000_000), str(file_id // 1000 % 1000),
                            str(file_id))

    def archive_files(self) -> list[str]:
        """Every file under the archive directory (partial copies included)."""
        found = []
        for folder, _, names in os.walk(self.archive):
            found.extend(os.path.join(folder, name) for name in names)
        return sorted(found)

    def volume_files(self) -> list[str]:
        """Every file (not folder) at the top of the volume."""
        if not os.path.isdir(self.volume):
            return []
        return sorted(name for name in os.listdir(self.volume)
                      if os.path.isfile(os.path.join(self.volume, name)))

    def clean(self) -> None:
        """Forget the archive's contents (between tests sharing a stack)."""
        shutil.rmtree(self.archive, ignore_errors=True)
