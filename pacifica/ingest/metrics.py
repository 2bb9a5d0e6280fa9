"""Prometheus metrics, summed over every process of one host (prometheus_client multiprocess mode).

Events are counted where they happen — the frontend counts what it accepts, each worker process
what it ingests or fails — into files under ``<volume>/metrics``, which frontend and workers
share, so ``GET /metrics`` of any frontend process reports the sum.  What is a state rather
than an event (queue depth, uploads in flight, live workers, open tus uploads) is read from
the database and the volume when scraped, so it is right across hosts too.

``enable(volume_path)`` must run in each process before the first metric is touched;
``instruments()`` builds the metric objects once, after it.
"""
from __future__ import annotations

import datetime
import os
import threading
import types

import peewee

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily

from . import db, heartbeats, jobs
from .errors import (ArchiveError, BundleError, ChecksumMismatch, MetadataError,
                     MetadataSinkError, PolicyRejected, SizeMismatch, UploadError)
from .intake.volume import Volume

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SIZE_BUCKETS = tuple(float(4 ** power * 1024) for power in range(0, 14))  # 1 KiB .. 64 GiB
TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
                3600)
REASONS = ("checksum", "metadata", "policy", "archive", "interrupted", "limit", "internal")


def metrics_dir(volume_path: str) -> str:
    """Where this host's processes keep their metric files."""
    return Volume(volume_path).metrics_folder


def enable(volume_path: str) -> None:
    """Count into the shared folder of this host (call before any metric is touched)."""
    directory = metrics_dir(volume_path)
    os.makedirs(directory, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.get_value_class()


_BUILT: list = []
_BUILDING = threading.Lock()


def instruments() -> types.SimpleNamespace:
    """The metric objects, built once per process (request threads race for the first)."""
    if not _BUILT:
        with _BUILDING:
            if not _BUILT:
                _BUILT.append(_build())
    return _BUILT[0]


def _build() -> types.SimpleNamespace:
    # registry=None: the values live in the multiprocess files, read by MultiProcessCollector
    return types.SimpleNamespace(
        accepted=Counter("pacifica_ingest_jobs_accepted_total",
                         "Jobs whose bundle or move request was accepted and queued", ["via"], registry=None),
        completed=Counter("pacifica_ingest_jobs_completed_total", "Jobs ingested completely",
                          registry=None),
        failed=Counter("pacifica_ingest_jobs_failed_total", "Jobs that ended FAILED",
                       ["step", "reason"], registry=None),
        files=Counter("pacifica_ingest_files_ingested_total", "Files stored and recorded",
                      registry=None),
        bytes=Counter("pacifica_ingest_ingested_bytes_total", "Bytes of files stored", registry=None),
        bundle_size=Histogram("pacifica_ingest_bundle_size_bytes",
                              "Size of accepted bundles as they landed on the volume",
                              buckets=SIZE_BUCKETS, registry=None),
        step_seconds=Histogram("pacifica_ingest_step_duration_seconds",
                               "Time a worker spent in each step of a job", ["step"],
                               buckets=TIME_BUCKETS, registry=None),
        get_state_seconds=Histogram("pacifica_ingest_get_state_duration_seconds",
                                    "Time to answer GET /get_state", buckets=TIME_BUCKETS,
                                    registry=None),
    )


def failure_reason(error: BaseException) -> str:
    """One of REASONS for an exception that failed a job."""
    if isinstance(error, (ChecksumMismatch, SizeMismatch)):
        return "checksum"
    if isinstance(error, PolicyRejected):
        return "policy"
    if isinstance(error, (ArchiveError, MetadataSinkError)):
        return "archive"
    if isinstance(error, UploadError):
        return "limit" if error.status in (413, 507) else "interrupted"
    if isinstance(error, MetadataError):
        return "metadata"
    if isinstance(error, BundleError):
        return "limit" if "limit" in error.message else "metadata"
    return "internal"


def job_failed(step: str, error: BaseException) -> None:
    """Count a job that ended FAILED at ``step``."""
    instruments().failed.labels(step=step, reason=failure_reason(error)).inc()


class StateCollector:
    """Gauges read at scrape time from the database and the volume (right across hosts)."""

    def __init__(self, read_state):
        self.read_state = read_state  # () -> dict of the values below

    def collect(self):
        """Yield the gauges."""
        state = self.read_state()
        for name, help_text in (
                ("uploads_in_flight", "Bodies being received right now"),
                ("queued_jobs", "Jobs accepted and waiting for a worker to start them"),
                ("oldest_queued_age_seconds", "Age of the oldest job waiting for a worker"),
                ("workers_live", "Workers whose heartbeat is recent"),
                ("tus_uploads_open", "Resumable uploads created and not yet complete"),
                ("tus_reserved_bytes", "Bytes the open resumable uploads still reserve")):
            yield GaugeMetricFamily(f"pacifica_ingest_{name}", help_text,
                                    value=float(state.get(name, 0)))


def exposition(read_state) -> bytes:
    """The text format of every metric of this host's processes plus the scrape-time gauges."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(StateCollector(read_state))
    return generate_latest(registry)


def service_state(worker_timeout: float, queue: str, tus_store) -> dict:
    """The scrape-time gauges: from the job table, the heartbeats and the tus store."""
    job = jobs.Job
    running = (job.state == jobs.OK) & (job.complete == False)  # noqa: E712
    waiting = running & job.queue_state.in_((jobs.QUEUED, jobs.WAITING)) & (job.owner == "")
    with db.connection():
        in_flight = job.select().where(running & (job.queue_state == jobs.RECEIVING)).count()
        queued = job.select().where(waiting).count()
        oldest = job.select(peewee.fn.MIN(job.updated)).where(waiting).scalar()
        live = len(heartbeats.live_workers(worker_timeout, queue))
    if isinstance(oldest, str):  # SQLite hands back text for an aggregate
        oldest = datetime.datetime.fromisoformat(oldest)
    age = (jobs.utcnow() - oldest).total_seconds() if oldest else 0.0
    open_uploads, reserved = tus_store.open_reservations()
    return {"uploads_in_flight": in_flight, "queued_jobs": queued,
            "oldest_queued_age_seconds": max(age, 0.0), "workers_live": live,
            "tus_uploads_open": open_uploads, "tus_reserved_bytes": reserved}
