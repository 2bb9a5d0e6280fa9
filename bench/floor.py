"""The physical floor: what the same work costs the operating system's own tools.

Two floors, chosen by the bundle's shape (``Shape.many_files``):

- bytes (few large files): ``cp`` of the bundle next to the volume plus ``sha1sum`` of it;
- files (many small files): ``tar -xf`` of the bundle onto the volume's disk, ``sha1sum`` of
  every member, and one ``syncfs`` (``sync -f``) making the files durable, as the service does.

Each starts with a ``sync``, so no dirty pages of earlier work are flushed inside the figure.
The scratch folder must be on the filesystem of the service's volume: the benchmark keeps
both in its one work folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

from .bundles import Shape


def _timed(argv: list[str], **options) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **options)
    return time.monotonic() - started


def settle() -> float:
    """``sync``: flush what earlier work left dirty, before a measurement; its seconds."""
    started = time.monotonic()
    os.sync()
    return time.monotonic() - started


def copy(bundle: str, scratch_dir: str) -> dict:
    """``cp`` + ``sha1sum`` of the bundle; ``sync_s`` (flushing the copy) is recorded apart.

    The service does flush, so leaving the sync out makes this floor the stricter one.
    """
    os.makedirs(scratch_dir, exist_ok=True)
    target = os.path.join(scratch_dir, "floor-copy.tar")
    settle_s = settle()
    try:
        cp_s = _timed(["cp", bundle, target])
        sync_s = _timed(["sync", target])
        sha1_s = _timed(["sha1sum", bundle])
    finally:
        if os.path.exists(target):
            os.unlink(target)
    return {"floor": "cp + sha1sum", "settle_s": settle_s, "cp_s": cp_s, "sha1sum_s": sha1_s,
            "sync_s": sync_s, "floor_s": cp_s + sha1_s}


def extract(bundle: str, scratch_dir: str) -> dict:
    """``tar -xf`` onto the disk + ``sha1sum`` of the members + one ``sync -f``: all three count."""
    target = os.path.join(scratch_dir, "floor-extract")
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    settle_s = settle()
    try:
        tar_s = _timed(["tar", "-xf", bundle, "-C", target])
        # find | xargs: one sha1sum per few thousand members, as a shell user would hash them.
        sha1_s = _timed(["sh", "-c", "find . -type f -print0 | xargs -0 sha1sum"], cwd=target)
        syncfs_s = _timed(["sync", "-f", target])
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return {"floor": "tar -xf + sha1sum + syncfs", "settle_s": settle_s, "tar_s": tar_s,
            "sha1sum_s": sha1_s, "syncfs_s": syncfs_s, "floor_s": tar_s + sha1_s + syncfs_s}


def measure(bundle: str, shape: Shape, scratch_dir: str) -> dict:
    """The floor that fits the bundle's shape."""
    return extract(bundle, scratch_dir) if shape.many_files else copy(bundle, scratch_dir)


def describe(figures: dict) -> str:
    """The parts of one floor measurement, for logs and the table."""
    if "tar_s" in figures:
        return (f"tar {figures['tar_s']:.2f} + sha1sum {figures['sha1sum_s']:.2f} + "
                f"syncfs {figures['syncfs_s']:.2f}")
    return f"cp {figures['cp_s']:.2f} + sha1sum {figures['sha1sum_s']:.2f}"
