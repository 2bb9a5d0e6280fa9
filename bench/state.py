"""``get_state`` under wrk on one running frontend: idle, then while an upload streams into it."""
from __future__ import annotations

import logging
import os
import time

from . import load
from .client import Client, finished
from .floor import settle
from .measure import SlowUpload

logger = logging.getLogger(__name__)
CONNECTIONS = 32


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
