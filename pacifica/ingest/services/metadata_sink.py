"""Where the final metadata goes: our own tables, or the Pacifica Metadata service."""
from __future__ import annotations

import logging
from typing import Iterable, Protocol

import requests

from .. import catalog, protocol
from ..errors import MetadataSinkError
from ..http import call_service, reply_message, says_success

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
        reply = call_service("Metadata", self.url, self.session.put, json=metadata)
        if says_success(reply):
            return
        message = reply_message(reply)
        duplicate = reply.status_code == 400 and "duplicated ID" in message
        if duplicate and self._holds(job_id, metadata):
            logger.info("job %s: Metadata already holds its transaction; not sent twice", job_id)
            return
        raise MetadataSinkError(f"the Metadata service refused the transaction "
                                f"({reply.status_code}): {message}")

    def _holds(self, job_id: int, metadata: list) -> bool:
        """Whether Metadata's transaction ``job_id`` has exactly the file ids we sent."""
        base = self.url.rstrip("/")
        if not base.endswith("/ingest"):
            return False
        base = base[:-len("/ingest")]
        ours = {e["_id"] for e in metadata if isinstance(e, dict)
                and e.get(protocol.DESTINATION) == protocol.FILES_TABLE and "_id" in e}
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
