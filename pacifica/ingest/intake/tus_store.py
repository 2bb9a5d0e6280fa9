"""Resumable uploads on the volume: ``tus/<id>.part`` holds the bytes, ``tus/<id>.json`` the rest.

The offset of an upload is the size of its ``.part`` file, so it survives a restart
of the frontend with nothing else to reconcile.  ``<id>.lock`` serialises the requests
that touch one upload (across threads and processes sharing the volume).
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import time
import uuid
from typing import BinaryIO, Iterator

from ..errors import UploadError
from ..protocol import CHECKSUM_MISMATCH
from .body import body_chunks
from .files import sync_file, unlink_quietly, written_whole
from .volume import (TUS_BYTES, TUS_DESCRIPTION, TUS_DESCRIPTION_PART, TUS_LOCK, TUS_SUFFIXES,
                     Volume)

logger = logging.getLogger(__name__)

UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
METADATA_KEY = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token, as tus asks
LOCK_WAIT = 10.0  # seconds a request waits for another one on the same upload
RESUME = "ask HEAD for the offset and resume from there"


@dataclasses.dataclass
class UploadInfo:
    """What the store keeps about one upload besides its bytes."""

    upload_id: str
    length: int
    user: str
    metadata: str = ""  # the Upload-Metadata header as the client sent it
    created: float = 0.0
    job_id: int | None = None  # set when the last byte is in, just before the bundle lands
    callback: str = ""  # the client's Callback-Url, told when the job ends


def not_found(upload_id: str) -> UploadError:
    """The error for an id the store does not know."""
    return UploadError(f"upload {upload_id} does not exist (it may have expired or been "
                       "deleted); create a new upload", status=404)


class TusStore:
    """Partial uploads and their descriptions, one directory on the volume."""

    def __init__(self, volume_path: str, expiry: float, transfer_size: int):
        self.volume = Volume(volume_path)
        self.root = self.volume.tus_folder
        self.expiry = expiry
        self.transfer_size = transfer_size
        # open upload id -> (length, user, last activity when first seen): see open_uploads
        self._described: dict[str, tuple[int, str, float]] = {}
        os.makedirs(self.root, exist_ok=True)

    # -- paths ----------------------------------------------------------------------------

    def _path(self, upload_id: str, suffix: str) -> str:
        if not UPLOAD_ID.fullmatch(upload_id or ""):
            raise not_found(str(upload_id)[:64])
        return self.volume.tus_file(upload_id, suffix)

    def part_path(self, upload_id: str) -> str:
        """Where the bytes of an upload accumulate."""
        return self._path(upload_id, TUS_BYTES)

    def ids(self) -> list[str]:
        """Every upload id that has a description or a lock on the volume."""
        found = set()
        for name in os.listdir(self.root):
            stem, suffix = os.path.splitext(name)
            if UPLOAD_ID.fullmatch(stem) and suffix in (TUS_DESCRIPTION, TUS_LOCK, TUS_BYTES):
                found.add(stem)
        return sorted(found)

    # -- life cycle -----------------------------------------------------------------------

    def create(self, length: int, user: str, metadata: str = "", callback: str = "") -> UploadInfo:
        """A new empty upload with an unguessable id."""
        info = UploadInfo(uuid.uuid4().hex, length, user, metadata, created=time.time(),
                          callback=callback)
        open(self._path(info.upload_id, TUS_LOCK), "xb").close()  # pylint: disable=consider-using-with
        open(self.part_path(info.upload_id), "xb").close()  # pylint: disable=consider-using-with
        self.save(info)
        return info

    def load(self, upload_id: str) -> UploadInfo:
        """The description of an upload, or 404."""
        try:
            with open(self._path(upload_id, TUS_DESCRIPTION), encoding="utf-8") as handle:
                stored = json.load(handle)
            # older versions also kept a "landed" flag: the job row says that now
            return UploadInfo(**{field.name: stored[field.name]
                                 for field in dataclasses.fields(UploadInfo)
                                 if field.name in stored})
        except FileNotFoundError:
            raise not_found(upload_id) from None

    def save(self, info: UploadInfo) -> None:
        """Write the description durably (temp file, fsync, rename)."""
        with written_whole(self._path(info.upload_id, TUS_DESCRIPTION),
                           self._path(info.upload_id, TUS_DESCRIPTION_PART),
                           "w", encoding="utf-8") as handle:
            json.dump(dataclasses.asdict(info), handle)

    def remove(self, upload_id: str) -> None:
        """Forget an upload and its bytes (call with its lock held)."""
        for suffix in TUS_SUFFIXES:
            unlink_quietly(self._path(upload_id, suffix))

    def offset(self, info: UploadInfo) -> int:
        """Bytes received so far: the size of the part file (all of them once it has landed)."""
        try:
            return os.path.getsize(self.part_path(info.upload_id))
        except FileNotFoundError:
            if info.job_id is not None:
                return info.length
            raise not_found(info.upload_id) from None

    def open_uploads(self) -> Iterator[tuple[str, int, int]]:
        """(user, length, bytes received) of each upload neither landed nor expired.

        An upload is open while its part file exists (landing moves it away).  One ``stat``
        per upload: an open upload's length, owner and description never change, so each
        description is read once per store object.
        """
        present = set()
        for name in os.listdir(self.root):
            upload_id, suffix = os.path.splitext(name)
            if suffix != TUS_BYTES or not UPLOAD_ID.fullmatch(upload_id):
                continue
            present.add(upload_id)
            try:
                part = os.stat(os.path.join(self.root, name))
                length, user, described = self._open_description(upload_id)
            except (FileNotFoundError, UploadError):  # landed or removed meanwhile
                continue
            if not self.idle_too_long(max(described, part.st_mtime)):
                yield user, length, part.st_size
        for gone in [known for known in list(self._described) if known not in present]:
            self._described.pop(gone, None)

    def _open_description(self, upload_id: str) -> tuple[int, str, float]:
        if upload_id not in self._described:
            info = self.load(upload_id)
            self._described[upload_id] = (info.length, info.user, self.last_activity(upload_id))
        return self._described[upload_id]

    def open_reservations(self) -> tuple[int, int]:
        """(open uploads, bytes they still expect)."""
        count = expected = 0
        for _, length, received in self.open_uploads():
            count += 1
            expected += max(length - received, 0)
        return count, expected

    def last_activity(self, upload_id: str) -> float:
        """When the upload last received bytes or changed its description."""
        times = []
        for suffix in (TUS_BYTES, TUS_DESCRIPTION, TUS_LOCK):
            try:
                times.append(os.path.getmtime(self._path(upload_id, suffix)))
            except FileNotFoundError:
                pass
        return max(times) if times else 0.0

    def expires_at(self, upload_id: str) -> float | None:
        """When an idle upload will be removed (None: never)."""
        if not self.expiry:
            return None
        return self.last_activity(upload_id) + self.expiry

    def is_expired(self, upload_id: str, now: float | None = None) -> bool:
        """True once the upload has been idle for longer than the expiry."""
        return self.idle_too_long(self.last_activity(upload_id), now)

    def idle_too_long(self, last_activity: float, now: float | None = None) -> bool:
        """True when an upload last active at ``last_activity`` has expired."""
        return bool(self.expiry) and (now or time.time()) >= last_activity + self.expiry

    @contextlib.contextmanager
    def locked(self, upload_id: str, wait: float = LOCK_WAIT) -> Iterator[None]:
        """Hold the upload's lock; 423 if another request keeps it longer than ``wait``."""
        try:
            descriptor = os.open(self._path(upload_id, TUS_LOCK), os.O_RDWR)
        except FileNotFoundError:
            raise not_found(upload_id) from None
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as err:
                    if err.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise UploadError(f"upload {upload_id} is busy with another request; "
                                          "retry shortly", status=423) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(descriptor)

    # -- bytes ----------------------------------------------------------------------------

    def append(self, info: UploadInfo, stream: BinaryIO, offset: int, count: int | None,
               checksum: tuple[str, bytes] | None = None) -> int:
        """Write a PATCH body at ``offset``; keep what arrived, unless a checksum can't vouch.

        ``count`` is the body length (None: read to the end, chunked).  Returns the new offset.
        An interrupted body keeps its bytes (the client resumes after them) unless the client
        sent a checksum, which can then not be verified, so the chunk is dropped as the tus
        checksum extension asks.  A checksum that does not match drops the chunk and answers 460.
        """
        room = info.length - offset
        hasher = hashlib.new(checksum[0]) if checksum else None
        received = 0
        with open(self.part_path(info.upload_id), "r+b") as target:
            target.seek(offset)
            try:
                received = self._copy(stream, target, count, room, hasher)
            except BaseException:
                if hasher is not None:
                    target.truncate(offset)
                sync_file(target)
                raise
            if hasher is not None and hasher.digest() != checksum[1]:
                target.truncate(offset)
                sync_file(target)
                found = base64.b64encode(hasher.digest()).decode("ascii")
                expected = base64.b64encode(checksum[1]).decode("ascii")
                raise UploadError(f"the chunk at offset {offset} does not match its "
                                  f"Upload-Checksum: {checksum[0]} expected {expected}, got "
                                  f"{found}; it was discarded, send it again",
                                  status=CHECKSUM_MISMATCH)
            sync_file(target)
        return offset + received

    def _copy(self, stream, target, count, room, hasher) -> int:
        received = 0
        for chunk in body_chunks(stream, count, RESUME, self.transfer_size):
            if received + len(chunk) > room:
                target.truncate(target.tell() - received)
                raise UploadError(f"the chunk runs past the upload's declared length: only "
                                  f"{room} more bytes were expected; nothing was kept",
                                  status=413)
            target.write(chunk)
            if hasher is not None:
                hasher.update(chunk)
            received += len(chunk)
        return received


def parse_metadata(header: str | None, max_size: int = 0) -> dict[str, str]:
    """``Upload-Metadata: key base64,key2 base64`` -> {key: text}; 400 if malformed or too long.

    Keys are HTTP tokens (ASCII, no spaces or commas), each once; values are base64.
    """
    header = header or ""
    if max_size and len(header) > max_size:
        raise UploadError(f"Upload-Metadata is {len(header)} characters, over the limit of "
                          f"{max_size} of this service: send only short values such as the "
                          "file name", status=400)
    result = {}
    for pair in header.split(","):
        if not pair.strip():
            continue
        key, _, value = pair.strip().partition(" ")
        shown = pair.strip()[:80]
        if not METADATA_KEY.fullmatch(key):
            raise UploadError(f"Upload-Metadata key {key[:80]!r} is not an ASCII token (letters, "
                              "digits and !#$%&'*+-.^_`|~)", status=400)
        if key in result:
            raise UploadError(f"Upload-Metadata names the key {key!r} twice", status=400)
        try:
            result[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8", "replace")
        except ValueError:
            raise UploadError(f"Upload-Metadata pair {shown!r} is not '<key> <base64>'",
                              status=400) from None
    return result
