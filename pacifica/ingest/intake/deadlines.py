"""Deadlines for reads that a client can stall: one thread calls what is overdue.

A socket timeout bounds each ``recv``, not a read of many bytes that a client feeds one at a
time; a callback here (typically shutting the socket's reading side) ends such a read.
"""
from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from typing import Callable

logger = logging.getLogger(__name__)

TICK = 0.5  # seconds between checks: how late a deadline may fire


class Deadlines:
    """Callbacks due at monotonic times, run by one daemon thread started on first use."""

    def __init__(self):
        self._due: dict[int, tuple[float, Callable[[], None]]] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def call_at(self, when: float, callback: Callable[[], None]) -> int:
        """Run ``callback`` once ``time.monotonic()`` passes ``when``; return a token to cancel."""
        with self._lock:
            token = next(self._tokens)
            self._due[token] = (when, callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
        return token

    def cancel(self, token: int) -> None:
        """Forget a callback that has not run."""
        with self._lock:
            self._due.pop(token, None)

    def _run(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            with self._lock:
                overdue = [token for token, (when, _) in self._due.items() if when <= now]
                callbacks = [self._due.pop(token)[1] for token in overdue]
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # pylint: disable=broad-except
                    logger.exception("a deadline callback failed")


DEADLINES = Deadlines()


def shut_reading(sock: socket.socket) -> None:
    """End every read blocked on ``sock`` (its writing side stays open for an answer)."""
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
