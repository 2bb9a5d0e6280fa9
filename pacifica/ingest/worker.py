"""Celery tasks: thin wrappers that look the job up, run a pipeline and record the outcome."""
from __future__ import annotations

import logging
import os
import socket
import traceback
from typing import Callable

from celery import Celery, signals

from . import db, jobs, schema
from .archive import from_settings as archive_from_settings
from .bundle import BundleLimits
from .config import Settings
from .errors import IngestError, JobNotFound
from .http import make_session
from .pipeline import Deps, JobCancelled, Progress, ingest_bundle, move_files
from .queue import TASK_INGEST, TASK_MOVE
from .services.ids import CounterIdSource, UniqueIdClient
from .services.metadata_sink import LocalMetadataSink, MetadataClient
from .services.policy import LocalPolicy, PolicyClient

logger = logging.getLogger(__name__)

PIPELINES = {TASK_INGEST: ingest_bundle, TASK_MOVE: move_files}


def build_deps(settings: Settings) -> Deps:
    """Pick each seam's backend from settings: a URL selects the remote service."""
    urls = settings.services
    ids = (UniqueIdClient(urls.uniqueid, make_session(settings.http)) if urls.uniqueid
           else CounterIdSource())
    policy = (PolicyClient(urls.policy, make_session(settings.http), settings.ingest.auth_header)
              if urls.policy else LocalPolicy())
    sink = (MetadataClient(urls.metadata, make_session(settings.http)) if urls.metadata
            else LocalMetadataSink())
    limits = BundleLimits(max_members=settings.ingest.max_members,
                          max_metadata_size=settings.ingest.max_metadata_size,
                          max_total_size=settings.ingest.max_total_size,
                          max_unpacked_size=settings.ingest.max_bundle_size,
                          max_unpack_ratio=settings.ingest.max_unpack_ratio,
                          min_free_space=settings.ingest.min_free_space)
    return Deps(ids=ids, policy=policy, archive=archive_from_settings(settings), sink=sink,
                limits=limits, progress_interval=settings.ingest.progress_interval)


def run_job(job_id: int, task_name: str, get_deps: Callable[[], Deps]) -> None:
    """Run a job's pipeline once; an IngestError becomes FAILED with its message."""
    try:
        job = jobs.get(job_id)
    except JobNotFound:
        logger.error("task %s for job %s: no such job, dropping it", task_name, job_id)
        return
    if job.complete or job.state != jobs.OK:
        logger.info("job %s is already %s (complete=%s); nothing to do", job_id, job.state,
                    job.complete)
        return
    jobs.set_fields(job_id, attempts=job.attempts + 1, owner=f"{socket.gethostname()}:{os.getpid()}")
    progress = Progress(job_id, 0.5)
    try:
        deps = get_deps()
        progress.interval = deps.progress_interval
        PIPELINES[task_name](job, deps, progress)
    except JobCancelled:
        logger.info("job %s was stopped from outside while it ran", job_id)
    except IngestError as err:
        logger.info("job %s failed at %s: %s", job_id, progress.step.value, err)
        jobs.fail(job_id, progress.step, str(err))
    except Exception as err:
        logger.exception("job %s: unexpected error at %s", job_id, progress.step.value)
        jobs.fail(job_id, progress.step, f"internal error at {progress.step.value}: {err!r} "
                                         "(the service logs have the details)\n"
                                         + traceback.format_exc(limit=5))
        raise


def install(app: Celery, settings: Settings) -> None:
    """Register the tasks and the per-process hooks on a Celery app."""
    state: dict = {}

    def deps() -> Deps:
        if "deps" not in state:  # built once per worker process, after the fork
            state["deps"] = build_deps(settings)
        return state["deps"]

    @app.task(name=TASK_INGEST, acks_late=True, reject_on_worker_lost=True)
    def ingest(job_id: int) -> None:
        """Ingest an uploaded bundle."""
        run_job(int(job_id), TASK_INGEST, deps)

    @app.task(name=TASK_MOVE, acks_late=True, reject_on_worker_lost=True)
    def move(job_id: int) -> None:
        """Ingest files already on the archive."""
        run_job(int(job_id), TASK_MOVE, deps)

    db.bind(settings.database)
    signals.worker_init.connect(_check_schema(settings), weak=False)
    signals.worker_process_init.connect(lambda **_: db.database_proxy.close(), weak=False)
    signals.task_prerun.connect(lambda **_: db.database_proxy.connect(reuse_if_open=True),
                                weak=False)
    signals.task_postrun.connect(lambda **_: db.database_proxy.close(), weak=False)
    app.ingest_task, app.move_task = ingest, move


def _check_schema(settings: Settings):
    def check(**_) -> None:
        db.wait_for_database(settings.database)
        try:
            schema.require_compatible()
        finally:
            db.database_proxy.close()
    return check
