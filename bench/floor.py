"""The physical floor: what copying the bundle to the volume's disk and hashing it cost."""
from __future__ import annotations

import os
import subprocess
import time


def _timed(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def measure(bundle: str, scratch_dir: str) -> dict:
    """``cp`` the bundle next to the volume, ``sha1sum`` it; the floor is the sum of the two.

    ``sync_s`` (flushing the copy to the device) is recorded too but is not part of the
    floor; the service does flush, so the floor is the stricter of the two readings.
    """
    os.makedirs(scratch_dir, exist_ok=True)
    copy = os.path.join(scratch_dir, "floor-copy.tar")
    try:
        cp_s = _timed(["cp", bundle, copy])
        sync_s = _timed(["sync", copy])
        sha1_s = _timed(["sha1sum", bundle])
    finally:
        if os.path.exists(copy):
            os.unlink(copy)
    return {"cp_s": cp_s, "sha1sum_s": sha1_s, "sync_s": sync_s, "floor_s": cp_s + sha1_s}
