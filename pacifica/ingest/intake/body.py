"""Reading a request body: bounded pieces, a rate floor, one message for a body cut short.

POSTed bundles, tus chunks and the bodies CherryPy reads itself all come through
``body_chunks`` (no HTTP here: the web layer hands over the stream and how to cut its socket).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

from ..errors import UploadError
from .deadlines import DEADLINES

# The most read from the request body at once, whatever transfer_size says: each read
# allocates a fresh bytes object, and pieces of megabytes raise glibc's mmap threshold so
# every server thread's arena keeps megabytes after an upload (the frontend grew from 48 to
# over 90 MiB with 4 MiB reads, stayed at 55 MiB with 256 KiB ones, at the same speed).
READ_PIECE = 256 * 1024
UPLOAD_AGAIN = "upload the bundle again"  # what a client does after a POSTed bundle is cut short


def interrupted(received: int, expected: int | None, remedy: str, who: str = "the client",
                cause: Exception | str | None = None) -> UploadError:
    """The error (and job exception) of a body cut short after ``received`` bytes."""
    of = f"of {expected} " if expected is not None else ""
    because = f" ({cause})" if cause else ""
    return UploadError(f"the upload was interrupted: {received} bytes {of}arrived before {who} "
                       f"stopped{because}; {remedy}", status=400)


@dataclass(frozen=True)
class RateFloor:
    """The slowest body kept: ``rate`` bytes/s averaged over ``window`` seconds (0: none)."""

    rate: int = 0
    window: float = 0.0


class Body:
    """A request body with its rate floor and ``cut``, which ends a read blocked on the socket."""

    def __init__(self, stream: BinaryIO, floor: RateFloor,
                 cut: Callable[[], None] | None = None):
        self.stream = stream
        self.floor = floor
        self.cut = cut

    def read(self, size: int = -1) -> bytes:
        """Bytes of the body, as the stream gives them."""
        return self.stream.read(size)


class TooSlow(OSError):
    """A body that brought fewer bytes over the rate window than the floor asks."""


class _RateWatch:
    """Checks a body's rate window by window; cuts the socket when a read outlasts a window."""

    def __init__(self, body: Body):
        self.floor = body.floor
        self.cut = body.cut
        self.expired = False
        self.start = time.monotonic()
        self.count = 0
        self.token = self._arm()

    def piece(self, piece: int) -> int:
        """The most one read may ask for: what the floor brings in half a window."""
        return max(1, min(piece, int(self.floor.rate * self.floor.window / 2)))

    def _arm(self) -> int:
        # A read that has not returned two windows after the window began belongs to a body
        # under the floor (a read asks for half a window's bytes at the floor rate, so one
        # begun before the window's end is done half a window later): shut its socket.
        return DEADLINES.call_at(self.start + 2 * self.floor.window, self._expire)

    def _expire(self) -> None:
        self.expired = True
        if self.cut is not None:
            self.cut()

    def too_slow(self) -> TooSlow:
        """The error that names the floor."""
        return TooSlow(f"fewer than {self.floor.rate} bytes/s over {self.floor.window:g} s, "
                       "the slowest upload this service keeps")

    def progress(self, count: int) -> None:
        """Count bytes; at the end of each window raise TooSlow if it brought too few."""
        self.count += count
        elapsed = time.monotonic() - self.start
        if elapsed < self.floor.window:
            return
        if self.count < self.floor.rate * elapsed:
            raise self.too_slow()
        self.stop()
        self.start, self.count = time.monotonic(), 0
        self.token = self._arm()

    def stop(self) -> None:
        """Forget the deadline."""
        DEADLINES.cancel(self.token)


def body_chunks(stream: BinaryIO | Body, length: int | None, remedy: str,
                piece: int = READ_PIECE) -> Iterator[bytes]:
    """A request body in pieces of at most ``piece`` (and READ_PIECE) bytes: exactly ``length``
    bytes, or up to its end when None.

    A body that stops early, breaks or stays under its rate floor (a ``Body``) raises the
    ``interrupted`` error, which tells the client ``remedy``.
    """
    piece = min(piece, READ_PIECE)
    floor = getattr(stream, "floor", None)
    watch = _RateWatch(stream) if floor is not None and floor.rate and floor.window else None
    if watch is not None:
        piece = watch.piece(piece)
    received = 0
    try:
        while length is None or received < length:
            want = piece if length is None else min(piece, length - received)
            try:
                chunk = stream.read(want)
                if watch is not None:
                    if watch.expired:
                        raise watch.too_slow()
                    watch.progress(len(chunk))
            except (OSError, ValueError) as err:
                if watch is not None and (watch.expired or isinstance(err, TimeoutError)):
                    err = watch.too_slow()
                raise interrupted(received, length, remedy, cause=err) from err
            if not chunk:
                if length is None:
                    return
                raise interrupted(received, length, remedy)
            received += len(chunk)
            yield chunk
    finally:
        if watch is not None:
            watch.stop()
