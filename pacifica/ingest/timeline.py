"""When each step of a job began and ended (shown on the job's page)."""
from __future__ import annotations

import peewee

from .db import BaseModel, retrying
from .jobs import Step, utcnow


class JobStep(BaseModel):
    """One step of one job; a step run again (a redelivered job) keeps its latest times."""

    job_id = peewee.BigIntegerField()
    step = peewee.CharField(max_length=32)
    started = peewee.DateTimeField(default=utcnow)
    ended = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "ingest_job_steps"
        primary_key = peewee.CompositeKey("job_id", "step")


def began(job_id: int, step: str) -> None:
    """Record that a job entered a step now."""
    retrying(JobStep.replace(job_id=job_id, step=step, started=utcnow(), ended=None).execute)


def ended(job_id: int, step: str) -> None:
    """Record that a job left a step now."""
    retrying(JobStep.update(ended=utcnow()).where((JobStep.job_id == job_id)
                                                  & (JobStep.step == step)).execute)


def of_job(job_id: int) -> list[dict]:
    """The job's steps in the order they began, with their times and seconds."""
    order = {step.value: index for index, step in enumerate(Step)}
    rows = sorted(JobStep.select().where(JobStep.job_id == job_id),
                  key=lambda row: (row.started, order.get(row.step, len(order))))
    return [{"step": row.step, "started": _text(row.started), "ended": _text(row.ended),
             "seconds": (row.ended - row.started).total_seconds() if row.ended else None}
            for row in rows]


def _text(value) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else None
