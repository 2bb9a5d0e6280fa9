"""The policy check: built-in rules, or the Pacifica Policy service."""
from __future__ import annotations

from typing import Iterable, Protocol

import requests

from .. import protocol
from ..errors import PolicyRejected
from ..http import call_service, reply_message, says_success


class PolicyCheck(Protocol):
    """Says whether a user may ingest this metadata."""

    def check(self, metadata: Iterable[dict], user: str) -> None:
        """Return if allowed; raise PolicyRejected with the reason if not."""


class LocalPolicy:
    """Built-in rules: the structure checks already passed; require Transactions fields
    (``[policy] required``)."""

    def __init__(self, required_fields: tuple[str, ...] = ()):
        self.required_fields = required_fields

    def check(self, metadata: Iterable[dict], user: str) -> None:
        """Reject a transaction that lacks a required Transactions.<field> (or leaves it empty)."""
        present = {str(e[protocol.DESTINATION])[len(protocol.TRANSACTION):] for e in metadata
                   if str(e.get(protocol.DESTINATION, "")).startswith(protocol.TRANSACTION)
                   and e.get("value") not in (None, "")}
        missing = [name for name in self.required_fields if name not in present]
        if missing:
            raise PolicyRejected(
                "policy: the metadata must name " +
                ", ".join(protocol.TRANSACTION + name for name in missing) +
                f' (entries like {{"{protocol.DESTINATION}": "{protocol.TRANSACTION}{missing[0]}'
                '", "value": ...}; the service requires ' + ", ".join(self.required_fields) + ")")


class PolicyClient:
    """``POST {ingest_url}`` with the metadata; the user travels in the auth header."""

    def __init__(self, url: str, session: requests.Session, auth_header: str):
        self.url = url
        self.session = session
        self.auth_header = auth_header

    def check(self, metadata: Iterable[dict], user: str) -> None:
        """Accept on {"status": "success"}; reject with the service's own message."""
        metadata = list(metadata)  # one JSON document for the service
        reply = call_service("Policy", self.url, self.session.post, json=metadata,
                             headers={self.auth_header: user})
        if says_success(reply):
            return
        raise PolicyRejected(f"policy rejected the upload ({reply.status_code}): "
                             f"{reply_message(reply)}")
