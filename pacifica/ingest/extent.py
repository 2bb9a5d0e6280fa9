"""Where a file's bytes lie in an open file: what a bundle member offers and a backend copies."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Extent:
    """Bytes at ``offset`` of the open file ``fd``: lets a backend copy them in the kernel."""

    fd: int
    offset: int
