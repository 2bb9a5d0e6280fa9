"""recovery's view of processes on this host (in-process)."""
from __future__ import annotations

import os
import subprocess
import time

from pacifica.ingest.recovery import pid_alive


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]


def test_a_zombie_is_not_alive():
    """A dead worker whose parent has not reaped it yet must count as dead."""
    child = subprocess.Popen(["true"])  # pylint: disable=consider-using-with
    try:
        deadline = time.monotonic() + 10
        while _state(child.pid) != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert not pid_alive(child.pid)
    finally:
        child.wait(timeout=10)
    assert not pid_alive(child.pid)
    assert pid_alive(os.getpid())
