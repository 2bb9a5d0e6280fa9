"""Idempotent submission: one ``Idempotency-Key`` from one user names one job for a while.

A client that lost the answer to a POST sends it again with the same key and gets the first
job back instead of a second ingest.  The key is bound to the job when the job is made, in
the database (so every frontend process and host agrees); the same key with another body
fingerprint is a conflict; after ``[ingest] idempotency_ttl`` the key may be used afresh.
"""
from __future__ import annotations

import dataclasses
import datetime

import peewee

from . import jobs
from .db import BaseModel, database_proxy, retrying
from .errors import UploadError

MAX_KEY = 255


@dataclasses.dataclass(frozen=True)
class Claim:
    """A request's key and what identifies its body (length, digest header)."""

    key: str
    fingerprint: str


class Replayed(Exception):
    """The key already names a job (or a tus upload): answer with it, do not read the body."""

    def __init__(self, earlier: "IdempotencyKey"):
        super().__init__(earlier.job_id or earlier.upload_id)
        self.job_id = earlier.job_id
        self.upload_id = earlier.upload_id


class IdempotencyKey(BaseModel):
    """Which job a user's key names, and since when."""

    user = peewee.CharField(max_length=255)
    key = peewee.CharField(max_length=MAX_KEY)
    fingerprint = peewee.CharField(max_length=512)
    job_id = peewee.BigIntegerField(null=True)
    upload_id = peewee.CharField(max_length=64, null=True)  # a tus creation's upload
    created = peewee.DateTimeField(default=jobs.utcnow, index=True)

    class Meta:
        table_name = "ingest_idempotency_keys"
        primary_key = peewee.CompositeKey("user", "key")


def parse_key(value: str | None) -> str | None:
    """The Idempotency-Key header, checked: 1-255 visible ASCII characters."""
    if value is None:
        return None
    if not 0 < len(value) <= MAX_KEY or any(not 0x21 <= ord(char) <= 0x7E for char in value):
        raise UploadError(f"Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters",
                          status=400)
    return value


def _fresh(row: IdempotencyKey, ttl: float) -> bool:
    return row.created >= jobs.utcnow() - datetime.timedelta(seconds=ttl)


def earlier(user: str, claim: Claim, ttl: float) -> IdempotencyKey | None:
    """What this key already names, if anything; 422 when it named another body."""
    row = IdempotencyKey.get_or_none((IdempotencyKey.user == user)
                                     & (IdempotencyKey.key == claim.key))
    if row is None:
        return None
    if not _fresh(row, ttl):
        retrying(row.delete_instance)
        return None
    if row.fingerprint != claim.fingerprint:
        raise UploadError(f"Idempotency-Key {claim.key!r} was already used for another request "
                          f"({row.fingerprint}; this one: {claim.fingerprint}); use a new key "
                          "for a new bundle", status=422)
    return row


def replay_if_known(user: str, claim: Claim | None, ttl: float) -> None:
    """Raise Replayed when the claim's key already names a job or upload."""
    if claim is not None:
        row = earlier(user, claim, ttl)
        if row is not None:
            raise Replayed(row)


def bind(user: str, claim: Claim, ttl: float, job_id: int | None = None,
         upload_id: str | None = None) -> None:
    """Tie the key to what was just made; Replayed(winner) when a concurrent request won."""
    try:
        with database_proxy.atomic():
            IdempotencyKey.create(user=user, key=claim.key, fingerprint=claim.fingerprint,
                                  job_id=job_id, upload_id=upload_id)
    except peewee.IntegrityError:
        winner = earlier(user, claim, ttl)
        if winner is None:  # it expired meanwhile: take the key over
            bind(user, claim, ttl, job_id, upload_id)
            return
        raise Replayed(winner) from None


def sweep(ttl: float) -> int:
    """Forget keys older than the TTL; return how many."""
    limit = jobs.utcnow() - datetime.timedelta(seconds=ttl)
    return retrying(IdempotencyKey.delete().where(IdempotencyKey.created < limit).execute)
