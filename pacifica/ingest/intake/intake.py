"""Accepting work: allocate the job, land the body on the volume, hand it to the broker."""
from __future__ import annotations

import json
import logging
import os
from typing import BinaryIO, Callable

from .. import idempotency, jobs, metrics, notify
from ..config import IngestSettings
from ..errors import UploadError
from ..move_sources import MOVE_DISABLED
from ..queue import submit
from ..services.ids import MODE_JOB, IdSource
from .staging import Staging

logger = logging.getLogger(__name__)

Enqueue = Callable[[int, str], None]


class Intake:
    """The frontend's one piece of logic, kept apart from HTTP so tus uploads reuse it."""

    def __init__(self, ids: IdSource, staging: Staging, enqueue: Enqueue, owner: str = "",
                 moves_allowed: bool = False,
                 idempotency_ttl: float = IngestSettings.idempotency_ttl,
                 callback_hosts: tuple[str, ...] | None = None):
        self.ids = ids
        self.staging = staging
        self.enqueue = enqueue
        self.owner = owner
        self.moves_allowed = moves_allowed  # [move] allowed_roots is set
        self.idempotency_ttl = idempotency_ttl
        self.callback_hosts = callback_hosts  # None: Callback-Url is not accepted

    def callback(self, url: str | None) -> str:
        """A client's Callback-Url, checked against [notify]; "" when none was sent."""
        if not url:
            return ""
        if self.callback_hosts is None:
            raise UploadError("Callback-Url is not accepted by this service ([notify] "
                              "allow_client_urls is off)", status=400)
        problem = notify.client_url_problem(url, self.callback_hosts)
        if problem:
            raise UploadError(problem, status=400)
        return url

    def new_job(self, user: str, kind: str, length: int | None,
                claim: idempotency.Claim | None = None, callback: str = "") -> int:
        """Allocate an id and record the job as OK / UPLOADING / 0.

        With a claim, the job takes its Idempotency-Key; ``idempotency.Replayed`` when the
        key already names a job (that one is the answer, nothing is read).  A callback URL
        (already checked) is told when the job ends."""
        idempotency.replay_if_known(user, claim, self.idempotency_ttl)
        job_id = self.ids.reserve(1, MODE_JOB)
        jobs.create(job_id, user, kind=kind, bytes_expected=length, owner=self.owner)
        if claim is not None:
            try:
                idempotency.bind(user, claim, self.idempotency_ttl, job_id=job_id)
            except idempotency.Replayed:
                jobs.forget(job_id)
                raise
        if callback:
            notify.register_callback(job_id, callback)
        return job_id

    def accept_bundle(self, stream: BinaryIO, length: int | None, user: str,
                      claim: idempotency.Claim | None = None, callback: str = "") -> dict:
        """Stream a POSTed tar to the volume and queue its ingest; return the job state."""
        idempotency.replay_if_known(user, claim, self.idempotency_ttl)
        self.staging.check_room(length)
        job_id = self.new_job(user, jobs.KIND_UPLOAD, length, claim, callback)

        def report(received: int) -> None:
            percent = 100.0 * received / length if length else 0.0
            jobs.set_fields(job_id, bytes_received=received, task_percent=round(percent, 1))

        try:
            path = self.staging.receive(job_id, stream, length, report)
        except UploadError as err:
            jobs.fail(job_id, jobs.Step.UPLOADING, str(err))
            metrics.job_failed(jobs.Step.UPLOADING.value, err)
            err.job_id = job_id
            raise
        except BaseException as err:
            jobs.fail(job_id, jobs.Step.UPLOADING, f"the upload could not be stored: {err!r}")
            metrics.job_failed(jobs.Step.UPLOADING.value, err)
            raise
        return self.bundle_landed(job_id, path)

    def bundle_landed(self, job_id: int, path: str, via: str = "POST") -> dict:
        """A complete bundle is on the volume: record it and queue its ingest."""
        size = os.path.getsize(path)
        jobs.set_fields(job_id, path=path, bytes_received=size, task_percent=100.0,
                        queue_state=jobs.WAITING, owner="")
        submit(job_id, jobs.KIND_UPLOAD, self.enqueue)
        metrics.instruments().accepted.labels(via=via).inc()
        metrics.instruments().bundle_size.observe(size)
        job = jobs.get(job_id)
        logger.info("job %s received: %d bytes from %s via %s", job_id, size, job.user, via,
                    extra={"job_id": job_id})
        return job.as_dict()

    def accept_move(self, document, user: str, claim: idempotency.Claim | None = None,
                    callback: str = "") -> dict:
        """Record a move request (metadata naming files on this host) and queue it."""
        if not self.moves_allowed:
            raise UploadError(MOVE_DISABLED, status=403)
        if not isinstance(document, list):
            raise UploadError("a move request is a JSON list of metadata objects", status=400)
        job_id = self.new_job(user, jobs.KIND_MOVE, None, claim, callback)
        path = self.staging.write_move_request(job_id, json.dumps(document).encode("utf-8"))
        jobs.set_fields(job_id, path=path, task_percent=100.0, queue_state=jobs.WAITING,
                        owner="")
        submit(job_id, jobs.KIND_MOVE, self.enqueue)
        metrics.instruments().accepted.labels(via="move").inc()
        logger.info("job %s received: a move of %d entries from %s", job_id, len(document),
                    user, extra={"job_id": job_id})
        return jobs.get(job_id).as_dict()
