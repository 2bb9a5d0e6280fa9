"""Finding and finishing jobs a dead process left behind.

Every job row carries an ``owner`` ("host:pid"): the frontend process while the
body streams in, then the worker process running the pipeline.  A process on
this host is known dead when its pid is gone; a process on another host is
presumed alive until the job has not moved for ``stale_after`` seconds.  A job
handed to the broker but not claimed yet (no owner) also waits ``stale_after``:
its message may still be in the broker.

- ``abandoned_uploads``/``fail_abandoned_uploads``: jobs still receiving a body
  whose frontend died; they are failed with the byte counts, the partial file removed.
- ``lost_jobs``/``requeue_lost_jobs``: jobs handed to the broker whose message
  is gone (the filesystem and Redis transports lose or hide a message whose
  worker was killed with SIGKILL); they are queued again, by the next sweep when
  the dead worker was on this host.  A duplicate message (RabbitMQ redelivers
  the unacknowledged one too) is harmless: ``claim_run`` lets one worker run a job at a time.
- ``remove_failed_bundles``: the bundles of jobs FAILED more than ``keep_failed`` seconds
  ago leave the volume, and the job's ``path`` becomes ``REMOVED`` (``bundle_removed`` tells;
  a job that never had a bundle on the volume keeps no path at all).
- ``Janitor``: the frontend's background thread doing all of that, plus handing
  WAITING jobs to the broker once it is back.
"""
from __future__ import annotations

import datetime
import logging
import os
import socket

from . import idempotency, jobs
from .config import IngestSettings
from .db import retrying
from .intake.body import UPLOAD_AGAIN, interrupted
from .intake.files import rename_durably, sync_file, unlink_quietly
from .intake.volume import Volume, partial
from .jobs import Job
from .queue import WaitingJobsRetry, submit

logger = logging.getLogger(__name__)

HOST = socket.gethostname()
REMOVED = ""  # the path of a failed job whose bundle was removed after keep_failed


