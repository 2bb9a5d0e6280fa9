"""Every process the suite starts: in a group of its own, ended with its whole group.

The test session makes itself the subreaper of everything it starts (``PR_SET_CHILD_SUBREAPER``),
so a grandchild whose parent died — a Celery pool process, the worker of
``pacifica-ingest --with-worker`` — is still found among the session's descendants when the
session ends, and ``leftovers`` names it.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE = 30.0  # seconds a process group gets to stop after SIGTERM before SIGKILL


def become_subreaper() -> bool:
    """Adopt the orphans of the processes we start (Linux); False where it is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def spawn(command: list[str], **options) -> subprocess.Popen:
    """Start a process as the leader of a new process group."""
    return subprocess.Popen(command, start_new_session=True, **options)  # pylint: disable=consider-using-with


def end(process: subprocess.Popen | None, sig: int = signal.SIGTERM,
        grace: float = GRACE) -> None:
    """Stop a process and everything left in its group.

    SIGTERM goes to the leader only (a Celery main process stops its own pool; pool children
    killed beside it would leave it waiting for them); any other signal goes to the group.
    After ``grace`` seconds, or once the leader is gone, the group is killed with SIGKILL.
    """
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGTERM:
                process.send_signal(sig)
            else:
                os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=grace)


def _status(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0]


def children(pid: int) -> list[int]:
    """Live direct children of a process."""
    found = []
    for name in os.listdir("/proc"):
        status = _status(int(name)) if name.isdigit() else None
        if status and status[0] == pid and status[1] != "Z":
            found.append(int(name))
    return found


def descendants(root: int | None = None) -> list[int]:
    """Live (not zombie) descendants of ``root`` (default: this process)."""
    root = os.getpid() if root is None else root
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            status = _status(int(name))
            if status and status[1] != "Z":
                parents[int(name)] = status[0]
    found, frontier = [], {root}
    while frontier:
        children = {pid for pid, parent in parents.items() if parent in frontier}
        found.extend(sorted(children))
        frontier = children
    return found


def command_line(pid: int) -> str:
    """What a process runs, for messages."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def reap() -> None:
    """Collect exited children (orphans adopted as subreaper end as our zombies)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def leftovers(settle: float = 5.0) -> dict[int, str]:
    """Descendants still alive after ``settle`` seconds: {pid: command line}."""
    deadline = time.monotonic() + settle
    while True:
        reap()
        alive = descendants()
        if not alive or time.monotonic() >= deadline:
            return {pid: command_line(pid) for pid in alive}
        time.sleep(0.2)


def kill_all(pids) -> None:
    """SIGKILL each process (the last resort of the session-end check)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    reap()
