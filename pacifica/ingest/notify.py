"""Completion webhooks: a signed POST of a job's final state to each configured URL.

When a job ends (OK or FAILED) one delivery per URL is recorded with the exact bytes to send;
a Celery task POSTs them with ``X-Ingest-Signature: sha256=<HMAC-SHA256 of the body under
[notify] secret>`` and ``X-Ingest-Delivery: <id>``, and retries with exponential backoff
for ``[notify] retry_for`` seconds.  A delivery never blocks or fails the ingest.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from urllib.parse import urlsplit

import peewee
import requests

from . import jobs
from .db import BaseModel, LongTextField, retrying

logger = logging.getLogger(__name__)

WAITING, PENDING, DELIVERED, GAVE_UP = "waiting", "pending", "delivered", "gave up"
MAX_BACKOFF = 300.0  # seconds between two attempts at most


class Delivery(BaseModel):
    """One job's notification to one URL, and how its delivery went."""

    delivery_id = peewee.CharField(max_length=36, primary_key=True)
    job_id = peewee.BigIntegerField(index=True)
    url = peewee.CharField(max_length=2048)
    body = LongTextField()
    state = peewee.CharField(max_length=16, default=PENDING)
    attempts = peewee.IntegerField(default=0)
    last_result = peewee.CharField(max_length=512, default="")
    created = peewee.DateTimeField(default=jobs.utcnow)
    updated = peewee.DateTimeField(default=jobs.utcnow)

    class Meta:
        table_name = "ingest_deliveries"
        indexes = ((("job_id", "url"), True),)

    def as_dict(self) -> dict:
        """What an operator sees of a delivery."""
        return {"delivery_id": self.delivery_id, "url": _without_credentials(self.url),
                "state": self.state, "attempts": self.attempts,
                "last_result": self.last_result}


def signature(body: bytes, secret: str) -> str:
    """The value of X-Ingest-Signature for a body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def client_url_problem(url: str, allowed_hosts: tuple[str, ...]) -> str | None:
    """Why a client's Callback-Url is refused, or None when it may be used."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Callback-Url must be an absolute http:// or https:// URL"
    if parts.username or parts.password:
        return "Callback-Url must not carry credentials"
    if parts.hostname.lower() not in {host.lower() for host in allowed_hosts}:
        return (f"Callback-Url host {parts.hostname!r} is not on this service's allow-list "
                "([notify] allowed_hosts)")
    return None


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()


def register_callback(job_id: int, url: str) -> None:
    """Keep a client's Callback-Url until its job ends (``record`` then fills it in)."""
    retrying(Delivery.insert(delivery_id=str(uuid.uuid4()), job_id=job_id, url=url, body="",
                             state=WAITING).on_conflict_ignore().execute)


def _body(job: jobs.Job, delivery_id: str, receipt_sha256: str | None) -> str:
    event = "job.completed" if job.state == jobs.OK else "job.failed"
    return json.dumps({"event": event, "delivery_id": delivery_id, "job": job.as_dict(),
                       "receipt_sha256": receipt_sha256}, sort_keys=True)


def record(job_id: int, urls: list[str], receipt_sha256: str | None) -> list[str]:
    """Record one delivery per configured URL and client callback of a finished job.

    Returns the ids to send: new to this call (a redelivered job sends nothing twice)."""
    job = jobs.get(job_id)
    created = []
    for url in urls:
        delivery_id = str(uuid.uuid4())
        retrying(Delivery.insert(delivery_id=delivery_id, job_id=job_id, url=url,
                                 body=_body(job, delivery_id, receipt_sha256))
                 .on_conflict_ignore().execute)
        # ignored when the job already has a delivery to this URL (a redelivered job); MySQL
        # reports no row id for a text key either way, so ask whether ours is there
        if Delivery.get_or_none(Delivery.delivery_id == delivery_id):
            created.append(delivery_id)
    waiting = Delivery.select().where((Delivery.job_id == job_id) & (Delivery.state == WAITING))
    for row in waiting:
        claimed = Delivery.update(body=_body(job, row.delivery_id, receipt_sha256),
                                  state=PENDING, updated=jobs.utcnow()).where(
            (Delivery.delivery_id == row.delivery_id) & (Delivery.state == WAITING))
        if retrying(claimed.execute):
            created.append(row.delivery_id)
    return created


def of_job(job_id: int) -> list[dict]:
    """A job's deliveries, for operators."""
    return [row.as_dict() for row in
            Delivery.select().where(Delivery.job_id == job_id).order_by(Delivery.created)]


def attempt(delivery_id: str, secret: str, timeout: float) -> tuple[bool, float]:
    """POST one delivery once.  (done, seconds since it was recorded)."""
    row = Delivery.get_or_none(Delivery.delivery_id == delivery_id)
    if row is None or row.state != PENDING:
        return True, 0.0
    body = row.body.encode("utf-8")
    headers = {"Content-Type": "application/json", "X-Ingest-Delivery": row.delivery_id,
               "X-Ingest-Event": json.loads(row.body)["event"],
               "X-Ingest-Signature": signature(body, secret)}
    try:
        reply = requests.post(row.url, data=body, headers=headers, timeout=timeout,
                              allow_redirects=False)
        done = 200 <= reply.status_code < 300
        result = f"HTTP {reply.status_code}"
    except requests.RequestException as err:
        done, result = False, f"{type(err).__name__}"
    age = (jobs.utcnow() - row.created).total_seconds()
    retrying(Delivery.update(attempts=Delivery.attempts + 1, last_result=result[:512],
                             state=DELIVERED if done else PENDING, updated=jobs.utcnow())
             .where(Delivery.delivery_id == delivery_id).execute)
    logger.info("job %s: notification %s to %s: %s", row.job_id, delivery_id,
                _without_credentials(row.url), result, extra={"job_id": row.job_id})
    return done, age


def give_up(delivery_id: str) -> None:
    """Stop retrying a delivery."""
    retrying(Delivery.update(state=GAVE_UP, updated=jobs.utcnow())
             .where(Delivery.delivery_id == delivery_id).execute)


def backoff(attempts: int) -> float:
    """Seconds before the next attempt: 1, 2, 4 … up to MAX_BACKOFF."""
    return min(2.0 ** max(attempts - 1, 0), MAX_BACKOFF)