def this_process() -> str:
    """The owner string of the calling process."""
    return f"{HOST}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """True when a process with this pid runs on this host (a zombie has died: not alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc to ask: the pid exists


START_SLACK = 2.0  # seconds: job times are whole seconds, process start times are ticks


def process_started(pid: int) -> float | None:
    """When a process of this host started (epoch seconds), or None if /proc cannot say."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def owner_process_alive(pid: int, updated) -> bool:
    """Whether the owner process of a job last updated at ``updated`` still runs here.

    A pid can be reused, notably in a restarted container, where the new processes get the
    same small pids: a process that started after the job's last update is not its owner."""
    if not pid_alive(pid):
        return False
    started = process_started(pid)
    if started is None or not isinstance(updated, datetime.datetime):
        return True
    return started <= updated.replace(tzinfo=datetime.timezone.utc).timestamp() + START_SLACK


def _host_and_pid(owner: str) -> tuple[str, int | None]:
    host, _, pid = (owner or "").rpartition(":")
    return (host, int(pid)) if host and pid.isdigit() else ("", None)


def owner_alive(owner: str, updated: datetime.datetime, stale_after: float) -> bool:
    """Whether the process named by ``owner`` may still be working on its job."""
    host, pid = _host_and_pid(owner)
    if pid is None:
        return False
    if host == HOST:
        return owner_process_alive(pid, updated)
    return not is_stale(updated, stale_after)


def owner_dead_here(owner: str, updated) -> bool:
    """True when ``owner`` names a process of this host that no longer runs (or whose pid a
    later process has taken)."""
    host, pid = _host_and_pid(owner)
    return host == HOST and pid is not None and not owner_process_alive(pid, updated)


def cutoff(seconds: float) -> datetime.datetime:
    """The updated time before which a job has not moved for ``seconds``."""
    return jobs.utcnow() - datetime.timedelta(seconds=seconds)


def is_stale(updated, stale_after: float) -> bool:
    """True when a job last moved more than ``stale_after`` seconds ago."""
    return isinstance(updated, datetime.datetime) and updated < cutoff(stale_after)


def _running():
    return (Job.state == jobs.OK) & (Job.complete == False)  # noqa: E712


def list_jobs(state: str | None = None, queue_state: str | None = None,
              older_than: float | None = None, running: bool = False,
              limit: int = 1000) -> list[Job]:
    """Jobs matching the filters, newest first."""
    query = Job.select()
    if state:
        query = query.where(Job.state == state)
    if queue_state:
        query = query.where(Job.queue_state == queue_state)
    if running:
        query = query.where(_running())
    if older_than is not None:
        query = query.where(Job.updated < cutoff(older_than))
    return list(query.order_by(Job.created.desc(), Job.job_id.desc()).limit(limit))


def describe(job: Job, stale_after: float) -> dict:
    """The job state object plus what an operator needs to judge a stuck job."""
    age = (jobs.utcnow() - job.updated).total_seconds() if isinstance(
        job.updated, datetime.datetime) else None
    running = job.state == jobs.OK and not job.complete
    return dict(job.as_dict(), kind=job.kind, queue_state=job.queue_state, owner=job.owner,
                attempts=job.attempts, path=job.path, file_id_start=job.file_id_start,
                file_count=job.file_count, bytes_expected=job.bytes_expected,
                bytes_received=job.bytes_received, seconds_since_update=age,
                stale=bool(running and is_stale(job.updated, stale_after)),
                bundle_removed=bundle_removed(job))


def abandoned_uploads(stale_after: float) -> list[Job]:
    """Jobs still receiving a body from a frontend that is gone (or silent too long)."""
    candidates = Job.select().where(_running() & (Job.queue_state == jobs.RECEIVING))
    return [job for job in candidates
            if job.owner != this_process() and not owner_alive(job.owner, job.updated,
                                                                stale_after)]


def landed_body(volume_path: str, job: Job) -> str | None:
    """The bundle of an abandoned upload whose whole body had arrived, made durable; else None.

    The frontend renames ``<id>.tar.part`` to ``<id>.tar`` only after the last byte and an
    fsync; a part file as long as the declared Content-Length is fsynced and renamed here."""
    final = Volume(volume_path).bundle(job.job_id)
    if os.path.exists(final):
        return final
    part = partial(final)
    try:
        if job.bytes_expected is None or os.path.getsize(part) != job.bytes_expected:
            return None
        with open(part, "rb+") as handle:
            sync_file(handle)
        rename_durably(part, final)
    except FileNotFoundError:
        return None
    return final


def fail_abandoned_uploads(volume_path: str, stale_after: float) -> list[int]:
    """Queue each abandoned upload whose whole body landed; fail the others with their byte
    counts and remove their partial files.  Returns the failed ones."""
    failed = []
    for job in abandoned_uploads(stale_after):
        bundle = landed_body(volume_path, job)
        if bundle is not None:
            jobs.set_fields(job.job_id, path=bundle, bytes_received=os.path.getsize(bundle),
                            task_percent=100.0, queue_state=jobs.WAITING, owner="")
            logger.warning("job %s: its frontend %s died after the whole body arrived; the "
                           "bundle is queued", job.job_id, job.owner)
            continue
        received = job.bytes_received or 0
        part = partial(Volume(volume_path).bundle(job.job_id))
        if os.path.exists(part):
            received = max(received, os.path.getsize(part))
        who = f"the frontend process {job.owner or '(unknown)'}"
        cut = interrupted(received, job.bytes_expected, UPLOAD_AGAIN, who)
        if jobs.fail(job.job_id, jobs.Step.UPLOADING, str(cut)):
            remove_leftovers(volume_path, job.job_id)
            logger.warning("job %s: upload abandoned by %s after %d bytes; marked FAILED",
                           job.job_id, job.owner, received)
            failed.append(job.job_id)
    return failed


def remove_leftovers(volume_path: str, job_id: int) -> None:
    """Remove partial and decompressed copies of a job's bundle (never the bundle itself)."""
    for path in Volume(volume_path).leftovers(job_id):
        unlink_quietly(path)


def remove_failed_bundles(volume_path: str, keep_failed: float) -> list[int]:
    """Remove from the volume the bundles of jobs FAILED ``keep_failed`` seconds ago or more.

    Only files the job has on the volume go (its bundle or move request, partial and
    decompressed copies); a path elsewhere (``retry --path``) is not ours and stays.  The path
    becomes REMOVED first, and only while the job is still FAILED, so a job being retried
    keeps it.
    """
    volume = Volume(volume_path)
    candidates = Job.select(Job.job_id, Job.path).where(
        (Job.state == jobs.FAILED) & Job.path.is_null(False)
        & Job.path.startswith(volume.path + os.sep) & (Job.updated <= cutoff(keep_failed)))
    removed = []
    for job in candidates:
        if not volume.holds_job_file(job.path, job.job_id):
            continue
        query = Job.update(path=REMOVED).where((Job.job_id == job.job_id) & (Job.path == job.path)
                                            & (Job.state == jobs.FAILED))
        if retrying(query.execute) == 0:
            continue
        for path in (job.path, *volume.leftovers(job.job_id)):
            unlink_quietly(path)
        logger.info("job %s: FAILED more than %.0f s ago; removed its bundle %s (keep_failed)",
                    job.job_id, keep_failed, job.path)
        removed.append(job.job_id)
    return removed


def bundle_removed(job: Job) -> bool:
    """True when a failed job's bundle was on the volume and has been removed after keep_failed."""
    return job.state == jobs.FAILED and job.path == REMOVED


def lost_jobs(stale_after: float) -> list[Job]:
    """Queued jobs whose worker is gone: at once for a dead process of this host; otherwise
    (another host, or never claimed: its message may still be in the broker) after
    ``stale_after`` seconds without progress."""
    candidates = Job.select().where(_running() & (Job.queue_state == jobs.QUEUED) & (
        Job.owner.startswith(f"{HOST}:") | (Job.updated < cutoff(stale_after))))
    return [job for job in candidates if owner_dead_here(job.owner, job.updated)
            or (is_stale(job.updated, stale_after)
                and not owner_alive(job.owner, job.updated, stale_after))]


def requeue(job_id: int, enqueue, only_if_owner: str | None = None,
            only_if_queued_before=None) -> bool:
    """Put a job back on the queue (once, even with several frontends racing)."""
    query = Job.update(queue_state=jobs.WAITING, owner="", updated=jobs.utcnow()).where(
        Job.job_id == job_id)
    if only_if_owner is not None:  # nobody (a redelivery, another sweep) took it meanwhile
        query = query.where((Job.queue_state == jobs.QUEUED) & (Job.owner == only_if_owner))
    if only_if_queued_before is not None:
        query = query.where((Job.queue_state == jobs.QUEUED)
                            & (Job.updated < only_if_queued_before))
    if retrying(query.execute) == 0:
        return False
    return submit(job_id, jobs.get(job_id).kind, enqueue)


def requeue_lost_jobs(enqueue, stale_after: float) -> list[int]:
    """Queue again every lost job; return their ids."""
    requeued = []
    for job in lost_jobs(stale_after):
        dead_here = owner_dead_here(job.owner, job.updated)
        if requeue(job.job_id, enqueue, only_if_owner=job.owner,
                   only_if_queued_before=None if dead_here else cutoff(stale_after)):
            logger.warning("job %s: %s; queued again", job.job_id,
                           f"its worker {job.owner} is gone" if dead_here else
                           f"no progress for {stale_after}s and no live worker "
                           f"({job.owner or 'never started'})")
            requeued.append(job.job_id)
    return requeued


def sweep(enqueue, ingest: IngestSettings) -> dict:
    """One pass of every upkeep of the job table and the volume; what each did."""
    return {
        "failed_uploads": fail_abandoned_uploads(ingest.volume_path, ingest.stale_after),
        "requeued": requeue_lost_jobs(enqueue, ingest.stale_after),
        "removed_bundles": remove_failed_bundles(ingest.volume_path, ingest.keep_failed),
        "forgotten_keys": idempotency.sweep(ingest.idempotency_ttl),
    }


class Janitor(WaitingJobsRetry):
    """The frontend's background thread: ``sweep``, then waiting jobs to the broker."""

    def __init__(self, enqueue, ingest: IngestSettings, interval: float | None = None):
        super().__init__(enqueue, interval if interval is not None
                         else max(min(5.0, ingest.stale_after / 3), 0.5))
        self.ingest = ingest

    def run_once(self) -> int:
        """One pass of every sweep; return how many jobs the broker took."""
        sweep(self.enqueue, self.ingest)
        return super().run_once()
