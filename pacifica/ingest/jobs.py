"""Job rows and their state machine: the one place that writes state, task and percent."""
from __future__ import annotations

import datetime
from typing import Callable

import peewee

from .db import BaseModel, database_proxy, retrying, too_wide
from .errors import AdminRefused, JobNotFound, UploadError
from .protocol import FAILED, OK, Step

# queue_state: where the job stands with the broker.
RECEIVING = "receiving"  # the body is still arriving
WAITING = "waiting"  # accepted, but the broker could not take it yet; retried until it does
QUEUED = "queued"  # handed to the broker
DONE = "done"  # finished (OK or FAILED): nothing of it is left with the broker

MAX_JOB_ID = 2**63 - 1  # the largest a BIGINT id column holds
MAX_EXCEPTION = 16000  # characters of a failure message kept (MySQL TEXT holds 64 KiB)

KIND_UPLOAD = "upload"
KIND_MOVE = "move"


def utcnow() -> datetime.datetime:
    """Naive UTC now, to the second (the wire format has no fractions)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


class Job(BaseModel):
    """One upload or move and where it stands."""

    job_id = peewee.BigIntegerField(primary_key=True, column_name="id")
    kind = peewee.CharField(max_length=16, default=KIND_UPLOAD)
    state = peewee.CharField(max_length=16, default=OK, index=True)
    task = peewee.CharField(max_length=32, default=Step.UPLOADING.value)
    task_percent = peewee.FloatField(default=0.0)
    exception = peewee.TextField(default="")
    complete = peewee.BooleanField(default=False)
    created = peewee.DateTimeField(default=utcnow)
    updated = peewee.DateTimeField(default=utcnow, index=True)
    user = peewee.CharField(max_length=255, default="")
    path = peewee.CharField(max_length=1024, null=True)
    bytes_expected = peewee.BigIntegerField(null=True)
    bytes_received = peewee.BigIntegerField(default=0)
    queue_state = peewee.CharField(max_length=16, default=RECEIVING, index=True)
    file_id_start = peewee.BigIntegerField(null=True)
    file_count = peewee.IntegerField(null=True)
    attempts = peewee.IntegerField(default=0)
    owner = peewee.CharField(max_length=255, default="")

    class Meta:
        table_name = "ingest_jobs"

    def as_dict(self) -> dict:
        """The job state object, field names and types exactly as docs/PROTOCOL.md."""
        return {
            "job_id": self.job_id,
            "state": self.state,
            "task": self.task,
            "task_percent": f"{self.task_percent:.1f}",
            "complete": bool(self.complete),
            "updated": _format_time(self.updated),
            "created": _format_time(self.created),
            "exception": self.exception or "",
        }


def _format_time(value) -> str:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)[:19]


def create(job_id: int, user: str, kind: str = KIND_UPLOAD, path: str | None = None,
           bytes_expected: int | None = None, owner: str = "") -> Job:
    """Record a new job in state OK, task UPLOADING, 0 %."""
    for name, value in (("user", user), ("path", path)):
        reason = too_wide(Job._meta.fields[name], value)
        if reason:
            raise UploadError(f"the job's {name} does not fit: {reason}", status=400)
    return Job.create(job_id=job_id, user=user, kind=kind, path=path,
                      bytes_expected=bytes_expected, owner=owner)


def job_id_from(text) -> int:
    """A job id from a client's or an operator's text; ValueError saying what is wrong."""
    digits = str(text).strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 19
            and 1 <= int(digits) <= MAX_JOB_ID):
        shown = digits if len(digits) <= 40 else digits[:40] + "..."
        raise ValueError(f"job_id must be an integer from 1 to {MAX_JOB_ID}, got {shown!r}")
    return int(digits)


def forget(job_id: int) -> None:
    """Remove a job that never received a byte (it lost an idempotency race)."""
    retrying(Job.delete().where(Job.job_id == job_id).execute)


# The SQL of "the job with this id", per kind of database: get_state asks it on every poll,
# and building it anew each time cost more than running it (two thirds of a call).
_BY_ID_SQL: dict[type, str] = {}
# Each selected column's field name and conversion, in the order the SELECT lists them:
# peewee's own row reader worked them out again for every row (a third of a poll).
_COLUMNS = [(field.name, field.python_value) for field in Job._meta.sorted_fields]


def _by_id(job_id: int) -> Job | None:
    kind = type(database_proxy.obj)
    sql = _BY_ID_SQL.get(kind)
    if sql is None:
        sql = _BY_ID_SQL[kind] = Job.select().where(Job.job_id == 0).sql()[0]
    row = database_proxy.execute_sql(sql, (job_id,)).fetchone()
    if row is None:
        return None
    job = Job(__no_default__=1, **{name: convert(value)
                                   for (name, convert), value in zip(_COLUMNS, row)})
    job._dirty.clear()  # pylint: disable=protected-access  # as read: nothing to save
    return job


def get(job_id: int, visible: Callable[[str], bool] | None = None) -> Job:
    """Return the job or raise JobNotFound (also when ``visible`` hides its user's jobs)."""
    job = _by_id(job_id)
    if job is None or not (visible is None or visible(job.user)):
        raise JobNotFound(f"job ID {job_id} does not exist.")
    return job


def _update(job_id: int, only_if_running: bool = True, **fields) -> bool:
    """Write fields (and the updated time); with only_if_running, a finished job is left alone."""
    fields["updated"] = utcnow()
    query = Job.update(**fields).where(Job.job_id == job_id)
    if only_if_running:
        query = query.where((Job.state == OK) & (Job.complete == False))  # noqa: E712
    return retrying(query.execute) > 0


def advance(job_id: int, step: Step, percent: float = 0.0) -> bool:
    """Move a running job to a step and percent; False if the job is no longer running."""
    return _update(job_id, task=step.value, task_percent=round(min(max(percent, 0.0), 100.0), 1))


def fail(job_id: int, step: Step | str, message: str) -> bool:
    """Mark a job FAILED at a step with a message a person can act on."""
    task = step.value if isinstance(step, Step) else step
    if len(message) > MAX_EXCEPTION:  # hostile names must not make the FAILED write fail
        message = message[:MAX_EXCEPTION] + f"\n... ({len(message) - MAX_EXCEPTION} more characters)"
    return _update(job_id, only_if_running=False, state=FAILED, task=task, exception=message,
                   complete=True, queue_state=DONE)


def finish(job_id: int) -> bool:
    """Mark a job done: ingest metadata, 100 %, complete."""
    return _update(job_id, task=Step.INGEST_METADATA.value, task_percent=100.0, complete=True,
                   queue_state=DONE)


def set_fields(job_id: int, **fields) -> bool:
    """Write bookkeeping fields (path, byte counts, ids, enqueue flag) of any job."""
    return _update(job_id, only_if_running=False, **fields)


def reset(job_id: int, path: str | None = None) -> bool:
    """Put a job back to OK/UPLOADING so it can be ingested again (admin retry)."""
    fields = dict(state=OK, task=Step.UPLOADING.value, task_percent=0.0, exception="",
                  complete=False, queue_state=WAITING, owner="")
    if path is not None:
        fields["path"] = path
    return _update(job_id, only_if_running=False, **fields)


def claim_run(job_id: int, previous_owner: str, owner: str) -> bool:
    """Take a running job for one worker process; of racing deliveries only one wins."""
    query = Job.update(owner=owner, attempts=Job.attempts + 1, updated=utcnow()).where(
        (Job.job_id == job_id) & (Job.owner == previous_owner) & (Job.state == OK)
        & (Job.complete == False))  # noqa: E712
    return retrying(query.execute) > 0


def claim_for_queue(job_id: int) -> bool:
    """Take a WAITING job for enqueueing; only one caller wins, so no job is queued twice."""
    query = Job.update(queue_state=QUEUED, updated=utcnow()).where(
        (Job.job_id == job_id) & (Job.queue_state == WAITING))
    return retrying(query.execute) > 0


def waiting_jobs(limit: int = 100) -> list[int]:
    """Ids of accepted jobs the broker has not taken yet, oldest first."""
    query = (Job.select(Job.job_id)
             .where((Job.queue_state == WAITING) & (Job.state == OK) & (Job.complete == False))  # noqa: E712
             .order_by(Job.job_id).limit(limit))
    return [row.job_id for row in query]


def claim_file_ids(job_id: int, first_id: int, count: int) -> tuple[int, int]:
    """Keep the first file-id range given to a job; later claims get the kept one back."""
    with database_proxy.atomic():
        Job.update(file_id_start=first_id, file_count=count).where(
            (Job.job_id == job_id) & (Job.file_id_start.is_null())).execute()
        job = get(job_id)
    return job.file_id_start, job.file_count


def manual_set(job_id: int, state: str | None, task: str | None, percent: float | None,
               exception: str | None) -> Job:
    """Admin override of a job's visible state, within the state machine.

    A running job may be given any task and percent, failed (``state`` FAILED) or
    finished (task "ingest metadata" at 100 %).  A FAILED job may only get a new
    ``exception``; a job that finished OK is left alone.  Running a job again is
    ``retry``/``requeue``, never a state flip.
    """
    job = get(job_id)
    if job.state == OK and job.complete:
        raise AdminRefused(f"job {job_id} finished OK; its state cannot be changed by hand "
                           "(`retry --force` ingests it again)")
    if job.state == FAILED and (state == OK or task is not None or percent is not None):
        raise AdminRefused(f"job {job_id} is FAILED; only --exception can change (to run it "
                           "again use `retry` or `requeue`)")
    fields = {}
    if state == FAILED:
        fields.update(state=FAILED, complete=True, queue_state=DONE)
    if task is not None:
        fields["task"] = task
    if percent is not None:
        fields["task_percent"] = float(percent)
    if exception is not None:
        fields["exception"] = exception
    if task == Step.INGEST_METADATA.value and percent == 100 and state in (None, OK):
        fields.update(complete=True, queue_state=DONE)
    if fields and not _update(job_id, only_if_running=job.state == OK, **fields):
        raise AdminRefused(f"job {job_id} finished while it was being changed; look again")
    return get(job_id)
