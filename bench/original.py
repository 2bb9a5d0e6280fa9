"""The original ``pacifica-ingest`` 0.4.1 from PyPI: its frontend and Celery worker.

It runs against the real UniqueID and Archive Interface (``services.Backends``), stub policy
and metadata, SQLite (its ``dbsync`` only migrates PostgreSQL, so the two tables are created
from its own models) and RabbitMQ on a vhost of its own (its queue name is fixed).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess

from .services import Backends, cherrypy_config, free_port

logger = logging.getLogger(__name__)

VHOST = os.environ.get("BENCH_ORIGINAL_VHOST", "bench-original")
CREATE_TABLES = ("from pacifica.ingest.orm import IngestState, IngestStateSystem\n"
                 "IngestState.create_table(); IngestStateSystem.create_table()\n"
                 "IngestStateSystem.get_or_create_version()\n")


def rabbit_vhost(vhost: str = VHOST) -> str:
    """A RabbitMQ vhost for the original alone, emptied; its broker URL."""
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    listed = subprocess.run([ctl, "list_vhosts"], capture_output=True, text=True, timeout=60)
    if vhost not in listed.stdout.split():
        subprocess.run([ctl, "add_vhost", vhost], capture_output=True, timeout=60, check=True)
    subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   capture_output=True, timeout=60, check=True)
    subprocess.run([ctl, "purge_queue", "-p", vhost, "celery"], capture_output=True, timeout=60)
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


class Original:
    """The original frontend and worker on top of running ``Backends``."""

    def __init__(self, backends: Backends):
        self.backends = backends
        self.workdir = os.path.join(backends.workdir, "original")
        self.volume = os.path.join(self.workdir, "volume")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes = backends.processes

    def start(self) -> "Original":
        """Create its tables, start the frontend and the worker, wait for both."""
        os.makedirs(self.volume, exist_ok=True)
        logs = self.processes.logs
        broker = rabbit_vhost()
        env = dict(self.backends.base_env(), **self.backends.service_env(),
                   VOLUME_PATH=self.volume + "/",
                   PEEWEE_URL=f"sqlite:///{self.workdir}/ingest.sqlite3",
                   BROKER_URL=broker, BACKEND_URL="rpc://",
                   INGEST_CONFIG=os.path.join(self.workdir, "ingest.ini"),
                   INGEST_CPCONFIG=cherrypy_config(os.path.join(self.workdir, "ingest.cp"),
                                                   os.path.join(logs, "original-cp.log")))
        subprocess.run([self.backends.bin("python"), "-c", CREATE_TABLES], cwd=self.workdir,
                       env=env, check=True, capture_output=True, timeout=120)
        self.processes.spawn("original-frontend", [
            self.backends.bin("pacifica-ingest"), "-a", "127.0.0.1", "-p", str(self.port),
            "--cp-config", env["INGEST_CPCONFIG"]], env)
        self.processes.spawn("original-worker", [
            self.backends.bin("celery"), "-A", "pacifica.ingest.tasks", "worker",
            "--loglevel=INFO", "-n", f"bench-original-{self.port}@%h"], env)
        self.processes.wait_http("original-frontend", self.url + "/")
        self.processes.wait_log("original-worker", " ready.")
        return self

    def pids(self) -> dict[str, int]:
        """Root pids of the frontend and the worker, for RSS sampling."""
        return {"frontend": self.processes.procs["original-frontend"].pid,
                "worker": self.processes.procs["original-worker"].pid}

    def clean(self) -> None:
        """Drop finished bundles from the volume."""
        for name in os.listdir(self.volume):
            os.unlink(os.path.join(self.volume, name))
