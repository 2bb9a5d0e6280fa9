"""Readiness: is each thing the service needs there right now?  (No HTTP here.)

Each check returns a short detail when it passes and raises ``CheckFailed`` (or anything
else) when it does not; ``Readiness.report`` runs them all, times each, and keeps the answer
for a moment so a flood of probes costs the database and the broker nothing more.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import requests

from . import db, heartbeats, schema
from .config import Settings
from .intake.volume import READINESS_PROBE

CACHE_SECONDS = 1.0
PROBE_TIMEOUT = 3.0  # seconds any one check may take


class CheckFailed(Exception):
    """A check's words for why it failed."""


def check_database() -> str:
    """The database answers and its schema is the one this code needs."""
    try:
        with db.connection():
            db.database_proxy.execute_sql("SELECT 1")
            schema.require_compatible()
            major, minor = schema.current_version()
    except schema.SchemaError as err:
        raise CheckFailed(str(err)) from None
    except db.UNAVAILABLE_ERRORS as err:
        raise CheckFailed(f"the database does not answer ({type(err).__name__})") from None
    return f"reachable, schema {major}.{minor}"


def check_broker(celery_app) -> str:
    """A connection to the broker can be made."""
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=PROBE_TIMEOUT)
            transport = connection.transport_cls
    except Exception as err:  # kombu's errors are transport-specific
        raise CheckFailed(f"the broker does not answer ({type(err).__name__})") from None
    return f"reachable ({transport})"


def check_volume(volume_path: str, min_free_space: int) -> str:
    """The volume takes a file, and keeps more than ``min_free_space`` free."""
    try:
        with tempfile.NamedTemporaryFile(dir=volume_path, prefix=READINESS_PROBE) as probe:
            probe.write(b"ready")
            probe.flush()
            os.fsync(probe.fileno())
        free = shutil.disk_usage(volume_path).free
    except OSError as err:
        raise CheckFailed(f"the volume is not writable ({err.strerror})") from None
    if free <= min_free_space:
        raise CheckFailed("the volume is below its minimum free space ([ingest] min_free_space)")
    return "writable, free space above the minimum"


def check_workers(timeout: float, queue: str) -> str:
    """At least one worker of our queue has beaten within ``timeout`` seconds."""
    try:
        with db.connection():
            live = heartbeats.live_workers(timeout, queue)
            if not live:
                raise CheckFailed(heartbeats.no_worker_note(timeout, queue) or "no worker")
    except db.UNAVAILABLE_ERRORS:
        raise CheckFailed("unknown: the database does not answer") from None
    return f"{len(live)} live"


def check_service(url: str) -> str:
    """A remote Pacifica service answers HTTP (any status below 500)."""
    try:
        status = requests.get(url, timeout=PROBE_TIMEOUT, allow_redirects=False).status_code
    except requests.RequestException as err:
        raise CheckFailed(f"{_host_of(url)} does not answer ({type(err).__name__})") from None
    if status >= 500:
        raise CheckFailed(f"{_host_of(url)} answers {status}")
    return f"{_host_of(url)} answers {status}"


def _host_of(url: str) -> str:
    """scheme://host:port of a URL, without credentials or path."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def checks_for(settings: Settings, celery_app) -> dict[str, Callable[[], str]]:
    """Every readiness check this deployment needs, by name."""
    checks = {
        "database": check_database,
        "broker": lambda: check_broker(celery_app),
        "volume": lambda: check_volume(settings.ingest.volume_path,
                                       settings.ingest.min_free_space),
        "workers": lambda: check_workers(settings.celery.worker_timeout,
                                         settings.celery.queue_name),
    }
    services = settings.services
    for name, url in (("uniqueid", services.uniqueid), ("policy", services.policy),
                      ("archiveinterface", services.archiveinterface),
                      ("metadata", services.metadata)):
        if url:
            checks[name] = lambda url=url: check_service(url)
    return checks


class Readiness:
    """Runs the checks (at most once per CACHE_SECONDS) and reports them."""

    def __init__(self, checks: dict[str, Callable[[], str]]):
        self.checks = checks
        self._lock = threading.Lock()
        self._last: tuple[float, bool, dict] | None = None

    def report(self) -> tuple[bool, dict]:
        """(all passed, {"ready": bool, "checks": {name: {ok, detail, seconds}}})."""
        with self._lock:
            if self._last and time.monotonic() - self._last[0] < CACHE_SECONDS:
                return self._last[1], self._last[2]
            results = {name: _timed(check) for name, check in self.checks.items()}
            ready = all(result["ok"] for result in results.values())
            failing = [name for name, result in results.items() if not result["ok"]]
            body = {"ready": ready, "failing": failing, "checks": results}
            self._last = (time.monotonic(), ready, body)
            return ready, body


def _timed(check: Callable[[], str]) -> dict:
    started = time.monotonic()
    try:
        detail, ok = check(), True
    except CheckFailed as err:
        detail, ok = str(err), False
    except Exception as err:  # pylint: disable=broad-except
        detail, ok = f"the check failed ({type(err).__name__})", False
    return {"ok": ok, "detail": detail, "seconds": round(time.monotonic() - started, 4)}
