"""The ingest and move pipelines: ordered steps, each idempotent, each reporting progress.

Imports neither cherrypy nor celery: the worker calls ``ingest_bundle`` or
``move_files`` and turns an ``IngestError`` into a FAILED job.
"""
from __future__ import annotations

import functools
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Callable, Iterable

from . import jobs, metadata, metrics, protocol, receipts, timeline
from .archive import ArchiveBackend, FileSource
from .archive.fanout import StoreFanout
from .bundle import BundleLimits, OpenedBundle
from .config import IngestSettings
from .errors import IngestError
from .extent import Extent
from .filetable import FinalMetadata, PlacedFile
from .intake import member_digests
from .intake.files import unlink_quietly
from .jobs import Job, Step
from .move_sources import MoveSources, OpenedSource
from .services.ids import MODE_FILE, IdSource
from .services.metadata_sink import MetadataSink
from .services.policy import PolicyCheck

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """The job stopped being OK while it ran (an admin failed it): stop quietly."""


@dataclass
class Deps:
    """The seams a pipeline uses, built once per worker process."""

    ids: IdSource
    policy: PolicyCheck
    archive: ArchiveBackend
    sink: MetadataSink
    limits: BundleLimits = BundleLimits()
    moves: MoveSources = MoveSources()  # no roots: every move refused
    progress_interval: float = IngestSettings.progress_interval


STEP_ORDER = {step: position for position, step in enumerate(Step)}


class JobProgress:
    """Writes task and percent for one job, at most every ``interval`` seconds within a step.

    ``floor`` is the furthest step a client has already seen: when a job is run
    again (a worker died, the database blinked), steps before it are redone
    silently, so the visible task never goes back beyond a restart of that step.
    """

    def __init__(self, job_id: int, interval: float, floor: Step = Step.UPLOADING):
        self.job_id = job_id
        self.interval = interval
        self.floor = floor
        self.step = Step.UPLOADING
        self._last_write = 0.0
        self._began = time.monotonic()
        self._done = 0
        self._total = 0

    def begin(self, step: Step, total: int = 0) -> None:
        """Enter a step at 0 %."""
        self.step, self._done, self._total = step, 0, total
        self._began = time.monotonic()
        self._write(0.0)
        timeline.began(self.job_id, step.value)

    def add(self, amount: int) -> None:
        """Count work done within the step (bytes, files); written when the interval has passed."""
        self._done += amount
        now = time.monotonic()
        if self._total and now - self._last_write >= self.interval:
            self._write(min(99.9, 100.0 * self._done / self._total))

    def end(self) -> None:
        """Leave the step at 100 %."""
        self._write(100.0)
        self.count_duration()

    def count_duration(self) -> None:
        """Count and log the time spent in the step (``end`` does; the last ends with the job)."""
        seconds = time.monotonic() - self._began
        timeline.ended(self.job_id, self.step.value)
        metrics.instruments().step_seconds.labels(step=self.step.value).observe(seconds)
        logger.info("job %s: %s took %.3f s", self.job_id, self.step.value, seconds)

    def _write(self, percent: float) -> None:
        self._last_write = time.monotonic()
        if STEP_ORDER[self.step] < STEP_ORDER[self.floor]:
            return
        if not jobs.advance(self.job_id, self.step, percent):
            raise JobCancelled(f"job {self.job_id} is no longer running")


def _mtime_of(text: str | None, fallback: float) -> float:
    """A file's mtime as metadata.txt gives it (RFC 2822 or ISO 8601), else ``fallback``."""
    parsed = _parse_time(text) if text else None
    return fallback if parsed is None else parsed


@functools.lru_cache(maxsize=1024)  # a bundle's files often share one time
def _parse_time(text: str) -> float | None:
    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _file_ids(job: Job, count: int, deps: Deps) -> int:
    """The job's file-id range: allocated once, kept on the job, reused on redelivery."""
    if job.file_id_start is not None and job.file_count == count:
        return job.file_id_start
    first = deps.ids.reserve(count, MODE_FILE) if count else 0
    first, _ = jobs.claim_file_ids(job.job_id, first, count)
    return first


def _validate(job: Job, deps: Deps, progress: JobProgress, count: int,
              final_of: Callable[[int], Iterable[dict]]) -> tuple[int, Iterable[dict]]:
    """Policy Validation: the job's file ids, the list sent on (``final_of(first_id)``), and
    the policy's yes."""
    progress.begin(Step.POLICY)
    first_id = _file_ids(job, count, deps)
    final = final_of(first_id)
    deps.policy.check(final, job.user)
    progress.end()
    return first_id, final


def ingest_bundle(job: Job, deps: Deps, progress: JobProgress) -> tuple[int, int]:
    """Open, validate, store and record one bundle; leave nothing in the archive on failure.

    Members and metadata entries go through the bundle's file table, a row at a time, so
    the worker's memory does not grow with the number of files.
    """
    progress.begin(Step.OPEN_TAR)
    with OpenedBundle.open_path(job.path, deps.limits) as bundle:
        progress.end()

        progress.begin(Step.LOAD_METADATA)
        table = bundle.table
        others = metadata.load(bundle.metadata_reader(), table, bundle.read_metadata)
        table.place()
        count, size = table.file_count, table.total_size()
        progress.end()

        first_id, final = _validate(job, deps, progress, count,
                                    lambda first: FinalMetadata(table, others, first, job.job_id))

        progress.begin(Step.INGEST_FILES, total=size or 1)
        fanout = StoreFanout(deps.archive, first_id)
        on_bytes = fanout.reporting(progress.add)
        store_all(deps.archive, first_id,
                  (_member_source(bundle, placed, on_bytes) for placed in table.placed()),
                  job.job_id, fanout)
        with rolled_back_on_failure(deps.archive, first_id, lambda: count, job.job_id):
            progress.end()

        return _record_and_finish(job, deps, progress, final, first_id, count, size)


