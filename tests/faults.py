"""Helpers for the fault-injection tests: bounded waits, raw partial uploads, admin listings."""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import requests


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll until ``predicate()`` is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def answers(port: int) -> bool:
    """True when something listens on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def partial_upload(port: int, length: int, send: int, path: str = "/upload") -> socket.socket:
    """Open a POST announcing ``length`` bytes and send only ``send`` of them; return the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  "Content-Type: application/octet-stream\r\n"
                  f"Content-Length: {length}\r\n\r\n").encode("ascii"))
    sock.sendall(b"\0" * send)
    return sock


def admin_jobs(stack, *options: str) -> list[dict]:
    """``pacifica-ingest-cmd jobs --json`` as a list of dicts, newest first."""
    return json.loads(stack.admin("jobs", "--json", *options).stdout)


def job_expecting(stack, length: int) -> dict | None:
    """The job whose upload announced exactly ``length`` bytes, if it exists yet."""
    found = [job for job in admin_jobs(stack) if job["bytes_expected"] == length]
    return found[0] if found else None


def archive_names(stack) -> list[str]:
    """Paths under the archive, relative to it (partial copies included)."""
    return sorted(os.path.relpath(path, stack.archive) for path in stack.archive_files())


class StateRecorder:
    """Polls ``get_state`` in a thread and keeps every (task, percent) a client saw."""

    def __init__(self, stack, job_id: int):
        self.url = f"{stack.url}/get_state"
        self.job_id = job_id
        self.seen: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "StateRecorder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(0.05):
                try:
                    state = session.get(self.url, params={"job_id": self.job_id}, timeout=5).json()
                except (requests.RequestException, ValueError):
                    continue
                point = (state["task"], float(state["task_percent"]))
                if not self.seen or self.seen[-1] != point:
                    self.seen.append(point)
