"""The volume where bundles land: stream to ``<id>.tar.part``, fsync, rename to ``<id>.tar``."""
from __future__ import annotations

import logging
import os
import shutil
import time
from typing import BinaryIO, Callable

from ..config import Settings
from ..errors import UploadError
from .body import UPLOAD_AGAIN, body_chunks
from . import member_digests
from .files import sync_file, write_durably, written_whole
from .volume import Volume, partial

logger = logging.getLogger(__name__)


class Staging:
    """Bundles on the volume, named by job id."""

    def __init__(self, volume_path: str, transfer_size: int, max_bundle_size: int = 0,
                 min_free_space: int = 0, digest_members: bool = False):
        self.volume = Volume(volume_path)
        # hash big members as they arrive, so the worker copies them without reading them
        self.digest_members = digest_members
        self.transfer_size = transfer_size
        self.max_bundle_size = max_bundle_size
        self.min_free_space = min_free_space
        # bytes promised to uploads still arriving (set by the frontend's Reservations)
        self.promised: Callable[[], int] | None = None
        os.makedirs(volume_path, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Staging":
        """The volume of [ingest]; members hashed on arrival unless an Archive Interface stores
        the files (it reads them itself)."""
        ingest = settings.ingest
        return cls(ingest.volume_path, ingest.transfer_size, ingest.max_bundle_size,
                   ingest.min_free_space,
                   digest_members=ingest.hash_on_arrival and not settings.services.archiveinterface)

    def check_room(self, length: int | None, promised: int | None = None) -> None:
        """Refuse, before any byte is read, a body over the size cap or the free space.

        The free space must hold the body, ``min_free_space`` and the bytes ``promised`` to
        uploads still arriving (by default what the ``promised`` hook reports, if set).
        """
        if length is not None and self.max_bundle_size and length > self.max_bundle_size:
            raise UploadError(f"the bundle is {length} bytes, over the {self.max_bundle_size}-byte "
                              "limit of this service", status=413)
        if promised is None:
            promised = self.promised() if self.promised else 0
        if (length or 0) + self.min_free_space + promised > shutil.disk_usage(self.volume.path).free:
            raise UploadError("not enough space on the volume for this bundle now (uploads in "
                              "progress have the rest reserved); try again later", status=507)

    def receive(self, job_id: int, stream: BinaryIO, length: int | None,
                on_progress: Callable[[int], None] | None = None) -> str:
        """Copy the body to ``<id>.tar.part``, fsync, rename; on any error remove the part file."""
        final = self.volume.bundle(job_id)
        digester = member_digests.BodyDigester() if self.digest_members else None
        try:
            with written_whole(final, partial(final)) as target:
                self._copy(stream, target, length, on_progress, digester)
                if digester is not None:  # the digests speak for bytes already durable
                    sync_file(target)
                    digester.save(target.fileno(), final)
        except BaseException:
            if digester is not None:
                digester.close()
                member_digests.discard(final)
            raise
        return final

    def _copy(self, stream, target, length, on_progress, digester=None) -> int:
        received = 0
        last_report = time.monotonic()
        for chunk in body_chunks(stream, length, UPLOAD_AGAIN, self.transfer_size):
            received += len(chunk)
            if self.max_bundle_size and received > self.max_bundle_size:
                raise UploadError(f"the bundle is over the {self.max_bundle_size}-byte limit of this "
                                  f"service ({received} bytes received so far)", status=413)
            if digester is not None:
                digester.feed(chunk)
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

    def write_move_request(self, job_id: int, data: bytes) -> str:
        """Write a move request durably under the job's name."""
        final = self.volume.move_request(job_id)
        write_durably(final, data, partial(final))
        return final