def _member_source(bundle: OpenedBundle, placed: PlacedFile,
                   on_bytes: Callable[[int], None]) -> FileSource:
    """A bundle member as the archive stores it."""
    member = placed.member
    return FileSource(label=member.name, size=placed.size,
                      mtime=_mtime_of(placed.mtime, member.mtime), hashtype=placed.hashtype,
                      hashsum=placed.hashsum, opener=lambda: bundle.open(member),
                      on_bytes=on_bytes, extent=bundle.extent(member),
                      known_sha1=bundle.known_sha1(member))


def move_files(job: Job, deps: Deps, progress: JobProgress) -> tuple[int, int]:
    """The move variant: metadata names files on this host, beneath [move] allowed_roots.

    Each file is held open through ``deps.moves`` (no symbolic link followed) and its
    bytes are checked against the metadata as a bundle member's are, before the archive
    names it; a failure takes back out what this job moved.
    """
    progress.begin(Step.LOAD_METADATA)
    deps.moves.require_enabled()
    with open(job.path, "rb") as handle:
        parsed = metadata.parse(handle.read(), require_source=True)
    deps.moves.check_paths([entry.source for entry in parsed.files])
    placements = [metadata.FilePlacement(entry=e, member=e.source, subdir=_clip(e.subdir))
                  for e in parsed.files]
    progress.end()

    first_id, final = _validate(
        job, deps, progress, len(placements),
        lambda first: metadata.with_ids(parsed.entries, placements, first, job.job_id))

    progress.begin(Step.MOVE_FILES, total=len(placements) or 1)
    attempted = 0
    try:
        for offset, placement in enumerate(placements):
            attempted = offset + 1
            entry = placement.entry
            with deps.moves.open(entry.source, entry.size) as held:
                deps.archive.move(first_id + offset, entry.source, _held_source(entry, held))
            progress.add(1)
        deps.archive.sync()
    except BaseException as err:
        left = rollback(deps.archive, first_id, attempted)
        if isinstance(err, IngestError) and left:
            err.details.append(left)
        raise
    progress.end()

    return _record_and_finish(job, deps, progress, final, first_id, len(placements),
                    sum(placement.entry.size for placement in placements))


def _held_source(entry: metadata.FileEntry, held: OpenedSource) -> FileSource:
    """A move's file as the archive stores it: its bytes read from the held descriptor."""
    return FileSource(label=entry.source, size=entry.size,
                      mtime=_mtime_of(entry.mtime, held.stat.st_mtime), hashtype=entry.hashtype,
                      hashsum=entry.hashsum, opener=held.reader, extent=Extent(held.fd, 0))


def _clip(subdir: str) -> str:
    parts = metadata.split_path(subdir)
    return "/".join(parts[1:] if parts[:1] == [protocol.DATA_ROOT] else parts)


def _record_and_finish(job: Job, deps: Deps, progress: JobProgress, final: Iterable[dict],
                       first_id: int, count: int, size: int) -> tuple[int, int]:
    """Record the metadata and the receipt; if anything fails, take the job's files back out
    of the archive.  Returns the files and bytes the job stored."""
    with rolled_back_on_failure(deps.archive, first_id, lambda: count, job.job_id):
        progress.begin(Step.INGEST_METADATA)
        deps.sink.publish(job.job_id, job.user, final)
        receipts.record(job, final)  # signed before the job shows complete: a done job has one
    if jobs.finish(job.job_id):
        progress.count_duration()
        _remove_quietly(job.path)
        member_digests.discard(job.path)
        counted = metrics.instruments()
        counted.files.inc(count)
        counted.bytes.inc(size)
    return count, size


def store_all(archive: ArchiveBackend, first_id: int, sources: Iterable[FileSource],
              job_id: int, fanout: StoreFanout | None = None) -> None:
    """Store every file, then make them durable; on any failure remove what this job stored.

    ``fanout`` (a ``StoreFanout`` of the same archive and first id) is the one whose
    ``reporting`` callbacks the sources carry."""
    fanout = fanout or StoreFanout(archive, first_id)
    with rolled_back_on_failure(archive, first_id, lambda: fanout.submitted, job_id):
        fanout.run(sources)
        archive.sync()


@contextmanager
def rolled_back_on_failure(archive: ArchiveBackend, first_id: int, count: Callable[[], int],
                           job_id: int):
    """On any exception (BaseException: a cancel or a shutdown too), remove the job's files."""
    try:
        yield
    except BaseException as err:
        attempted = count()
        left = rollback(archive, first_id, attempted)
        logger.info("job %s: rolled back %d file(s) after %r", job_id, attempted, err)
        if isinstance(err, IngestError) and left:
            err.details.append(left)
        raise


def rollback(archive: ArchiveBackend, first_id: int, count: int) -> str:
    """Remove a job's files from the archive; describe what could not be removed."""
    kept = [first_id + n for n in range(count) if not _remove_one(archive, first_id + n)]
    if not kept:
        return ""
    return (f"{len(kept)} file(s) may already be in the {archive.describe()} and could not be "
            f"removed (file ids {kept[0]}..{kept[-1]})")


def _remove_one(archive: ArchiveBackend, file_id: int) -> bool:
    try:
        return archive.remove(file_id)
    except OSError:
        logger.warning("could not remove file id %s after a failed ingest", file_id, exc_info=True)
        return False


def _remove_quietly(path: str | None) -> None:
    if not path:
        return
    try:
        unlink_quietly(path)
    except OSError:
        logger.warning("could not remove finished bundle %s", path, exc_info=True)
