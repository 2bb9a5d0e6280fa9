"""Celery tasks: thin wrappers that look the job up, run a pipeline and record the outcome."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Callable

from celery import Celery, signals

from . import db, heartbeats, jobs, logsetup, metrics, notify, receipts, recovery, schema, startup
from .archive import from_settings as archive_from_settings
from .bundle import BundleLimits
from .config import IngestSettings, Settings
from .errors import IngestError, JobNotFound
from .http import make_session, redact
from .jobs import Step
from .move_sources import MoveSources
from .pipeline import STEP_ORDER, Deps, JobCancelled, JobProgress, ingest_bundle, move_files
from .queue import TASK_INGEST, TASK_MOVE, TASK_NOTIFY
from .services.ids import from_settings as ids_from_settings
from .services.metadata_sink import LocalMetadataSink, MetadataClient
from .services.policy import LocalPolicy, PolicyClient

logger = logging.getLogger(__name__)

PIPELINES = {TASK_INGEST: ingest_bundle, TASK_MOVE: move_files}


def build_deps(settings: Settings) -> Deps:
    """Pick each seam's backend from settings: a URL selects the remote service."""
    urls = settings.services
    policy = (PolicyClient(urls.policy, make_session(settings.http), settings.ingest.auth_header)
              if urls.policy else LocalPolicy(settings.policy.required))
    sink = (MetadataClient(urls.metadata, make_session(settings.http)) if urls.metadata
            else LocalMetadataSink())
    return Deps(ids=ids_from_settings(settings), policy=policy,
                archive=archive_from_settings(settings), sink=sink,
                limits=BundleLimits.from_settings(settings.ingest),
                progress_interval=settings.ingest.progress_interval,
                moves=MoveSources.from_settings(settings))


DATABASE_OUTAGE_RUNS = 5  # times a pipeline is run again after losing the database


def run_job(job_id: int, task_name: str, get_deps: Callable[[], Deps],
            stale_after: float, on_end: Callable[[int], None] | None = None) -> None:
    """Run a job's pipeline once (every line it logs carries the job id).

    ``on_end(job_id)`` is called once the job has ended, OK or FAILED (webhooks)."""
    with logsetup.job_context(job_id):
        ended = False
        try:
            ended = _run_job(job_id, task_name, get_deps, stale_after)
        except Exception:
            ended = True  # failed as an internal error
            raise
        finally:
            if ended and on_end is not None:
                _quietly(on_end, job_id)


def _quietly(action: Callable[[int], None], job_id: int) -> None:
    """Run an after-the-job action; its failure is logged, never the job's."""
    try:
        action(job_id)
    except Exception:  # pylint: disable=broad-except
        logger.warning("job %s: %s failed", job_id, getattr(action, "__name__", action),
                       exc_info=True)


def _run_job(job_id: int, task_name: str, get_deps: Callable[[], Deps],
             stale_after: float) -> bool:
    """Run a job's pipeline once; an IngestError becomes FAILED with its message.

    True when this run ended the job (OK or FAILED); False when it was not ours to run.

    A delivery of a job another live process is running is dropped (duplicates
    come from broker redelivery and the lost-job sweep); a job whose previous
    worker died is taken over and its idempotent pipeline run again.
    """
    try:
        job = db.retrying(lambda: jobs.get(job_id))
    except JobNotFound:
        logger.error("task %s for job %s: no such job, dropping it", task_name, job_id)
        return False
    if job.complete or job.state != jobs.OK:
        logger.info("job %s is already %s (complete=%s); nothing to do", job_id, job.state,
                    job.complete)
        return False
    me = recovery.this_process()
    if job.owner and job.owner != me and recovery.owner_alive(job.owner, job.updated,
                                                               stale_after):
        logger.warning("job %s is being run by %s; dropping this duplicate delivery", job_id,
                       job.owner)
        return False
    if not jobs.claim_run(job_id, job.owner, me):
        logger.warning("job %s was taken by another worker; dropping this delivery", job_id)
        return False
    if job.owner:
        logger.warning("job %s: taking over from %s, which is gone; running it again",
                       job_id, job.owner)
    logger.info("job %s started attempt %d", job_id, job.attempts + 1)
    started = time.monotonic()
    progress = JobProgress(job_id, IngestSettings.progress_interval, floor=_step_of(job.task))
    try:
        deps = get_deps()
        progress.interval = deps.progress_interval
        files, size = _run_through_outages(job_id, task_name, deps, progress)
        metrics.instruments().completed.inc()
        logger.info("job %s ok: %d files, %d bytes in %.2f s", job_id, files, size,
                    time.monotonic() - started)
        return True
    except JobCancelled:
        logger.info("job %s was stopped from outside while it ran", job_id)
        return False
    except IngestError as err:
        logger.info("job %s failed at %s: %s", job_id, progress.step.value, err)
        jobs.fail(job_id, progress.step, redact(str(err)))
        metrics.job_failed(progress.step.value, err)
        return True
    except Exception as err:
        incident = uuid.uuid4().hex
        logger.exception("job %s: unexpected error at %s (incident %s)", job_id,
                         progress.step.value, incident)
        metrics.job_failed(progress.step.value, err)
        jobs.fail(job_id, progress.step, f"internal error while {progress.step.value} (logged "
                                         f"as {incident}); the job's files were not ingested")
        raise


def _step_of(task: str) -> Step:
    try:
        return Step(task)
    except ValueError:
        return Step.UPLOADING


