"""Where the final metadata goes: our own tables, or the Pacifica Metadata service."""
from __future__ import annotations

from typing import Protocol

import requests

from .. import catalog
from ..errors import MetadataSinkError, ServiceUnavailable


class MetadataSink(Protocol):
    """Records a transaction's metadata."""

    def publish(self, job_id: int, user: str, metadata: list) -> None:
        """Record it once; raise MetadataSinkError if refused."""


class LocalMetadataSink:
    """The embedded catalog tables (see ``catalog``)."""

    def publish(self, job_id: int, user: str, metadata: list) -> None:
        """Insert once per job; a redelivered task finds it already there."""
        catalog.record(job_id, user, metadata)


class MetadataClient:
    """``PUT {ingest_url}`` with the final list (Pacifica Metadata)."""

    def __init__(self, url: str, session: requests.Session):
        self.url = url
        self.session = session

    def publish(self, job_id: int, user: str, metadata: list) -> None:
        """Accept on {"status": "success"}; otherwise fail with the service's message."""
        try:
            reply = self.session.put(self.url, json=metadata)
        except requests.RequestException as err:
            raise ServiceUnavailable(f"Metadata at {self.url} could not be reached: {err}") from err
        try:
            body = reply.json()
        except ValueError:
            body = {}
        if reply.status_code == 200 and isinstance(body, dict) and body.get("status") == "success":
            return
        message = body.get("message") if isinstance(body, dict) else None
        raise MetadataSinkError(f"the Metadata service refused the transaction "
                                f"({reply.status_code}): {message or reply.text[:1000]}")
