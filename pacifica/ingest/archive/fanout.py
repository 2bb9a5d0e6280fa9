"""Storing a bundle's files several at a time, with progress reported from the calling thread.

Small files cost a backend mostly waiting (file-system metadata, an HTTP round trip), so a
backend that declares ``parallel = N`` gets up to N batches in flight: consecutive small
files go in batches (one task per batch keeps the per-file overhead low), big files alone,
and no more than ``BYTES_IN_FLIGHT`` bytes at once, so big files do not fight each other.
Progress callbacks run only in the calling thread, so the job row is written by the
thread that owns the database connection, and a cancelled job stops the fan-out there.
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Callable, Iterable, Iterator

from . import ArchiveBackend, FileSource

BATCH_FILES = 32
BATCH_BYTES = 4 * 1024 * 1024
QUEUED_PER_THREAD = 2
# Bytes in flight at once: many small files run side by side, big ones one (or two) at a
# time.  Measured with the real Archive Interface (one CherryPy process) on 2 cores: 8
# PUTs of 1 MiB in flight took 2-3x as long as one at a time, 4 of 256 MiB about 1.7x.
# (The local archive already puts each big file on two cores: hash here, copy in the kernel.)
BYTES_IN_FLIGHT = 8 * 1024 * 1024
POLL_SECONDS = 0.2


class _Relay:
    """Collects byte counts from pool threads; ``flush`` hands them on in the caller's thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[Callable[[int], None], int] = {}
        self._wrappers: dict[Callable[[int], None], Callable[[int], None]] = {}
        self._stand_ins: set[Callable[[int], None]] = set()

    def wrap(self, callback: Callable[[int], None]) -> Callable[[int], None]:
        """A thread-safe stand-in for ``callback``."""
        if callback not in self._wrappers:
            def add(amount: int) -> None:
                with self._lock:
                    self._pending[callback] = self._pending.get(callback, 0) + amount
            self._wrappers[callback] = add
            self._stand_ins.add(add)
        return self._wrappers[callback]

    def wrapped(self, sources: Iterable[FileSource]) -> Iterator[FileSource]:
        """The sources with their progress callbacks made thread-safe (a copy of each source
        whose callback is not already a stand-in from ``wrap``)."""
        stand_ins = self._stand_ins
        for source in sources:
            callback = source.on_bytes
            yield replace(source, on_bytes=self.wrap(callback)) \
                if callback and callback not in stand_ins else source

    def flush(self) -> None:
        """Call each callback once with what accumulated."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for callback, amount in pending.items():
            callback(amount)


def batches(sources: Iterable[FileSource]) -> Iterator[list[FileSource]]:
    """Runs of consecutive small files, each big file on its own, taken from ``sources``
    lazily (a bundle's million files are never all in memory)."""
    batch: list[FileSource] = []
    size = 0
    for source in sources:
        if batch and (len(batch) >= BATCH_FILES or size + source.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(source)
        size += source.size
    if batch:
        yield batch


class StoreFanout:
    """Stores the n-th source as file id ``first_id + n``; ``submitted`` counts what was started."""

    def __init__(self, archive: ArchiveBackend, first_id: int):
        self.archive = archive
        self.first_id = first_id
        self.width = max(1, int(getattr(archive, "parallel", 1) or 1))
        self.submitted = 0
        self._relay = _Relay()

    def reporting(self, callback: Callable[[int], None]) -> Callable[[int], None]:
        """What sources should carry as ``on_bytes`` to report to ``callback``: with several
        threads, a stand-in whose counts reach ``callback`` in the thread that calls ``run``
        (sources built with it are stored as they are, not copied with a stand-in)."""
        return callback if self.width == 1 else self._relay.wrap(callback)

    def run(self, sources: Iterable[FileSource]) -> None:
        """Store everything; the first error stops new work, waits for what runs, and is raised.

        ``sources`` is read as the work goes: at most a few batches are held at once.
        """
        if self.width == 1:
            for source in sources:
                self.submitted += 1
                self.archive.store(self.first_id + self.submitted - 1, source)
            return
        relay = self._relay
        with ThreadPoolExecutor(self.width, thread_name_prefix="archive-store") as pool:
            pending: dict[Future, int] = {}
            try:
                for batch in batches(relay.wrapped(sources)):
                    size = sum(source.size for source in batch)
                    while pending and (len(pending) >= self.width * QUEUED_PER_THREAD
                                       or sum(pending.values()) + size > BYTES_IN_FLIGHT):
                        pending = self._reap(pending, relay)
                    pending[pool.submit(self._store_batch, self.first_id + self.submitted,
                                        batch)] = size
                    self.submitted += len(batch)
                while pending:
                    pending = self._reap(pending, relay)
            except BaseException:
                for future in pending:
                    future.cancel()
                wait(pending)
                raise
        relay.flush()

    @staticmethod
    def _reap(pending: dict[Future, int], relay: _Relay) -> dict[Future, int]:
        done, _ = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        relay.flush()
        for future in done:
            future.result()
        return {future: size for future, size in pending.items() if future not in done}

    def _store_batch(self, first_id: int, batch: list[FileSource]) -> None:
        for offset, source in enumerate(batch):
            self.archive.store(first_id + offset, source)
