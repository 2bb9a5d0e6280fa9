"""recovery's view of processes on this host (in-process)."""
from __future__ import annotations

import datetime
import os
import subprocess
import time

from pacifica.ingest.recovery import owner_process_alive, pid_alive


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


def test_a_pid_taken_by_a_later_process_is_not_the_owner():
    """In a restarted container the new processes get the old small pids: a process that
    started after the job's last update cannot be the process that ran it."""
    child = subprocess.Popen(["sleep", "30"])  # pylint: disable=consider-using-with
    try:
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        assert owner_process_alive(child.pid, now)
        assert not owner_process_alive(child.pid, now - datetime.timedelta(seconds=60))
        assert owner_process_alive(os.getpid(), now - datetime.timedelta(seconds=1))
    finally:
        child.kill()
        child.wait(timeout=10)
    assert not owner_process_alive(child.pid, now)
