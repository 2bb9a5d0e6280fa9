"""Worker heartbeats: each Celery worker records that it is alive, so a queue nobody consumes shows.

A worker's main process writes its row every ``[celery] heartbeat_interval`` seconds; a worker
is live while its row is younger than ``[celery] worker_timeout``.  A job that waits in the
queue while no worker is live says so in its state object (``waiting_for``).
"""
from __future__ import annotations

import datetime
import logging
import os
import socket
import time

import peewee

from . import jobs
from .db import BaseModel, retrying
from .periodic import Periodic

logger = logging.getLogger(__name__)

FORGET_AFTER = 7 * 24 * 3600  # seconds after which a silent worker's row is removed


class WorkerBeat(BaseModel):
    """One worker (a ``celery worker`` main process) and when it was last seen."""

    name = peewee.CharField(max_length=255, primary_key=True)
    host = peewee.CharField(max_length=255)
    pid = peewee.IntegerField()
    queue = peewee.CharField(max_length=255, default="")
    started = peewee.DateTimeField(default=jobs.utcnow)
    seen = peewee.DateTimeField(default=jobs.utcnow, index=True)
    stopped = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "ingest_workers"


def beat(name: str, queue: str) -> None:
    """Record that the worker ``name`` is alive now."""
    now = jobs.utcnow()
    seen = WorkerBeat.update(seen=now, stopped=None, pid=os.getpid()).where(
        WorkerBeat.name == name)
    if retrying(seen.execute) == 0:
        retrying(WorkerBeat.insert(name=name, host=socket.gethostname(), pid=os.getpid(),
                                   queue=queue, started=now, seen=now)
                 .on_conflict_ignore().execute)


def stopped(name: str) -> None:
    """Record that the worker ``name`` shut down cleanly."""
    retrying(WorkerBeat.update(stopped=jobs.utcnow()).where(WorkerBeat.name == name).execute)


def forget_old(now: datetime.datetime | None = None) -> int:
    """Remove rows of workers silent for a week; return how many."""
    limit = (now or jobs.utcnow()) - datetime.timedelta(seconds=FORGET_AFTER)
    return retrying(WorkerBeat.delete().where(WorkerBeat.seen < limit).execute)


def live_workers(timeout: float, queue: str | None = None) -> list[WorkerBeat]:
    """Workers seen within ``timeout`` seconds that have not stopped (of one queue if given)."""
    since = jobs.utcnow() - datetime.timedelta(seconds=timeout)
    query = WorkerBeat.select().where((WorkerBeat.seen >= since) & WorkerBeat.stopped.is_null())
    if queue is not None:
        query = query.where(WorkerBeat.queue == queue)
    return list(query.order_by(WorkerBeat.seen.desc()))


def last_seen(queue: str | None = None) -> datetime.datetime | None:
    """When any worker (of one queue if given) was last seen; None if none ever was."""
    query = WorkerBeat.select(peewee.fn.MAX(WorkerBeat.seen))
    if queue is not None:
        query = query.where(WorkerBeat.queue == queue)
    value = query.scalar()
    if isinstance(value, str):  # SQLite hands back text for an aggregate
        value = datetime.datetime.fromisoformat(value)
    return value


def no_worker_note(timeout: float, queue: str | None = None) -> str | None:
    """Words for a person when no worker is live: what a queued job is waiting for."""
    if live_workers(timeout, queue):
        return None
    seen = last_seen(queue)
    if seen is None:
        return "a worker: none has been seen yet (start one: celery -A pacifica.ingest.tasks worker)"
    silent = int((jobs.utcnow() - seen).total_seconds())
    return f"a worker: none has been seen for {silent} s"


# What the last look at the workers found, per (timeout, queue): every poll of a queued job
# asks, and heartbeats come every few seconds, so one look a second per process is enough.
_NOTES: dict[tuple, tuple[float, str | None]] = {}
NOTE_TTL = 1.0


def waiting_for(job: jobs.Job, timeout: float, queue: str | None = None) -> str | None:
    """What a job that no worker has started yet is waiting for, or None."""
    if job.complete or job.state != jobs.OK or job.owner or job.queue_state != jobs.QUEUED:
        return None
    key, now = (timeout, queue), time.monotonic()
    cached = _NOTES.get(key)
    if cached is None or now - cached[0] > NOTE_TTL:
        cached = _NOTES[key] = (now, no_worker_note(timeout, queue))
    return cached[1]


def job_state(job: jobs.Job, timeout: float, queue: str | None = None) -> dict:
    """The job state object; a queued job no live worker can take also says what it waits for."""
    state = job.as_dict()
    note = waiting_for(job, timeout, queue)
    if note:
        state["waiting_for"] = note
    return state


class Heartbeat(Periodic):
    """Background thread of a worker's main process: writes its row every few seconds."""

    name = "worker-heartbeat"

    def __init__(self, worker_name: str, queue: str, interval: float):
        super().__init__(interval)
        self.worker_name = worker_name
        self.queue = queue

    def run_once(self) -> None:
        """Say we are alive (and forget workers long gone)."""
        beat(self.worker_name, self.queue)
        forget_old()

    def stop(self) -> None:
        """Stop beating and record the clean shutdown."""
        super().stop()
        try:
            stopped(self.worker_name)
        except Exception:  # pylint: disable=broad-except
            logger.warning("could not record that worker %s stopped", self.worker_name,
                           exc_info=True)
