"""gunicorn's ``gthread`` worker with a deadline on each request head (docker/gunicorn.conf.py).

gthread reads a request head on a blocking socket without a timeout, so a client that sends a
head slowly, or part of one and then nothing, held a thread for ever; here the whole head must
arrive within the read timeout (``limits.read_timeout``), as under CherryPy's server.
"""
from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker

from ..config import load
from ..intake.deadlines import DEADLINES, shut_reading
from .limits import read_timeout


class IngestThreadWorker(ThreadWorker):
    """``gthread``, ending a connection whose request head is not in within the read timeout."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_timeout = read_timeout(load())
        self._heads: dict[int, int] = {}  # id(connection) -> deadline token while its head is read

    def handle(self, conn):
        """gthread's handling of one request on ``conn``, the head under a deadline."""
        sock = conn.sock
        self._heads[id(conn)] = DEADLINES.call_at(time.monotonic() + self.head_timeout,
                                                  lambda: shut_reading(sock))
        try:
            return super().handle(conn)
        finally:
            DEADLINES.cancel(self._heads.pop(id(conn), None))

    def handle_request(self, req, conn):
        """The head is in: lift its deadline (the body has its own rate floor), then serve."""
        DEADLINES.cancel(self._heads.pop(id(conn), None))
        return super().handle_request(req, conn)
