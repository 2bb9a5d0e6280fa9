"""The real Pacifica back ends the original uses (UniqueID, Archive Interface) plus stubs.

They run from their own venv, ``bench/.venvs/original``, which also holds the original
``pacifica-ingest`` 0.4.1 (see ``original.py``).  The pins are the ones that work on
Python 3.11 today: peewee < 4 (the services use the ``sqliteext://`` scheme and
``peewee.text_type``), setuptools < 81 (``pkg_resources`` for the ``pacifica`` namespace)
and ``six``, which pacifica-ingest imports without declaring it.
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
from contextlib import closing

import requests

logger = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("BENCH_ORIGINAL_VENV", os.path.join(HERE, ".venvs", "original"))
PINS = [
    "pacifica-ingest==0.4.1", "pacifica-archiveinterface==0.4.2", "pacifica-uniqueid==0.5.1",
    "pacifica-namespace==0.0.2", "peewee==3.17.9", "celery==5.4.0", "kombu==5.4.2",
    "CherryPy==18.10.0", "cheroot==10.0.1", "requests==2.32.3", "six==1.17.0",
    "PyMySQL==1.1.1", "setuptools==65.5.0",
]
READY_TIMEOUT = 60.0


def ensure_venv(venv: str = VENV) -> str:
    """Create the venv of the original stack once (a stamp file records the pins)."""
    stamp = os.path.join(venv, ".bench-pins.json")
    wanted = json.dumps(sorted(PINS))
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as handle:
            if handle.read() == wanted:
                return venv
    if not os.path.exists(os.path.join(venv, "bin", "python")):
        subprocess.run(["python3", "-m", "venv", venv], check=True)
    logger.info("installing the original stack into %s (once)", venv)
    subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", *PINS], check=True)
    with open(stamp, "w", encoding="utf-8") as handle:
        handle.write(wanted)
    return venv


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cherrypy_config(path: str, error_log: str) -> str:
    """The CherryPy config the Pacifica services need: MethodDispatcher, no reloader, no cap."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[global]\n"
                     "engine.autoreload.on: False\n"
                     "log.screen: False\n"
                     "log.access_file: ''\n"
                     f"log.error_file: {error_log!r}\n"
                     "server.max_request_body_size: 0\n"
                     "server.socket_timeout: 60\n"
                     "server.thread_pool: 32\n"
                     "[/]\n"
                     "request.dispatch: cherrypy.dispatch.MethodDispatcher()\n"
                     "tools.response_headers.on: True\n"
                     "tools.response_headers.headers: [('Content-Type', 'application/json')]\n")
    return path


class Processes:
    """Named child processes in their own sessions, logs under ``workdir/logs``."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.logs = os.path.join(workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}

    def spawn(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        """Start a process with its output in ``logs/<name>.log``."""
        with open(os.path.join(self.logs, f"{name}.log"), "ab") as log:
            proc = subprocess.Popen(argv, cwd=self.workdir, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def tail(self, name: str) -> str:
        """The end of a process's log."""
        try:
            with open(os.path.join(self.logs, f"{name}.log"), "rb") as handle:
                return handle.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_http(self, name: str, url: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until ``url`` answers below 500 (fail early if the process died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}:\n"
                                   + self.tail(name))
            try:
                if requests.get(url, timeout=2).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer {url} in {timeout}s:\n" + self.tail(name))

    def wait_log(self, name: str, needle: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the process's log contains ``needle``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}:\n"
                                   + self.tail(name))
            if needle in self.tail(name):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} never logged {needle!r}:\n" + self.tail(name))

    def stop(self) -> None:
        """SIGTERM each process group, SIGKILL what is left after 15 s."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        self.procs.clear()


class Backends:
    """UniqueID and Archive Interface (real, from PyPI) plus policy/metadata stubs."""

    def __init__(self, workdir: str, venv: str = VENV):
        self.workdir = os.path.abspath(workdir)
        self.venv = venv
        self.processes = Processes(self.workdir)
        self.archive_root = os.path.join(self.workdir, "archive")
        self.ports = {name: free_port() for name in ("uniqueid", "archiveinterface", "policy",
                                                     "metadata")}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in self.ports.items()}

    def bin(self, name: str) -> str:
        """A console script of the original venv."""
        return os.path.join(self.venv, "bin", name)

    def base_env(self) -> dict:
        """The environment for the venv's programs: no config files from $HOME."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "VIRTUAL_ENV", "INGEST_"))}
        env["PATH"] = os.path.join(self.venv, "bin") + os.pathsep + env.get("PATH", "")
        env["HOME"] = self.workdir
        return env

    def start(self) -> "Backends":
        """Start the four services and wait for each to answer."""
        os.makedirs(self.archive_root, exist_ok=True)
        logs = self.processes.logs
        env = dict(self.base_env(), PEEWEE_URL=f"sqlite:///{self.workdir}/uniqueid.sqlite3",
                   UNIQUEID_CONFIG=os.path.join(self.workdir, "uniqueid.ini"),
                   UNIQUEID_CPCONFIG=cherrypy_config(os.path.join(self.workdir, "uniqueid.cp"),
                                                     os.path.join(logs, "uniqueid-cp.log")))
        subprocess.run([self.bin("pacifica-uniqueid-cmd"), "dbsync"], cwd=self.workdir, env=env,
                       check=True, capture_output=True, timeout=120)
        self.processes.spawn("uniqueid", [self.bin("pacifica-uniqueid"), "-a", "127.0.0.1", "-p",
                                          str(self.ports["uniqueid"]), "--cpconfig",
                                          env["UNIQUEID_CPCONFIG"]], env)
        cpconfig = cherrypy_config(os.path.join(self.workdir, "archiveinterface.cp"),
                                   os.path.join(logs, "archiveinterface-cp.log"))
        env = dict(self.base_env(),
                   ARCHIVEINTERFACE_CONFIG=os.path.join(self.workdir, "archiveinterface.ini"),
                   ARCHIVEINTERFACE_CPCONFIG=cpconfig)
        self.processes.spawn("archiveinterface", [
            self.bin("pacifica-archiveinterface"), "-a", "127.0.0.1", "-p",
            str(self.ports["archiveinterface"]), "-t", "posix", "--prefix", self.archive_root,
            "--cherrypy-config", cpconfig], env)
        for name in ("policy", "metadata"):
            self.processes.spawn(name, [sys.executable, "-m", "bench.stub",
                                        str(self.ports[name])],
                                 dict(os.environ, PYTHONPATH=os.path.dirname(HERE)))
        for name, url in self.urls.items():
            self.processes.wait_http(name, url + "/")
        return self

    def service_env(self) -> dict:
        """The original's variable names pointing at these services (ours reads them too)."""
        return {"UNIQUEID_URL": self.urls["uniqueid"],
                "ARCHIVEINTERFACE_URL": self.urls["archiveinterface"],
                "POLICY_INGEST_URL": self.urls["policy"] + "/ingest",
                "METADATA_INGEST_URL": self.urls["metadata"] + "/ingest"}

    def clean_archive(self) -> None:
        """Empty the archive between runs (the services keep running)."""
        for name in os.listdir(self.archive_root):
            path = os.path.join(self.archive_root, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    def stop(self) -> None:
        """Stop every service."""
        self.processes.stop()
