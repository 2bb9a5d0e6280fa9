"""``pacifica-ingest``: run the frontend on CherryPy's server (optionally with a worker)."""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import subprocess
import sys

import cherrypy

from . import logsetup, schema, startup
from .recovery import Janitor
from .web.app import create_app, server_config
from .intake.resumable import TusSweeper

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (the original's, plus --with-worker)."""
    parser = argparse.ArgumentParser(
        prog="pacifica-ingest", description="Run the Pacifica Ingest frontend.",
        epilog="Exit status: 0 stopped, 2 bad settings, 3 no database or an old schema (pass "
               "--dbsync), "
               "4 the address or port cannot be listened on (pass -p/-a).")
    parser.add_argument("-c", "--config", metavar="CONFIG", default=os.environ.get("INGEST_CONFIG"),
                        help="INI settings file (default: $INGEST_CONFIG, then built-in defaults)")
    parser.add_argument("--cp-config", metavar="CPCONFIG",
                        default=os.environ.get("INGEST_CPCONFIG"),
                        help="CherryPy server config file (default: $INGEST_CPCONFIG)")
    parser.add_argument("-p", "--port", type=int, default=8066, help="port (default 8066)")
    parser.add_argument("-a", "--address", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument("--with-worker", action="store_true",
                        help="also run a Celery worker process (the one-command local setup)")
    parser.add_argument("--dbsync", action="store_true",
                        help="create or upgrade the database schema before starting")
    return parser.parse_args(argv)


def listen_problem(address: str, port: int) -> str | None:
    """Why the frontend could not listen on address:port (None when it can), in one line."""
    try:
        family, kind, proto, _, where = socket.getaddrinfo(address, port, 0, socket.SOCK_STREAM,
                                                           0, socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind(where)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            return (f"{address}:{port} is already in use (another pacifica-ingest?): pass another "
                    f"port with -p, e.g. `pacifica-ingest -p {port + 1}` or `bash scripts/run.sh "
                    f"-p {port + 1}`, or another address with -a")
        return f"cannot listen on {address}:{port} ({err.strerror or err}): pass -a/-p"
    return None


def _die_with_parent() -> None:
    """In the worker child before exec: SIGTERM it when the frontend dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the frontend died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def start_worker(config_path: str | None) -> subprocess.Popen:
    """A Celery worker in a child process with the same settings, ended when we end.

    It leads a process group of its own (its pool processes join it), so ``stop_worker`` can
    end the whole group, and the kernel sends it SIGTERM if the frontend is killed."""
    env = dict(os.environ)
    if config_path:
        env["INGEST_CONFIG"] = os.path.abspath(config_path)
    command = [sys.executable, "-m", "celery", "-A", "pacifica.ingest.tasks", "worker",
               "--loglevel", os.environ.get("INGEST_LOG_LEVEL", "INFO"), "--without-gossip",
               "--without-mingle", "--without-heartbeat"]
    logger.info("starting worker: %s", " ".join(command))
    return subprocess.Popen(command, env=env, start_new_session=True,  # pylint: disable=consider-using-with
                            preexec_fn=_die_with_parent)


def stop_worker(worker: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the worker (a warm shutdown), then SIGKILL whatever is left of its group."""
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            logger.warning("worker %d did not stop in %.0f s; killing it", worker.pid, grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=grace)


def start_background(app, settings) -> list:
    """The frontend's background threads: the job janitor (after one sweep now, before serving
    fails uploads a dead frontend left behind) and the tus expiry sweeper. Returns them."""
    janitor = Janitor(app.intake.enqueue, settings.ingest)
    try:
        janitor.pass_once()
    except Exception:  # the database may not be there yet; the thread tries again
        logger.warning("start-up sweep of abandoned jobs failed", exc_info=True)
    janitor.start()
    sweeper = TusSweeper(app.tus)
    sweeper.start()
    return [janitor, sweeper]


def main(argv=None) -> int:
    """Entry point of ``pacifica-ingest``."""
    args = parse_args(argv)
    logsetup.configure()
    problem = listen_problem(args.address, args.port)
    if problem:
        logger.error("%s", problem)
        return 4
    try:
        settings = startup.prepare(args.config, create_database=args.dbsync)
    except schema.SchemaError as err:
        logger.error("%s", err)
        return 3
    if settings is None:
        return 2
    try:
        schema.check_at_start(settings.database, upgrade=args.dbsync)
    except schema.SchemaError as err:
        logger.error("%s", err)
        return 3
    app = create_app(settings)
    cherrypy.tree.mount(app, "")
    cherrypy.config.update(server_config(settings, args.address, args.port))
    if args.cp_config:
        cherrypy.config.update(args.cp_config)
    background = start_background(app, settings)
    worker = start_worker(args.config) if args.with_worker else None
    try:
        cherrypy.engine.signals.subscribe()
        cherrypy.engine.start()  # returns once the port is bound
        logger.info("Pacifica Ingest listening on http://%s:%d/", args.address, args.port)
        cherrypy.engine.block()
    finally:
        for thread in background:
            thread.stop()
        if worker is not None:
            stop_worker(worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
