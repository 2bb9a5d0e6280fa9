"""One measured ingest: upload, poll to the end, sample memory, check what the archive holds."""
from __future__ import annotations

import http.client
import json
import os
import threading
import time
from urllib.parse import urlsplit

from .bundles import SHAPES
from .client import Client
from .procs import PeakRss, rss_kib, tree


def count_files(root: str) -> int:
    """Regular files under ``root`` (partial copies included: there must be none)."""
    return sum(len(names) for _, _, names in os.walk(root))


def ingest_once(url: str, bundle: str, shape_name: str, pids: dict[str, int],
                archive_root: str) -> dict:
    """Measure one bundle end to end; figures plus the final state and an archive check."""
    shape = SHAPES[shape_name]
    size = os.path.getsize(bundle)
    idle = {name: round(sum(rss_kib(p) for p in tree(pid)) / 1024, 1)
            for name, pid in pids.items()}
    before = count_files(archive_root)
    client = Client(url)
    try:
        with PeakRss(pids) as memory:
            outcome = client.ingest(bundle)
    finally:
        client.close()
    stored = count_files(archive_root) - before
    seconds = outcome["end_to_end_s"]
    return {
        "bundle": shape_name, "job_id": outcome["job_id"], "bytes": size, "files": shape.files,
        "post_s": outcome["post_s"], "end_to_end_s": seconds,
        "mb_s": size / 1e6 / seconds, "files_s": shape.files / seconds,
        "rss_mib": memory.mib(), "idle_rss_mib": idle,
        "state": outcome["state"].get("state"), "exception": outcome["state"].get("exception"),
        "stored_files": stored, "ok": outcome["state"].get("state") == "OK"
                                      and stored == shape.files,
    }


class SlowUpload(threading.Thread):
    """POSTs a bundle at a bounded rate, so ``get_state`` is measured while an upload streams."""

    def __init__(self, url: str, bundle: str, rate: float):
        super().__init__(daemon=True)
        self.url, self.bundle, self.rate = url, bundle, rate
        self.answer: dict | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        try:
            connection.putrequest("POST", "/upload")
            connection.putheader("Content-Type", "application/octet-stream")
            connection.putheader("Content-Length", str(os.path.getsize(self.bundle)))
            connection.endheaders()
            started, sent, block = time.monotonic(), 0, 256 * 1024
            with open(self.bundle, "rb") as body:
                while chunk := body.read(block):
                    connection.sock.sendall(chunk)
                    sent += len(chunk)
                    ahead = sent / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            reply = connection.getresponse()
            self.answer = json.loads(reply.read())
        except BaseException as err:  # pylint: disable=broad-except
            self.error = err
        finally:
            connection.close()
