"""The Celery app and the enqueue call: shared by frontend and worker, free of pipeline code."""
from __future__ import annotations

import logging
import os

from celery import Celery

from . import jobs
from .config import Settings
from .periodic import Periodic

logger = logging.getLogger(__name__)

TASK_INGEST = "pacifica.ingest.ingest"
TASK_MOVE = "pacifica.ingest.move"
TASK_NOTIFY = "pacifica.ingest.notify"
TASK_FOR_KIND = {"upload": TASK_INGEST, "move": TASK_MOVE}

# A long ingest must not be redelivered while it still runs (Redis/SQS visibility).
VISIBILITY_TIMEOUT = 7 * 24 * 3600


def _filesystem_options(queue_path: str) -> dict:
    folders = {name: os.path.join(queue_path, name) for name in ("messages", "processed",
                                                                  "control")}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    return {"data_folder_in": folders["messages"], "data_folder_out": folders["messages"],
            "processed_folder": folders["processed"], "control_folder": folders["control"],
            "store_processed": False, "polling_interval": 0.2}


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured from settings (no tasks registered here)."""
    conf = settings.celery
    broker_url = conf.broker_url
    transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT}
    if broker_url.startswith("filesystem://"):
        transport_options.update(_filesystem_options(conf.queue_path))
        if broker_url.rstrip("/") == "filesystem:":  # kombu warns "No hostname was supplied"
            broker_url = "filesystem://localhost"  # on each connection; the host is unused
    app = Celery("pacifica.ingest", broker=broker_url, backend=conf.backend_url or None,
                 set_as_current=False)
    app.conf.update(
        task_default_queue=conf.queue_name,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,  # a worker killed mid-ingest leaves the message for another
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=conf.concurrency,
        # a pool process grown past this (bytes in settings, KiB here) is replaced after its job
        worker_max_memory_per_child=max(conf.max_memory_per_child // 1024, 1)
        if conf.max_memory_per_child else None,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options,
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


class Enqueuer:
    """Sends a job to the workers; raises if the broker cannot take it."""

    def __init__(self, app: Celery, queue_name: str):
        self.app = app
        self.queue_name = queue_name

    @classmethod
    def from_settings(cls, settings: Settings) -> "Enqueuer":
        """An enqueuer with a Celery app of its own (for a process that needs no other)."""
        return cls(make_celery(settings), settings.celery.queue_name)

    def __call__(self, job_id: int, kind: str) -> None:
        """Queue the task for a job of this kind ('upload' or 'move')."""
        self.app.send_task(TASK_FOR_KIND[kind], args=[job_id], queue=self.queue_name,
                           retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2,
                                                     "interval_step": 0.5, "interval_max": 1})


def submit(job_id: int, kind: str, enqueue) -> bool:
    """Hand a WAITING job to the broker once; on failure it stays WAITING for a later try."""
    if not jobs.claim_for_queue(job_id):
        return False
    try:
        enqueue(job_id, kind)
    except Exception as err:  # the broker's errors are many and transport-specific
        logger.warning("job %s: broker did not take it (%s); it waits and will be retried",
                       job_id, err)
        jobs.set_fields(job_id, queue_state=jobs.WAITING)
        return False
    return True


class WaitingJobsRetry(Periodic):
    """Background thread in the frontend: hands WAITING jobs to the broker once it is back."""

    name = "waiting-jobs-retry"

    def __init__(self, enqueue, interval: float = 5.0):
        super().__init__(interval)
        self.enqueue = enqueue

    def run_once(self) -> int:
        """Try every waiting job once; return how many the broker took."""
        taken = 0
        for job_id in jobs.waiting_jobs():
            kind = jobs.get(job_id).kind
            if not submit(job_id, kind, self.enqueue):
                break
            taken += 1
        return taken
