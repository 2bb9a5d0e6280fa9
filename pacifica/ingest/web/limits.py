"""How much of a frontend process request bodies may take: upload slots, threads, read time.

Uploads are long and each holds a request thread while its body streams, so at most
``max_uploads`` of them (``max_uploads_per_user`` per user) run at once in a process; the
thread pool is kept larger than that, so ``get_state``, ``GET /`` and other small requests
always find a thread however many uploads are in flight.  Every body keeps the rate floor
(``min_upload_rate`` over ``upload_rate_window``), the ones CherryPy reads itself included.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from typing import Callable, Iterator

import cherrypy

from ..config import Settings
from ..errors import UploadError
from ..intake.deadlines import shut_reading
from .errors import http_error
from .httpserver import SOCKET_KEY
from ..intake.body import Body, RateFloor, body_chunks

logger = logging.getLogger(__name__)

# Request threads kept beyond the upload cap for get_state, GET / and small requests.
HEADROOM = 8


def thread_pool(settings: Settings) -> int:
    """Request threads per process: ``thread_pool``, raised to ``max_uploads`` + HEADROOM."""
    cap = settings.ingest.max_uploads
    pool = settings.ingest.thread_pool
    return max(pool, cap + HEADROOM) if cap else pool


def read_timeout(settings: Settings) -> float:
    """Seconds one socket read may wait: ``socket_timeout``, at most the rate window.

    A body must bring ``min_upload_rate`` bytes/s over ``upload_rate_window`` seconds; a read
    that waits the whole window without a byte has already missed it.
    """
    ingest = settings.ingest
    if ingest.min_upload_rate and ingest.upload_rate_window:
        return min(ingest.socket_timeout, ingest.upload_rate_window)
    return ingest.socket_timeout


class Busy(cherrypy.HTTPError):
    """503 with ``Retry-After``: no upload slot is free (the error page is the usual JSON)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(503, message)
        self.retry_after = retry_after

    def set_response(self):
        """The JSON error page, then the header (CherryPy removes Retry-After from errors)."""
        super().set_response()
        cherrypy.serving.response.headers["Retry-After"] = str(self.retry_after)


class UploadSlots:
    """Counts the uploads this process streams, in all and per user (0: no cap)."""

    def __init__(self, total: int, per_user: int, floor: RateFloor, read_timeout: float):
        self.total = total
        self.per_user = per_user
        self.floor = floor
        self.read_timeout = read_timeout
        self.retry_after = max(int(floor.window), 1)
        self._lock = threading.Lock()
        self._users: Counter = Counter()

    @classmethod
    def from_settings(cls, settings: Settings) -> "UploadSlots":
        """The caps and rate floor of ``[ingest]``."""
        ingest = settings.ingest
        return cls(ingest.max_uploads, ingest.max_uploads_per_user,
                   RateFloor(ingest.min_upload_rate, ingest.upload_rate_window),
                   read_timeout(settings))

    @contextlib.contextmanager
    def hold(self, user: str) -> Iterator[Body]:
        """Take a slot for one upload and yield its request body (with its rate floor).

        Raises Busy before any byte is read when the process or the user has no slot left;
        clients are told to retry after one rate window.
        """
        with self._lock:
            if self.total and sum(self._users.values()) >= self.total:
                raise Busy(f"the server is streaming its maximum of {self.total} uploads; "
                           f"try again in {self.retry_after} s", self.retry_after)
            if self.per_user and self._users[user] >= self.per_user:
                raise Busy(f"you already have {self.per_user} uploads in progress, the most one "
                           f"user may run at once; try again in {self.retry_after} s",
                           self.retry_after)
            self._users[user] += 1
        try:
            yield self.body(cherrypy.request.rfile)
        finally:
            with self._lock:
                self._users[user] -= 1
                if not self._users[user]:
                    del self._users[user]

    def body(self, stream) -> Body:
        """This request's body ``stream`` with the rate floor and a way to cut its socket."""
        return Body(stream, self.floor, self._socket_cut())

    def _socket_cut(self) -> Callable[[], None] | None:
        """How to end a read blocked on this request's socket; bounds each read under gunicorn.

        CherryPy's server (``httpserver.IngestServer``) applies the read timeout to every
        connection itself and hands over the socket; gunicorn hands it over as
        ``gunicorn.socket`` without a timeout, so one is set here for this body.
        """
        environ = cherrypy.request.wsgi_environ
        sock = environ.get(SOCKET_KEY)
        if sock is None:
            sock = environ.get("gunicorn.socket")
            if sock is None:
                return None
            sock.settimeout(self.read_timeout)

        def cut() -> None:
            logger.info("cutting off an upload below %d bytes/s", self.floor.rate)
            shut_reading(sock)
        return cut


class FloorReader:
    """A body CherryPy reads itself (``/move``'s JSON) as a file over ``body_chunks``.

    Such a body keeps the rate floor too, so a slow one holds a thread no longer than a slow
    upload could.
    """

    def __init__(self, body: Body):
        self._chunks = body_chunks(body, None, "send the request again")
        self._rest = b""

    def _fill(self, enough: Callable[[], bool]) -> None:
        try:
            while not enough():
                chunk = next(self._chunks, b"")
                if not chunk:
                    return
                self._rest += chunk
        except UploadError as err:
            raise http_error(err) from err

    def _take(self, size: int) -> bytes:
        data, self._rest = self._rest[:size], self._rest[size:]
        return data

    def read(self, size: int | None = None) -> bytes:
        """Up to ``size`` bytes (all when None)."""
        whole = size is None or size < 0
        self._fill(lambda: not whole and len(self._rest) >= size)
        return self._take(len(self._rest) if whole else size)

    def readline(self, size: int | None = None) -> bytes:
        """One line, of at most ``size`` bytes."""
        limit = None if size is None or size < 0 else size
        self._fill(lambda: b"\n" in self._rest or (limit is not None and len(self._rest) >= limit))
        end = self._rest.find(b"\n") + 1 or len(self._rest)
        return self._take(end if limit is None else min(end, limit))


def _floor_bodies(slots: UploadSlots) -> None:
    """Tool: a body CherryPy is about to read keeps the rate floor (uploads stream their own)."""
    request = cherrypy.request
    if request.process_request_body and request.body is not None:
        request.body.fp = FloorReader(slots.body(request.body.fp))


cherrypy.tools.body_floor = cherrypy.Tool("before_request_body", _floor_bodies)
