"""The uploader's side: POST a bundle file with sendfile(2), then poll get_state until done."""
from __future__ import annotations

import http.client
import json
import os
import time
from urllib.parse import urlsplit


class Client:
    """One keep-alive connection for polling; a fresh one per upload."""

    def __init__(self, base_url: str, timeout: float = 1800):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.timeout = timeout
        self._poller: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def post(self, path: str, bundle: str) -> dict:
        """Send the file as the body (the kernel copies it: the client costs next to nothing)."""
        connection = self._connection()
        try:
            size = os.path.getsize(bundle)
            connection.putrequest("POST", path)
            connection.putheader("Content-Type", "application/octet-stream")
            connection.putheader("Content-Length", str(size))
            connection.endheaders()
            with open(bundle, "rb") as body:
                connection.sock.sendfile(body)
            reply = connection.getresponse()
            text = reply.read()
            if reply.status != 200:
                raise RuntimeError(f"POST {path} answered {reply.status}: {text[:500]!r}")
            return json.loads(text)
        finally:
            connection.close()

    def state(self, job_id: int) -> dict:
        """GET /get_state on the keep-alive connection (reconnecting once if it dropped)."""
        for attempt in (1, 2):
            if self._poller is None:
                self._poller = self._connection()
            try:
                self._poller.request("GET", f"/get_state?job_id={job_id}")
                reply = self._poller.getresponse()
                text = reply.read()
                break
            except (http.client.HTTPException, OSError):
                self._poller.close()
                self._poller = None
                if attempt == 2:
                    raise
        if reply.status != 200:
            raise RuntimeError(f"get_state answered {reply.status}: {text[:500]!r}")
        return json.loads(text)

    def ingest(self, bundle: str, poll: float = 0.02, path: str = "/upload") -> dict:
        """Upload, then poll; return POST and end-to-end seconds and the final state."""
        started = time.monotonic()
        answer = self.post(path, bundle)
        posted = time.monotonic() - started
        job_id = answer["job_id"]
        deadline = started + self.timeout
        while True:
            state = self.state(job_id)
            if finished(state):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} did not finish in {self.timeout}s: {state}")
            time.sleep(poll)
        return {"job_id": job_id, "post_s": posted, "end_to_end_s": time.monotonic() - started,
                "state": state}

    def close(self) -> None:
        """Drop the polling connection."""
        if self._poller is not None:
            self._poller.close()
            self._poller = None


def finished(state: dict) -> bool:
    """Done as pacifica-cli decides it: not OK any more, or ingest metadata at 100 %."""
    if state.get("state") != "OK":
        return True
    if state.get("complete"):
        return True
    return state.get("task") == "ingest metadata" and int(float(state.get("task_percent") or 0)) == 100
