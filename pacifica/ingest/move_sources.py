"""Which files ``/move`` may take, and opening them without following any symbolic link.

A move names files by their path on this host.  It may take them only from beneath the
directories ``[move] allowed_roots`` lists; with none listed, ``/move`` is off.  A source
is opened by walking its path one name at a time from the root's descriptor (``openat``
with ``O_NOFOLLOW``, and ``O_DIRECTORY`` for each directory), so a symbolic link anywhere
below the root is refused, never followed, whether it was there from the start or swapped
in while the move runs.  The caller then reads the bytes from the descriptor, not the path.

The walk also refuses the service's own files should a root hold them: the archive (other
jobs' files), the volume (their bundles), the queue and a SQLite database.  They are told
apart by device and inode, so no spelling of a path can slip past.

Messages name a source only as the client sent it, never a path of the service's own.
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from .config import Settings
from .db import sqlite_file
from .errors import IngestError

MOVE_DISABLED = ("/move is turned off on this service: an administrator must set [move] "
                 "allowed_roots (INGEST_MOVE_ALLOWED_ROOTS) to the directories moves may take "
                 "files from")

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: a terminal stays theirs.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


class MoveRefused(IngestError):
    """A move, or one of its sources, that the service will not take."""


@dataclass
class OpenedSource:
    """A source held open: the bytes a move stores are read from ``fd``, never from ``path``."""

    path: str  # as the client sent it
    fd: int
    stat: os.stat_result

    def reader(self) -> BinaryIO:
        """A fresh reader over the held file, from its first byte."""
        handle = os.fdopen(os.dup(self.fd), "rb")
        handle.seek(0)
        return handle


class MoveSources:
    """The allowed roots and the service's own places a move may never take from."""

    def __init__(self, roots: tuple[str, ...] = (), own_directories: tuple[str, ...] = (),
                 own_files: tuple[str, ...] = ()):
        self.roots = tuple(os.path.abspath(root) for root in roots)
        self.own_directories = own_directories
        self.own_files = own_files

    @classmethod
    def from_settings(cls, settings: Settings) -> "MoveSources":
        """[move] allowed_roots; the archive, volume, queue and SQLite file as off limits."""
        database = sqlite_file(settings.database.url)
        files = tuple(database + suffix for suffix in _SQLITE_SIDE_FILES) if database else ()
        return cls(settings.move.allowed_roots,
                   (settings.archive.local_path, settings.ingest.volume_path,
                    settings.celery.queue_path), files)

    @property
    def enabled(self) -> bool:
        """True when at least one root is configured."""
        return bool(self.roots)

    def require_enabled(self) -> None:
        """Refuse every move while no root is configured."""
        if not self.enabled:
            raise MoveRefused(MOVE_DISABLED)

    def check_paths(self, sources: list[str]) -> None:
        """Refuse, listing every bad one, sources that are not plain paths beneath a root."""
        problems = [problem for problem in map(self._path_problem, sources) if problem]
        if problems:
            raise MoveRefused("the move request names sources it may not take:", problems)

    def _path_problem(self, source: str) -> str | None:
        try:
            self._split(source)
        except MoveRefused as err:
            return err.message
        return None

    def _split(self, source: str) -> tuple[str, list[str]]:
        """The root a source lies beneath and the names below it, or MoveRefused."""
        shown = repr(source)
        if not isinstance(source, str) or not source:
            raise MoveRefused(f"{shown}: a source must be a path")
        if "\0" in source:
            raise MoveRefused(f"{shown}: contains a NUL byte")
        if not source.startswith("/"):
            raise MoveRefused(f"{shown}: a source must be an absolute path")
        names = source.split("/")[1:]
        if ".." in names or "." in names:
            raise MoveRefused(f"{shown}: '.' and '..' are not allowed in a source")
        if "" in names:
            raise MoveRefused(f"{shown}: empty path component (a doubled or trailing '/')")
        for root in self.roots:
            depth = len([name for name in root.split("/") if name])
            if "/".join(names[:depth]) == root.strip("/") and len(names) > depth:
                return root, names[depth:]
        raise MoveRefused(f"{shown}: not beneath a directory [move] allowed_roots lists")

    @contextlib.contextmanager
    def open(self, source: str, size: int) -> Iterator[OpenedSource]:
        """Hold a checked source open: beneath a root, no links, a regular file of ``size``."""
        root, names = self._split(source)
        own = self._own_identities()
        shown = repr(source)
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise MoveRefused(f"{shown}: the allowed root it lies beneath cannot be opened "
                              f"({err.strerror or err}); ask the service's administrator"
                              ) from None
        try:
            found = os.fstat(fd)
            for depth, name in enumerate(names):
                if (found.st_dev, found.st_ino) in own:
                    break
                try:
                    child = os.open(name, _FILE if depth == len(names) - 1 else _DIRECTORY,
                                    dir_fd=fd)
                except OSError as err:
                    within = "/".join([root.rstrip("/"), *names[:depth + 1]])
                    where = "" if within == source else f"{within} "
                    raise MoveRefused(f"{shown}: {where}{_why(err, _is_link(name, fd))}"
                                      ) from None
                os.close(fd)
                fd = child
                found = os.fstat(fd)
            if (found.st_dev, found.st_ino) in own:
                raise MoveRefused(f"{shown}: lies among the service's own files (its archive, "
                                  "volume, queue or database); a move cannot take it")
            if not stat.S_ISREG(found.st_mode):
                raise MoveRefused(f"{shown}: not a regular file")
            if found.st_size != size:
                raise MoveRefused(f"{shown}: size mismatch, metadata says {size} bytes, the file "
                                  f"has {found.st_size}")
            yield OpenedSource(source, fd, found)
        finally:
            os.close(fd)

    def _own_identities(self) -> set[tuple[int, int]]:
        """(device, inode) of the service's own directories and files that exist now."""
        found = set()
        for path in (*self.own_directories, *self.own_files):
            with contextlib.suppress(OSError):
                info = os.stat(path)
                found.add((info.st_dev, info.st_ino))
        return found


def _is_link(name: str, directory: int) -> bool:
    """Whether ``name`` in ``directory`` is a symbolic link (for the message only)."""
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _why(err: OSError, link: bool) -> str:
    """Why opening one name of the walk failed."""
    if link or err.errno == errno.ELOOP:
        return "is a symbolic link; a move follows none"
    if err.errno == errno.ENOTDIR:
        return "is not a directory"
    if err.errno == errno.ENOENT:
        return "does not exist"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "may not be read by the service (permission denied)"
    return f"cannot be opened: {err.strerror or err}"
