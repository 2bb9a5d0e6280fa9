"""In-process fixtures: a temp SQLite database (a copy of one dbsync made at the start of the
session), a temp volume and local archive, an enqueue that records job ids, and the worker
side run on those jobs in this process.

Nothing here starts a process, a server or a broker; every test gets fresh folders.
"""
from __future__ import annotations

import os
import shutil
import socket
import uuid

import kombu
import pytest

from pacifica.ingest import config, db, jobs, schema, worker
from pacifica.ingest.queue import TASK_FOR_KIND
from pacifica.ingest.web.app import create_app

from .wsgi_client import WsgiClient


class Recorder:
    """The enqueue callable the frontend is given: records (job id, kind) in order."""

    def __init__(self):
        self.jobs: list[tuple[int, str]] = []

    def __call__(self, job_id: int, kind: str) -> None:
        self.jobs.append((job_id, kind))

    @property
    def ids(self) -> list[int]:
        """The job ids recorded so far."""
        return [job_id for job_id, _ in self.jobs]


def unit_settings(base, **overrides) -> config.Settings:
    """Settings of one test: everything under ``base``, SQLite, kombu's in-memory broker.

    ``overrides`` are ``INGEST_<SECTION>_<KEY>`` names without the prefix, e.g.
    ``AUTH_ADMINS="boss"``."""
    environ = {
        "INGEST_INGEST_VOLUME_PATH": os.path.join(base, "volume"),
        "INGEST_ARCHIVEINTERFACE_LOCAL_PATH": os.path.join(base, "archive"),
        "INGEST_ARCHIVEINTERFACE_FSYNC": "false",
        "INGEST_DATABASE_PEEWEE_URL": f"sqlite:///{os.path.join(base, 'ingest.sqlite3')}",
        "INGEST_DATABASE_CONNECT_ATTEMPTS": "1",
        "INGEST_CELERY_BROKER_URL": "memory://",  # process-wide: a queue of its own per test
        "INGEST_CELERY_QUEUE_NAME": f"ingest-{uuid.uuid4().hex[:12]}",
        "INGEST_CELERY_QUEUE_PATH": os.path.join(base, "queue"),
        "INGEST_INGEST_MIN_FREE_SPACE": "0",
    }
    environ.update({f"INGEST_{name}": str(value) for name, value in overrides.items()})
    return config.load(environ=environ)


@pytest.fixture
def setting_overrides() -> dict:
    """Settings a test changes; override with
    ``@pytest.mark.parametrize("setting_overrides", [{"AUTH_ADMINS": "boss"}])``."""
    return {}


@pytest.fixture
def settings(tmp_path, setting_overrides):  # pylint: disable=redefined-outer-name
    """This test's settings (see ``unit_settings``)."""
    return unit_settings(str(tmp_path), **setting_overrides)


@pytest.fixture(scope="session")
def synced_database(tmp_path_factory) -> str:
    """A SQLite file whose schema dbsync's own code made, once per session."""
    made = unit_settings(str(tmp_path_factory.mktemp("synced")))
    db.bind(made.database)
    schema.sync()
    db.database_proxy.close()  # the last connection folds the WAL back into the file
    path = db.sqlite_file(made.database.url)
    assert not os.path.exists(path + "-wal"), "the synced database is not in one file"
    return path


@pytest.fixture
def database(settings, synced_database):  # pylint: disable=redefined-outer-name
    """The test's own SQLite database: a copy of the synced one, bound."""
    shutil.copyfile(synced_database, db.sqlite_file(settings.database.url))
    db.bind(settings.database)
    yield db.database_proxy
    db.database_proxy.close()


@pytest.fixture
def recorder() -> Recorder:
    """What the frontend handed to the broker."""
    return Recorder()


@pytest.fixture
def app(settings, database, recorder):  # pylint: disable=redefined-outer-name,unused-argument
    """The frontend's WSGI application as servers host it (get_state middleware included)."""
    return create_app(settings, enqueue=recorder)


@pytest.fixture
def client(app) -> WsgiClient:  # pylint: disable=redefined-outer-name
    """Requests to ``app``, from a loopback peer (a trusted proxy by default)."""
    return WsgiClient(app)


@pytest.fixture
def run_recorded(recorder, run_job):  # pylint: disable=redefined-outer-name
    """Run the worker side, in this process, on every job recorded and not yet run; returns
    their ids."""
    done = set()

    def run() -> list[int]:
        ran = [(job_id, kind) for job_id, kind in recorder.jobs if job_id not in done]
        for job_id, kind in ran:
            done.add(job_id)
            run_job(job_id, kind)
        return [job_id for job_id, _ in ran]

    return run


@pytest.fixture
def landed(settings, database):  # pylint: disable=redefined-outer-name,unused-argument
    """Put a bundle on the volume with its job row as the frontend leaves it: whole, queued.

    ``landed(body, user="root")`` returns the job id (1, 2, ... per test)."""
    made = []

    def land(body: bytes, user: str = "root") -> int:
        job_id = len(made) + 1
        path = os.path.join(settings.ingest.volume_path, f"{job_id}.tar")
        os.makedirs(settings.ingest.volume_path, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(body)
        jobs.create(job_id, user, path=path, bytes_expected=len(body))
        jobs.set_fields(job_id, bytes_received=len(body), task_percent=100.0,
                        queue_state=jobs.QUEUED)
        made.append(job_id)
        return job_id

    return land


@pytest.fixture
def run_job(settings, database):  # pylint: disable=redefined-outer-name,unused-argument
    """Run the worker side of one job in this process, as its Celery task does:
    ``run_job(job_id, kind="upload")`` returns the job's row afterwards."""
    deps = worker.build_deps(settings)

    def run(job_id: int, kind: str = jobs.KIND_UPLOAD) -> jobs.Job:
        worker.run_job(job_id, TASK_FOR_KIND[kind], lambda: deps, settings.ingest.stale_after)
        return jobs.get(job_id)

    return run


def archive_listing(settings: config.Settings) -> list[str]:
    """Every file under the local archive, relative to it."""
    root = settings.archive.local_path
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def dead_owner_here() -> str:
    """A job owner naming a process of this host that cannot exist (a pid above pid_max)."""
    with open("/proc/sys/kernel/pid_max", encoding="ascii") as handle:
        return f"{socket.gethostname()}:{int(handle.read()) + 1}"


def live_owner_here() -> str:
    """A job owner naming a process of this host that runs and started before any job (init)."""
    return f"{socket.gethostname()}:1"


def take_messages(settings: config.Settings) -> list[kombu.Message]:
    """Every message waiting on the settings' queue, acknowledged (real kombu, in memory)."""
    taken = []
    with kombu.Connection(settings.celery.broker_url) as connection:
        with connection.SimpleQueue(settings.celery.queue_name) as waiting:
            while True:
                try:
                    message = waiting.get(block=False)
                except waiting.Empty:
                    return taken
                message.ack()
                taken.append(message)
