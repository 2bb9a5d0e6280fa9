"""A POSIX directory as the archive: one file per id, visible only once complete and verified.

A file is written unnamed (``O_TMPFILE``) and linked to its name after its hash checks, so
a crash leaves nothing behind; where the file system cannot do that, it is written to
``<id>.part`` and renamed.  Bundle members are copied by the kernel (``copy_file_range``)
while this process hashes the same bytes, so a big file costs one hash pass and no copy
through Python; small files take one ``pread``, one hash update and one ``write``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
from typing import BinaryIO

from ..config import Settings
from ..errors import ArchiveError
from ..extent import Extent
from ..intake.files import unlink_quietly
from . import FileSource

logger = logging.getLogger(__name__)

COPY_BUFFER = 1024 * 1024
KERNEL_COPY_MIN = 4 * COPY_BUFFER  # below this, one pass through a reused buffer is cheaper
PART_SUFFIX = ".part"
_NO_KERNEL_COPY = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF)


def _load_syncfs():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


class LocalArchive:
    """Files under ``root``, at a path derived from the file id alone."""

    # Files stored at once by the pipeline: creating a small file is mostly waiting on the
    # file system's journal, and 4 threads create ~4x as many per second as one (measured
    # on ext4, 2 cores); big files are hashed on both cores.
    parallel = 4

    def __init__(self, root: str, fsync: bool = True):
        self.root = os.path.abspath(root)
        self.fsync = fsync
        os.makedirs(self.root, exist_ok=True)
        self._dirty = False
        self._directories: set[str] = set()
        self._unnamed = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")
        self._local = threading.local()
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)

    @classmethod
    def from_settings(cls, settings: Settings) -> "LocalArchive":
        """Build from [archiveinterface] local_path and fsync."""
        return cls(settings.archive.local_path, settings.archive.fsync)

    def describe(self) -> str:
        """The archive directory."""
        return "local archive"  # no server path in a client's message

    def path_for(self, file_id: int) -> str:
        """Where a file id lives: root/<millions>/<thousands>/<id>, so no directory grows huge."""
        return f"{self._directory_for(file_id)}/{file_id}"

    def _directory_for(self, file_id: int) -> str:
        """The directory of ``path_for`` (os.path.join's result, built without its cost)."""
        return f"{self.root.rstrip('/')}/{file_id // 1_000_000}/{file_id // 1000 % 1000}"

    def store(self, file_id: int, source: FileSource) -> None:
        """Write the bytes unnamed, verify them, then give the file its name (idempotent)."""
        directory = self._directory_for(file_id)
        final = f"{directory}/{file_id}"
        descriptor, partial = -1, None
        try:
            descriptor, partial = self._create(directory, final)
            if source.extent is not None and _hashed_on_arrival(source):
                tally = source.tally()
                tally.passed_unread(_kernel_copy(source.extent, source.size, descriptor),
                                    source.known_sha1)
            elif source.extent is not None:
                tally = source.tally()
                _copy_extent(source.extent, source.size, descriptor, tally, self._buffer())
            else:
                tally = source.open()
                _copy(tally, descriptor, self._buffer())
            source.verify(tally)
            if source.mtime:
                os.utime(descriptor, (source.mtime, source.mtime))
            self._give_name(descriptor, partial, final)
        except OSError as err:
            _close_and_discard(descriptor, partial)
            raise ArchiveError(f"could not write file id {file_id} to the local archive: "
                               f"{err.strerror or err}") from err
        except BaseException:
            _close_and_discard(descriptor, partial)
            raise
        os.close(descriptor)
        self._dirty = True

    def _buffer(self) -> memoryview:
        """A copy buffer reused across files (one per thread)."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = memoryview(bytearray(COPY_BUFFER))
        return buffer

    def _create(self, directory: str, final: str) -> tuple[int, str | None]:
        """An unnamed file in ``directory``, the one of ``final`` (``<final>.part`` where that
        is impossible)."""
        if directory not in self._directories:
            os.makedirs(directory, exist_ok=True)
            self._directories.add(directory)
        try:
            return self._open(directory, final)
        except FileNotFoundError:  # someone removed the directory since: make it again
            self._directories.discard(directory)
            os.makedirs(directory, exist_ok=True)
            return self._open(directory, final)

    def _open(self, directory: str, final: str) -> tuple[int, str | None]:
        if self._unnamed:
            try:
                return os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o644), None
            except (OSError, AttributeError) as err:
                if getattr(err, "errno", errno.EOPNOTSUPP) not in (errno.EOPNOTSUPP, errno.EISDIR,
                                                                   errno.EINVAL):
                    raise
                logger.info("%s cannot hold unnamed files (%s): writing <id>.part and renaming",
                            self.root, err)
                self._unnamed = False
        partial = final + PART_SUFFIX
        return os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), partial

    def _give_name(self, descriptor: int, partial: str | None, final: str) -> None:
        """Give the verified file its name, replacing an earlier copy of the same id."""
        if partial is not None:
            os.replace(partial, final)
            return
        try:
            self._link(descriptor, final)
        except FileExistsError:
            temporary = final + PART_SUFFIX
            unlink_quietly(temporary)
            self._link(descriptor, temporary)
            os.replace(temporary, final)

    def _link(self, descriptor: int, name: str) -> None:
        """linkat(AT_SYMLINK_FOLLOW) of /proc/self/fd/N: os.link only calls linkat (rather
        than link, which would link the /proc symlink itself) when given a directory fd; the
        source path is absolute, so which directory does not matter."""
        os.link(f"/proc/self/fd/{descriptor}", name, src_dir_fd=self._root_fd,
                follow_symlinks=True)

    def move(self, file_id: int, path: str, source: FileSource) -> None:
        """Store a file a move holds open exactly as a bundle member: copied from its
        descriptor, verified, then named.  The original stays where it was."""
        del path  # the bytes come from the held descriptor, never from the path again
        self.store(file_id, source)

    def read(self, file_id: int) -> BinaryIO:
        """The stored file, opened for reading."""
        return open(self.path_for(file_id), "rb")  # pylint: disable=consider-using-with

    def remove(self, file_id: int) -> bool:
        """Delete a file and any partial copy of it."""
        final = self.path_for(file_id)
        unlink_quietly(final + PART_SUFFIX)
        unlink_quietly(final)
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


def _copy(source: BinaryIO, target: int, buffer: memoryview) -> None:
    """Stream a reader into a descriptor through a reused buffer."""
    while True:
        got = source.readinto(buffer)
        if not got:
            return
        _write_all(target, buffer[:got])


def _write_all(target: int, view: memoryview) -> None:
    while len(view):
        view = view[os.write(target, view):]


def _copy_extent(extent: Extent, size: int, target: int, tally, buffer: memoryview) -> None:
    """Hash the bytes at ``extent`` while the kernel copies them to ``target``.

    Small files go through ``buffer`` once (read, hash, write).  Big ones are copied by
    ``copy_file_range`` in a helper thread while this thread reads and hashes the same bytes,
    so the two run on two cores.  A short read leaves the tally short: verify reports it.
    """
    if size < KERNEL_COPY_MIN:
        _hash_extent(extent, size, tally, buffer, target)
        return
    copier = _KernelCopy(extent, size, target)
    copier.start()
    try:
        _hash_extent(extent, size, tally, buffer)
    finally:
        copier.join()
    if copier.error is not None:
        raise copier.error
    if copier.copied != tally.count:
        tally.count = min(tally.count, copier.copied)


def _hashed_on_arrival(source: FileSource) -> bool:
    """Whether the frontend already hashed these bytes with the algorithm the metadata names."""
    return bool(source.known_sha1) and source.hashtype.lower() == "sha1"


def _kernel_copy(extent: Extent, size: int, target: int) -> int:
    """Copy an extent in the kernel, in this thread; the bytes copied."""
    copier = _KernelCopy(extent, size, target)
    copier.run()
    if copier.error is not None:
        raise copier.error
    return copier.copied


def _hash_extent(extent: Extent, size: int, tally, buffer: memoryview,
                 target: int | None = None) -> None:
    """Read and hash the extent through ``buffer``; also write it to ``target`` if given."""
    position, end = extent.offset, extent.offset + size
    while position < end:
        got = os.preadv(extent.fd, [buffer[:min(len(buffer), end - position)]], position)
        if not got:
            return
        tally.update(buffer[:got])
        if target is not None:
            _write_all(target, buffer[:got])
        position += got


class _KernelCopy(threading.Thread):
    """Copies ``size`` bytes from an extent to the current position of ``target``."""

    def __init__(self, extent: Extent, size: int, target: int):
        super().__init__(daemon=True, name="archive-copy")
        self.extent, self.size, self.target = extent, size, target
        self.copied = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._copy()
        except BaseException as err:  # pylint: disable=broad-except
            self.error = err

    def _copy(self) -> None:
        source, offset = self.extent.fd, self.extent.offset
        while self.copied < self.size:
            want = min(self.size - self.copied, 64 * COPY_BUFFER)
            try:
                done = os.copy_file_range(source, self.target, want, offset + self.copied)
            except OSError as err:
                if err.errno not in _NO_KERNEL_COPY:
                    raise
                done = self._through_buffer(want)
            if not done:
                return
            self.copied += done

    def _through_buffer(self, want: int) -> int:
        """The portable way, for file systems that refuse copy_file_range."""
        data = os.pread(self.extent.fd, min(want, COPY_BUFFER), self.extent.offset + self.copied)
        _write_all(self.target, memoryview(data))
        return len(data)


def _close_and_discard(descriptor: int, partial: str | None) -> None:
    if descriptor >= 0:
        os.close(descriptor)
    if partial is not None:
        unlink_quietly(partial)
