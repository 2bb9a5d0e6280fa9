"""Peak resident memory of process trees, sampled from /proc while a measurement runs."""
from __future__ import annotations

import os
import threading

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        parent = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    return children


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children = _children_map()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_kib(pid: int) -> int:
    """Resident set size of one process in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


class PeakRss:
    """Samples named process trees every ``interval`` s; ``peaks`` holds the largest sums (KiB).

    ``largest`` holds the largest single process of each tree, which for a Celery worker is
    the pool child doing the work.
    """

    def __init__(self, roots: dict[str, int], interval: float = 0.05):
        self.roots = roots
        self.interval = interval
        self.peaks = {name: 0 for name in roots}
        self.largest = {name: 0 for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._members = {name: tree(pid) for name, pid in roots.items()}

    def _run(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            if rounds % 20 == 0:  # pool children can be replaced; refresh the trees now and then
                self._members = {name: tree(pid) for name, pid in self.roots.items()}
            for name, pids in self._members.items():
                sizes = [rss_kib(pid) for pid in pids]
                self.peaks[name] = max(self.peaks[name], sum(sizes))
                self.largest[name] = max(self.largest[name], max(sizes, default=0))
            rounds += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def mib(self) -> dict[str, float]:
        """Peaks in MiB: ``<name>`` for the tree, ``<name>_largest`` for its largest process."""
        out = {}
        for name in self.roots:
            out[name] = round(self.peaks[name] / 1024, 1)
            out[f"{name}_largest"] = round(self.largest[name] / 1024, 1)
        return out
