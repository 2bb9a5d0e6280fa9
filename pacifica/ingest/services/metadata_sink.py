"""Where the final metadata goes: our own tables, or the Pacifica Metadata service."""
from __future__ import annotations

import logging
from typing import Iterable, Protocol

import requests

from .. import catalog
from ..errors import MetadataSinkError, ServiceUnavailable
from ..http import redact, reply_message, says_success

logger = logging.getLogger(__name__)


class MetadataSink(Protocol):
    """Records a transaction's metadata."""

    def publish(self, job_id: int, user: str, metadata: Iterable[dict]) -> None:
        """Record it once; raise MetadataSinkError if refused."""


class LocalMetadataSink:
    """The embedded catalog tables (see ``catalog``)."""

    def publish(self, job_id: int, user: str, metadata: Iterable[dict]) -> None:
        """Insert once per job; a redelivered task finds it already there."""
        catalog.record(job_id, user, metadata)


class MetadataClient:
    """``PUT {ingest_url}`` with the final list (Pacifica Metadata)."""

    def __init__(self, url: str, session: requests.Session):
        self.url = url
        self.session = session

    def publish(self, job_id: int, user: str, metadata: Iterable[dict]) -> None:
        """Accept on {"status": "success"}; otherwise fail with the service's own message.

        Metadata inserts a transaction atomically and refuses a second one with the same id
        (400, "duplicated ID values").  The transaction id is our job id, so when that
        transaction already holds exactly our file ids, an earlier try of this very job
        got through (a lost answer, a redelivered task) and the job is recorded.
        """
        metadata = list(metadata)  # one JSON document for the service
        try:
            reply = self.session.put(self.url, json=metadata)
        except requests.RequestException as err:
            raise ServiceUnavailable(
                redact(f"Metadata at {self.url} could not be reached: {err}")) from err
        if says_success(reply):
            return
        message = reply_message(reply)
        duplicate = reply.status_code == 400 and "duplicated ID" in message
        if duplicate and self._holds(job_id, metadata):
            logger.info("job %s: Metadata already holds its transaction; not sent twice", job_id)
            return
        if reply.status_code >= 500:
            raise ServiceUnavailable(f"Metadata at {redact(self.url)} failed "
                                     f"({reply.status_code}): {message}")
        raise MetadataSinkError(f"the Metadata service refused the transaction "
                                f"({reply.status_code}): {message}")

    def _holds(self, job_id: int, metadata: list) -> bool:
        """Whether Metadata's transaction ``job_id`` has exactly the file ids we sent."""
        base = self.url.rstrip("/")
        if not base.endswith("/ingest"):
            return False
        base = base[:-len("/ingest")]
        ours = {e["_id"] for e in metadata if isinstance(e, dict)
                and e.get("destinationTable") == "Files" and "_id" in e}
        try:
            found = self.session.get(f"{base}/transactions", params={"_id": job_id})
            files = self.session.get(f"{base}/files", params={"transaction_id": job_id})
            if found.status_code != 200 or files.status_code != 200 or not found.json():
                return False
            return {int(row["_id"]) for row in files.json()} == ours
        except (requests.RequestException, ValueError, KeyError, TypeError):
            logger.warning("job %s: could not check Metadata for its transaction", job_id,
                           exc_info=True)
            return False
