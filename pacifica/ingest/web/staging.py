"""The volume where bundles land: stream to ``<id>.part``, fsync, rename to ``<id>.tar``."""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

from ..errors import UploadError
from ..files import fsync_directory, unlink_quietly
from .deadlines import DEADLINES

logger = logging.getLogger(__name__)

# The most read from the request body at once, whatever transfer_size says: each read
# allocates a fresh bytes object, and pieces of megabytes raise glibc's mmap threshold so
# every server thread's arena keeps megabytes after an upload (the frontend grew from 48 to
# over 90 MiB with 4 MiB reads, stayed at 55 MiB with 256 KiB ones, at the same speed).
READ_PIECE = 256 * 1024


class Staging:
    """Bundles on the volume, named by job id."""

    def __init__(self, volume_path: str, transfer_size: int, max_bundle_size: int = 0,
                 min_free_space: int = 0):
        self.volume_path = volume_path
        self.transfer_size = transfer_size
        self.max_bundle_size = max_bundle_size
        self.min_free_space = min_free_space
        # bytes promised to uploads still arriving (set by the frontend's Reservations)
        self.promised: Callable[[], int] | None = None
        os.makedirs(volume_path, exist_ok=True)

    def path_for(self, job_id: int, suffix: str = ".tar") -> str:
        """The bundle path of a job."""
        return os.path.join(self.volume_path, f"{job_id}{suffix}")

    def check_room(self, length: int | None, promised: int | None = None) -> None:
        """Refuse, before any byte is read, a body over the size cap or the free space.

        The free space must hold the body, ``min_free_space`` and the bytes ``promised`` to
        uploads still arriving (by default what the ``promised`` hook reports, if set).
        """
        limit = self.max_bundle_size
        if length is not None and limit and length > limit:
            raise UploadError(f"the bundle is {length} bytes, over the {limit}-byte "
                              "limit of this service", status=413)
        if promised is None:
            promised = self.promised() if self.promised else 0
        if (length or 0) + self.min_free_space + promised > shutil.disk_usage(self.volume_path).free:
            raise UploadError("not enough space on the volume for this bundle now (uploads in "
                              "progress have the rest reserved); try again later", status=507)

    def receive(self, job_id: int, stream: BinaryIO, length: int | None,
                on_progress: Callable[[int], None] | None = None) -> str:
        """Copy the body to ``<id>.part``, fsync and rename; remove the partial file on any error."""
        partial = self.path_for(job_id, ".tar.part")
        try:
            with open(partial, "wb") as target:
                self._copy(stream, target, length, on_progress)
                target.flush()
                os.fsync(target.fileno())
            final = self.path_for(job_id)
            os.replace(partial, final)
            fsync_directory(self.volume_path)
            return final
        except BaseException:
            unlink_quietly(partial)
            raise

    def _copy(self, stream, target, length, on_progress) -> int:
        received = 0
        last_report = time.monotonic()
        for chunk in body_chunks(stream, length, min(self.transfer_size, READ_PIECE),
                                 _interrupted):
            received += len(chunk)
            limit = self.max_bundle_size
            if limit and received > limit:
                raise UploadError(f"the bundle is over the {limit}-byte limit of this "
                                  f"service ({received} bytes received so far)", status=413)
            try:
                target.write(chunk)
            except OSError as err:
                raise UploadError(f"the volume could not store the bundle after {received} "
                                  f"bytes: {err.strerror}", status=507) from err
            if on_progress and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                on_progress(received)
        if received == 0:  # a chunked body with no data (or a server that cannot de-chunk)
            raise UploadError("the request body is empty: POST the tar bundle (under uWSGI, "
                              "send it with a Content-Length)", status=400)
        return received

    def write_document(self, job_id: int, data: bytes, suffix: str = ".json") -> str:
        """Write a small document (a move request) durably under the job's name."""
        final = self.path_for(job_id, suffix)
        with open(final + ".part", "wb") as target:
            target.write(data)
            target.flush()
            os.fsync(target.fileno())
        os.replace(final + ".part", final)
        return final


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


def body_chunks(stream: BinaryIO | Body, length: int | None, piece: int,
                interrupted: Callable[[int, int | None, Exception | None], UploadError]
                ) -> Iterator[bytes]:
    """A request body in pieces: exactly ``length`` bytes, or up to its end when None.

    A body that stops early, breaks or stays under its rate floor (a ``Body``) raises
    ``interrupted(received, length, error)``.
    """
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
                raise interrupted(received, length, err) from err
            if not chunk:
                if length is None:
                    return
                raise interrupted(received, length, None)
            received += len(chunk)
            yield chunk
    finally:
        if watch is not None:
            watch.stop()


def _interrupted(received: int, length: int | None, err) -> UploadError:
    expected = f"of {length} " if length is not None else ""
    cause = f" ({err})" if err else ""
    return UploadError(f"the upload was interrupted: {received} bytes {expected}arrived before the "
                       f"client stopped sending{cause}; upload the bundle again", status=400)
