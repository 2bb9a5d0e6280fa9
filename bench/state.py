"""``get_state`` under wrk on one running frontend: idle, then while an upload streams into it."""
from __future__ import annotations

import logging
import os
import sys
import time

from . import load
from .client import Client, finished
from .floor import settle
from .measure import SlowUpload
from .report import CEILING
from .services import Processes, free_port

logger = logging.getLogger(__name__)
CONNECTIONS = 32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(system: str, url: str, job_id: int, stream_bundle: str, seconds: int,
            rate: float, add) -> None:
    """wrk idle, then wrk while ``stream_bundle`` uploads at ``rate`` B/s; ``add`` each record.

    The upload is slowed so it lasts the whole wrk run; afterwards its job is waited for, so
    the next measurement does not share the machine with this ingest.
    """
    settle()
    size = os.path.getsize(stream_bundle)
    rate = min(rate, size / (seconds + 2))
    for streaming in (False, True):
        upload = SlowUpload(url, stream_bundle, rate=rate) if streaming else None
        if upload:
            upload.start()
            time.sleep(0.5)
        figures = load.run(f"{url}/get_state?job_id={job_id}", connections=CONNECTIONS,
                           seconds=seconds)
        add({"kind": "load", "system": system, "seconds": seconds, "connections": CONNECTIONS,
             "streaming": streaming, "stream_bytes": size if streaming else 0,
             "stream_mb_s": round(rate / 1e6, 1) if streaming else 0, **figures})
        logger.info("%-15s get_state %-9s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %s %s",
                    system, "streaming" if streaming else "idle", figures["rps"],
                    figures["p50_ms"], figures["p99_ms"], figures["non_2xx"],
                    figures["socket_errors"])
        if upload:
            _finish(url, upload)


def _finish(url: str, upload: SlowUpload) -> None:
    """Wait for the streaming upload and then for its job to end."""
    upload.join(timeout=900)
    if upload.error or not upload.answer:
        logger.warning("the streaming upload did not finish: %s", upload.error)
        return
    client = Client(url)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if finished(client.state(upload.answer["job_id"])):
                return
            time.sleep(0.2)
        logger.warning("the streaming upload's job did not end in 900 s")
    finally:
        client.close()


def ceiling(processes: int, workdir: str, seconds: int, add) -> None:
    """wrk, idle, on gunicorn started with the frontend's settings (docker/gunicorn.conf.py)
    but serving a constant answer (bench/constant_app.py): what the server alone costs."""
    port = free_port()
    procs = Processes(os.path.join(workdir, f"{CEILING}{processes}"))
    env = dict(os.environ, WEB_CONCURRENCY=str(processes), INGEST_BIND=f"127.0.0.1:{port}",
               INGEST_HOME=procs.workdir, PYTHONPATH=ROOT)
    procs.spawn("gunicorn", [sys.executable, "-m", "gunicorn", "--config",
                             os.path.join(ROOT, "docker", "gunicorn.conf.py"),
                             "bench.constant_app:application"], env)
    try:
        url = f"http://127.0.0.1:{port}"
        procs.wait_http("gunicorn", url + "/")
        settle()
        figures = load.run(url + "/get_state?job_id=1", connections=CONNECTIONS, seconds=seconds)
        add({"kind": "load", "system": f"{CEILING}{processes}", "seconds": seconds,
             "connections": CONNECTIONS, "streaming": False, "stream_bytes": 0,
             "stream_mb_s": 0, **figures})
        logger.info("%-15s constant : %.0f req/s, p50 %.2f ms, p99 %.2f ms",
                    f"{CEILING}{processes}", figures["rps"], figures["p50_ms"], figures["p99_ms"])
    finally:
        procs.stop()
