"""A POSIX directory as the archive: one file per id, written to a temporary name then renamed."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
from typing import BinaryIO

from . import FileSource
from ..config import Settings
from ..errors import ArchiveError

logger = logging.getLogger(__name__)

COPY_BUFFER = 1024 * 1024
PART_SUFFIX = ".part"


def _load_syncfs():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


class LocalArchive:
    """Files under ``root``, at a path derived from the file id alone."""

    def __init__(self, root: str, fsync: bool = True):
        self.root = os.path.abspath(root)
        self.fsync = fsync
        os.makedirs(self.root, exist_ok=True)
        self._dirty = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "LocalArchive":
        """Build from [archiveinterface] local_path and fsync."""
        return cls(settings.archive.local_path, settings.archive.fsync)

    def describe(self) -> str:
        """The archive directory."""
        return f"local archive {self.root}"

    def path_for(self, file_id: int) -> str:
        """Where a file id lives: root/<millions>/<thousands>/<id>, so no directory grows huge."""
        return os.path.join(self.root, str(file_id // 1_000_000), str(file_id // 1000 % 1000),
                            str(file_id))

    def store(self, file_id: int, source: FileSource) -> None:
        """Copy into ``<path>.part``, verify, then rename into place (overwriting is idempotent)."""
        final = self.path_for(file_id)
        partial = final + PART_SUFFIX
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            reader = source.open()
            with open(partial, "wb") as target:
                _copy(reader, target)
            source.verify(reader)
            if source.mtime:
                os.utime(partial, (source.mtime, source.mtime))
            os.replace(partial, final)
        except OSError as err:
            _unlink(partial)
            raise ArchiveError(f"could not write file id {file_id} to {self.root}: "
                               f"{err.strerror or err}") from err
        except BaseException:
            _unlink(partial)
            raise
        self._dirty = True

    def move(self, file_id: int, source_path: str) -> None:
        """Link (or copy, across file systems) an archived path to a new id."""
        final = self.path_for(file_id)
        partial = final + PART_SUFFIX
        source = os.path.realpath(os.path.join(self.root, source_path))
        if os.path.commonpath([source, os.path.realpath(self.root)]) != os.path.realpath(self.root):
            raise ArchiveError(f"{source_path} is not in the {self.describe()}: a move takes only "
                               "files already on the archive")
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            _unlink(partial)
            try:
                os.link(source, partial)
            except OSError:
                shutil.copy2(source, partial)
            os.replace(partial, final)
        except OSError as err:
            _unlink(partial)
            raise ArchiveError(f"could not move {source_path} to file id {file_id}: "
                               f"{err.strerror or err}") from err
        self._dirty = True

    def remove(self, file_id: int) -> bool:
        """Delete a file and any partial copy of it."""
        final = self.path_for(file_id)
        _unlink(final + PART_SUFFIX)
        _unlink(final)
        return True

    def sync(self) -> None:
        """One syncfs for all files written since the last sync (cheaper than an fsync each)."""
        if not (self.fsync and self._dirty):
            return
        descriptor = os.open(self.root, os.O_RDONLY)
        try:
            if _SYNCFS is None or _SYNCFS(descriptor) != 0:
                os.sync()
        finally:
            os.close(descriptor)
        self._dirty = False


def _copy(source: BinaryIO, target) -> None:
    buffer = bytearray(COPY_BUFFER)
    view = memoryview(buffer)
    readinto = source.readinto
    write = target.write
    while True:
        got = readinto(buffer)
        if not got:
            return
        write(view[:got])


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
