"""Small durable-file helpers shared by the volume, the tus store, the bundle reader and the archive."""
from __future__ import annotations

import contextlib
import os


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
