"""The Pacifica Archive Interface as the archive: PUT /<id> to store, PATCH /<id> to move."""
from __future__ import annotations

import logging
import time
from typing import BinaryIO
from dataclasses import replace
from email.utils import formatdate

import requests
from urllib3.exceptions import NewConnectionError

from . import FileSource
from ..config import HttpSettings, Settings
from ..errors import ArchiveError, ServiceUnavailable
from ..http import make_session, redact, reply_message

logger = logging.getLogger(__name__)


class _NeverReached(ServiceUnavailable):
    """No try got as far as a connection: the archive cannot hold any of the bytes."""


def _never_connected(err: requests.RequestException) -> bool:
    """True when the request failed before a connection existed (refused, DNS, connect timeout)."""
    if isinstance(err, requests.ConnectTimeout):
        return True
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return isinstance(reason, NewConnectionError)


class _Body:
    """Lets requests stream a HashingReader with a known length (no chunked encoding)."""

    def __init__(self, reader, size: int):
        self.reader = reader
        self.size = size

    def __len__(self) -> int:
        return self.size

    def read(self, amount: int = -1) -> bytes:
        return self.reader.read(max(amount, 256 * 1024) if amount and amount > 0 else -1)


class HttpArchive:
    """Files sent to an Archive Interface; it cannot delete, so removal reports False."""

    def __init__(self, url: str, session: requests.Session,
                 retries: int = HttpSettings.retries, backoff: float = HttpSettings.backoff,
                 parallel: int = HttpSettings.parallel_uploads):
        self.url = url.rstrip("/")
        self.session = session
        self.retries = retries
        self.backoff = backoff
        self._unreached: set[int] = set()  # file ids whose every PUT failed before connecting
        self.parallel = parallel  # PUTs in flight at once (the pipeline's fan-out reads it)

    @classmethod
    def from_settings(cls, settings: Settings) -> "HttpArchive":
        """One pooled session without transport retries: a streamed body is retried here, afresh."""
        session = make_session(replace(settings.http, retries=0),
                               pool_size=settings.http.parallel_uploads + 2)
        return cls(settings.services.archiveinterface, session, settings.http.retries,
                   settings.http.backoff, settings.http.parallel_uploads)

    def describe(self) -> str:
        """The Archive Interface URL."""
        return f"Archive Interface {redact(self.url)}"

    def _call(self, what: str, send):
        """Run one request, retrying connection errors and 5xx with backoff."""
        reached = False
        for attempt in range(self.retries + 1):
            try:
                reply = send()
            except requests.RequestException as err:
                error = f"could not be reached: {err}"
                reached = reached or not _never_connected(err)
            else:
                if reply.status_code < 500:
                    return reply
                error = f"answered {reply.status_code}: {reply_message(reply)}"
                reached = True
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        failure = ServiceUnavailable if reached else _NeverReached
        raise failure(redact(f"{what}: the Archive Interface at {self.url} {error} "
                             f"(after {self.retries + 1} tries)"))

    def store(self, file_id: int, source: FileSource) -> None:
        """PUT the bytes, then check the hash we saw and the size the archive saw."""
        url = f"{self.url}/{file_id}"
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(source.size),
            "Last-Modified": formatdate(source.mtime or time.time(), usegmt=True),
        }
        readers = []

        def send():
            readers.append(source.open())
            return self.session.put(url, data=_Body(readers[-1], source.size), headers=headers)

        try:
            reply = self._call(f"storing {source.label} as file id {file_id}", send)
        except _NeverReached:
            self._unreached.add(file_id)
            raise
        if reply.status_code >= 400:
            raise ArchiveError(f"the Archive Interface refused {source.label} (file id {file_id}): "
                               f"{reply.status_code} {reply_message(reply)}")
        source.verify(readers[-1])
        try:
            total = int(reply.json().get("total_bytes"))
        except (ValueError, TypeError, AttributeError) as err:
            raise ArchiveError(f"the Archive Interface gave no total_bytes for {source.label}: "
                               f"{reply.text[:300]}") from err
        if total != source.size:
            raise ArchiveError(f"the Archive Interface stored {total} bytes of {source.label}, "
                               f"not {source.size}")

    def move(self, file_id: int, path: str, source: FileSource) -> None:
        """PATCH the file id with the path: the Archive Interface moves the file itself.

        The caller holds ``source`` open and has checked it (beneath an allowed root, no
        links, a regular file of the declared size); only such a path is sent."""
        del source  # the Archive Interface reads the path, not our descriptor
        url = f"{self.url}/{file_id}"
        reply = self._call(f"moving {path} to file id {file_id}",
                           lambda: self.session.patch(url, json={"path": path}))
        if reply.status_code >= 400:
            raise ArchiveError(f"the Archive Interface refused to move {path} to file id "
                               f"{file_id}: {reply.status_code} {reply_message(reply)}")

    def read(self, file_id: int) -> BinaryIO:
        """The stored file, streamed back from the Archive Interface (GET /<id>)."""
        reply = self._call(f"reading file id {file_id}",
                           lambda: self.session.get(f"{self.url}/{file_id}", stream=True))
        if reply.status_code >= 400:
            raise ArchiveError(f"the Archive Interface could not read file id {file_id}: "
                               f"{reply.status_code} {reply_message(reply)}")
        reply.raw.decode_content = True
        return reply.raw

    def remove(self, file_id: int) -> bool:
        """The Archive Interface has no delete: only a file it never received counts as gone."""
        if file_id in self._unreached:
            self._unreached.discard(file_id)
            return True
        return False

    def sync(self) -> None:
        """The Archive Interface answers only once the bytes are stored."""