def _run_through_outages(job_id: int, task_name: str, deps: Deps,
                         progress: JobProgress) -> tuple[int, int]:
    """Run the pipeline; when the database drops, wait for it and run it again (idempotent).

    Returns the files and bytes the job stored."""
    for run in range(1, DATABASE_OUTAGE_RUNS + 1):
        try:
            return PIPELINES[task_name](jobs.get(job_id), deps, progress)
        except db.UNAVAILABLE_ERRORS as err:
            if run == DATABASE_OUTAGE_RUNS:
                raise
            logger.warning("job %s: database unavailable at %s (%s); running it again once "
                           "the database answers", job_id, progress.step.value, err)
            db.retrying(lambda: db.database_proxy.execute_sql("SELECT 1"))
            progress.floor = max(progress.floor, progress.step, key=STEP_ORDER.get)


def install(app: Celery, settings: Settings) -> None:
    """Register the tasks and the per-process hooks on a Celery app.

    The tasks belong to ``app`` alone (``shared=False``): shared, as Celery's default makes
    them, every Celery app made later in the process would get this call's tasks and their
    settings, and a later ``install`` on another app would be ignored."""
    state: dict = {}

    def deps() -> Deps:
        if "deps" not in state:  # built once per worker process, after the fork
            state["deps"] = build_deps(settings)
        return state["deps"]

    @app.task(name=TASK_NOTIFY, bind=True, acks_late=True, reject_on_worker_lost=True,
              max_retries=None, shared=False)
    def deliver(task, delivery_id: str) -> None:
        """POST one webhook; retried with backoff for [notify] retry_for seconds."""
        done, age = notify.attempt(delivery_id, settings.notify.secret, settings.notify.timeout)
        if done:
            return
        if age >= settings.notify.retry_for:
            notify.give_up(delivery_id)
            return
        raise task.retry(countdown=notify.backoff(task.request.retries + 1))

    def notify_end(job_id: int) -> None:
        """Record the job's webhooks and queue their first attempts."""
        receipt = receipts.stored(job_id)  # the row: the document stays in its parts
        for delivery_id in notify.record(job_id, list(settings.notify.urls),
                                         receipt and receipt.sha256):
            deliver.apply_async(args=[delivery_id], queue=settings.celery.queue_name)

    on_end = notify_end if settings.notify.urls or settings.notify.allow_client_urls else None

    @app.task(name=TASK_INGEST, acks_late=True, reject_on_worker_lost=True, shared=False)
    def ingest(job_id: int) -> None:
        """Ingest an uploaded bundle."""
        run_job(int(job_id), TASK_INGEST, deps, settings.ingest.stale_after, on_end)

    @app.task(name=TASK_MOVE, acks_late=True, reject_on_worker_lost=True, shared=False)
    def move(job_id: int) -> None:
        """Ingest files already on the archive."""
        run_job(int(job_id), TASK_MOVE, deps, settings.ingest.stale_after, on_end)

    db.bind(settings.database)
    metrics.enable(settings.ingest.volume_path)
    signals.setup_logging.connect(  # our format instead of Celery's, in every worker process
        lambda **_: logsetup.configure(settings.logging.level, settings.logging.format),
        weak=False)
    signals.worker_init.connect(_start_checks(settings), weak=False)
    _beat_while_running(settings)
    # A pool process drops the connection it inherited; each task holds db.connection().
    signals.worker_process_init.connect(lambda **_: db.database_proxy.close(), weak=False)
    _connection_per_task()
    app.ingest_task, app.move_task = ingest, move


def _connection_per_task() -> None:
    """Every task runs inside ``db.connection()``, from Celery's prerun to its postrun."""
    held = threading.local()

    def begin(**_) -> None:
        end()
        held.stack = contextlib.ExitStack()
        held.stack.enter_context(db.connection())

    def end(**_) -> None:
        stack, held.stack = getattr(held, "stack", None), None
        if stack is not None:
            stack.close()

    signals.task_prerun.connect(begin, weak=False)
    signals.task_postrun.connect(end, weak=False)


def _beat_while_running(settings: Settings) -> None:
    """The worker's main process records a heartbeat from when it is ready until it stops."""
    state: dict = {}

    def start(sender=None, **_) -> None:
        name = f"{getattr(sender, 'hostname', None) or 'celery'}:{recovery.this_process()}"
        state["beat"] = heartbeats.Heartbeat(name, settings.celery.queue_name,
                                             settings.celery.heartbeat_interval)
        try:
            state["beat"].run_once()
        except Exception:  # pylint: disable=broad-except
            logger.warning("first heartbeat failed; the thread tries again", exc_info=True)
        state["beat"].start()
        logger.info("worker %s ready on queue %s", name, settings.celery.queue_name)

    def stop(**_) -> None:
        if "beat" in state:
            state.pop("beat").stop()

    signals.worker_ready.connect(start, weak=False)
    signals.worker_shutdown.connect(stop, weak=False)


def _start_checks(settings: Settings):
    """The worker's start-up check: the database exists and its schema is usable (exit 3)."""
    def check(**_) -> None:
        logsetup.configure(settings.logging.level, settings.logging.format)  # before Celery's
        try:
            startup.require_database(settings)
            schema.check_at_start(settings.database)
        except schema.SchemaError as err:
            logger.error("%s", err)
            raise SystemExit(3) from err
    return check
