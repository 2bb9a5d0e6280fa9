"""Logging for every process: one format, the job id on every line about a job, text or JSON.

``job_context(job_id)`` marks the lines logged while a job is handled (a request thread in
the frontend, a task in a worker); the filter adds ``job_id`` to each record, and both
formats print it.  Messages are escaped, so a bundle's member name cannot forge a log line.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import logging.config
import re
from typing import Iterator

CURRENT_JOB: contextvars.ContextVar[int | None] = contextvars.ContextVar("job_id", default=None)
CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(job)s: %(message)s"
# Loggers of libraries whose INFO lines mislead or repeat ours: Celery's "Task ... succeeded"
# (said of failed jobs too; the worker logs each job's outcome itself).
QUIET = {"celery.app.trace": "WARNING", "celery.worker.strategy": "WARNING"}


@contextlib.contextmanager
def job_context(job_id: int) -> Iterator[None]:
    """Lines logged inside this block carry ``job_id``."""
    token = CURRENT_JOB.set(job_id)
    try:
        yield
    finally:
        CURRENT_JOB.reset(token)


def escape(text: str) -> str:
    """Control characters and line breaks as visible escapes."""
    return CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"),
                       text)


class JobFilter(logging.Filter):
    """Adds ``job_id`` (None outside a job) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = CURRENT_JOB.get()
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [job N]: message``, one line per message (tracebacks follow)."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        record.job = f" [job {record.job_id}]" if getattr(record, "job_id", None) else ""
        record.message = escape(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "job_id", None) is not None:
            document["job_id"] = record.job_id
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


FORMATTERS = {"text": TextFormatter, "json": JsonFormatter}


def configure(level: str = "INFO", style: str = "text") -> None:
    """Send every logger to stderr in one format (call again once the settings are read)."""
    if style not in FORMATTERS:
        raise ValueError(f"[logging] format must be one of {', '.join(FORMATTERS)}, got {style!r}")
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"job": {"()": JobFilter}},
        "formatters": {"line": {"()": FORMATTERS[style]}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line",
                                "filters": ["job"], "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {name: {"level": quiet} for name, quiet in QUIET.items()},
    })
