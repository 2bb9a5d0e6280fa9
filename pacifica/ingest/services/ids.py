"""Id allocation: a counter table in our database, or the Pacifica UniqueID service."""
from __future__ import annotations

import logging
from typing import Protocol

import requests

from ..config import Settings
from ..db import database_proxy, retrying
from ..errors import ServiceUnavailable
from ..http import call_service, make_session, redact, reply_message
from ..schema import IdCounter

logger = logging.getLogger(__name__)

MODE_FILE = "file"
MODE_JOB = "upload_job"


class IdSource(Protocol):
    """Hands out ranges of ids that are never handed out again."""

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` ids of a kind and return the first."""


class CounterIdSource:
    """Ids from a counter row; the UPDATE comes first so concurrent reservers serialise on it."""

    def reserve(self, count: int, mode: str) -> int:
        """Reserve ``count`` ids atomically."""
        if count < 1:
            raise ValueError("count must be at least 1")

        def take() -> int:
            with database_proxy.atomic():
                bump = IdCounter.update(next_id=IdCounter.next_id + count).where(
                    IdCounter.mode == mode)
                if not bump.execute():
                    IdCounter.insert(mode=mode, next_id=1).on_conflict_ignore().execute()
                    bump.execute()
                return IdCounter.get_by_id(mode).next_id - count

        return retrying(take)


class UniqueIdClient:
    """Ids from ``GET {url}/getid?range=N&mode=M`` (Pacifica UniqueID)."""

    def __init__(self, url: str, session: requests.Session):
        self.url = url.rstrip("/")
        self.session = session

    def reserve(self, count: int, mode: str) -> int:
        """Ask UniqueID for a range and check it is the size asked for."""
        url = f"{self.url}/getid"
        shown = redact(url)
        reply = call_service("UniqueID", url, self.session.get,
                             params={"range": count, "mode": mode})
        if reply.status_code != 200:
            raise ServiceUnavailable(
                f"UniqueID at {shown} answered {reply.status_code}: {reply_message(reply)}")
        try:
            body = reply.json()
            start, end = int(body["startIndex"]), int(body["endIndex"])
        except (ValueError, KeyError, TypeError) as err:
            raise ServiceUnavailable(
                f"UniqueID at {shown} gave no id range: {reply.text[:300]!r}") from err
        if start < 1 or end - start + 1 != count:
            raise ServiceUnavailable(
                f"UniqueID at {shown} gave ids {start}..{end} when {count} were asked for")
        return start


def from_settings(settings: Settings) -> IdSource:
    """The configured id source: UniqueID when its URL is set, else the embedded counter."""
    url = settings.services.uniqueid
    return UniqueIdClient(url, make_session(settings.http)) if url else CounterIdSource()
