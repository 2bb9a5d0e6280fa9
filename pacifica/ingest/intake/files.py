"""Durable files: written whole under a partial name, fsynced, renamed; and removed if present."""
from __future__ import annotations

import contextlib
import os
from typing import IO, Iterator


def unlink_quietly(path: str) -> None:
    """Remove a file that may already be gone."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def fsync_directory(path: str) -> None:
    """Make a rename or a new name in ``path`` durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sync_file(handle: IO) -> None:
    """Flush a file object and fsync it."""
    handle.flush()
    os.fsync(handle.fileno())


def rename_durably(partial: str, final: str, durable: bool = True) -> None:
    """Rename the whole file ``partial`` to ``final`` (and make the new name durable)."""
    os.replace(partial, final)
    if durable:
        fsync_directory(os.path.dirname(os.path.abspath(final)))


@contextlib.contextmanager
def written_whole(final: str, partial: str, mode: str = "wb", durable: bool = True,
                  **open_args) -> Iterator[IO]:
    """A file object on ``partial`` that becomes ``final`` once the block ends without error.

    ``durable``: fsync the file before the rename and the folder after it.  On any error the
    partial file is removed and ``final`` is left as it was.
    """
    try:
        with open(partial, mode, **open_args) as handle:  # pylint: disable=unspecified-encoding
            yield handle
            if durable:
                sync_file(handle)
        rename_durably(partial, final, durable)
    except BaseException:
        unlink_quietly(partial)
        raise


def write_durably(final: str, data: bytes, partial: str) -> None:
    """Write a small file whole and durably."""
    with written_whole(final, partial) as handle:
        handle.write(data)
