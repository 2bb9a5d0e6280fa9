"""Who may act (no HTTP here): trusted proxy addresses, API tokens stored hashed, admins.

An API token is ``pit_`` and 43 random URL-safe characters (256 bits).  Only its SHA-256
digest is stored, with its first characters in clear so a person can tell tokens apart;
with that much randomness a fast hash is enough (no dictionary can guess one).
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import secrets

import peewee

from .config import ConfigError
from .db import BaseModel
from .errors import IngestError
from .jobs import utcnow

TOKEN_MARK = "pit_"
SHOWN = len(TOKEN_MARK) + 8  # characters of a token kept in clear to name it
MAX_USER = 255  # the width of every user column


class AuthError(IngestError):
    """A request whose identity is refused: 400 (malformed, untrusted) or 401 (unknown)."""

    def __init__(self, message: str, status: int):
        self.status = status
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class Identity:
    """The user a request acts for, and whether someone vouched for it."""

    user: str
    authenticated: bool  # named by a trusted proxy or a token, not the default user
    admin: bool = False

    def may_see(self, owner: str) -> bool:
        """True for the owner of a job or upload, and for an admin."""
        return self.admin or owner == self.user


def parse_networks(entries) -> tuple:
    """``[auth] trusted_proxies``: addresses or CIDRs into networks (ConfigError if bad)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(f"[auth] trusted_proxies: {entry!r} is not an address or a CIDR "
                              "(examples: 127.0.0.1, 10.0.0.0/8, ::1)") from None
    return tuple(networks)


def peer_in(address: str, networks) -> bool:
    """True when the TCP peer's address lies in one of the networks."""
    try:
        peer = ipaddress.ip_address((address or "").split("%", 1)[0])
    except ValueError:  # a Unix socket or nothing: not a known proxy
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    return any(peer in network for network in networks)


def check_user_name(name: str, source: str, token_user: bool = False) -> str:
    """A user name as given, or AuthError(400) saying why it cannot be one."""
    name = name.strip()
    if not name:
        raise AuthError(f"{source} names no user (it is empty)", status=400)
    if len(name) > MAX_USER:
        raise AuthError(f"{source} names a user of {len(name)} characters; at most {MAX_USER}",
                        status=400)
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise AuthError(f"{source} names a user with control characters", status=400)
    if token_user and ":" in name:
        raise AuthError(f"{source}: a user with a token cannot have ':' in its name (HTTP "
                        "Basic could not carry it)", status=400)
    return name


class ApiToken(BaseModel):
    """A token a user sends instead of coming through the authenticating proxy."""

    token_id = peewee.AutoField(column_name="id")
    user = peewee.CharField(max_length=MAX_USER, index=True)
    prefix = peewee.CharField(max_length=32, index=True)
    digest = peewee.CharField(max_length=64, unique=True)
    created = peewee.DateTimeField(default=utcnow)
    revoked = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "ingest_api_tokens"

    def as_dict(self) -> dict:
        """The token as ``token list`` shows it (never the secret)."""
        return {"id": self.token_id, "user": self.user, "prefix": self.prefix,
                "created": str(self.created)[:19],
                "revoked": None if self.revoked is None else str(self.revoked)[:19]}


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def create_token(user: str) -> tuple[ApiToken, str]:
    """A new token for ``user``: its row and the secret (shown once, stored only hashed)."""
    user = check_user_name(user, "--user", token_user=True)
    secret = TOKEN_MARK + secrets.token_urlsafe(32)
    row = ApiToken.create(user=user, prefix=secret[:SHOWN], digest=_digest(secret))
    return row, secret


def list_tokens(user: str | None = None) -> list[dict]:
    """Every token (or one user's), oldest first."""
    query = ApiToken.select().order_by(ApiToken.token_id)
    if user is not None:
        query = query.where(ApiToken.user == user)
    return [row.as_dict() for row in query]


def revoke_token(reference: str) -> dict:
    """Revoke the token with this id or prefix; AuthError naming the problem otherwise."""
    reference = reference.strip()
    if reference.isdigit():
        rows = list(ApiToken.select().where(ApiToken.token_id == int(reference)))
    elif len(reference) >= SHOWN:
        rows = list(ApiToken.select().where(ApiToken.prefix == reference[:SHOWN]))
    else:
        raise AuthError(f"name a token by its id or its prefix of {SHOWN} characters "
                        "(see `token list`)", status=400)
    if not rows:
        raise AuthError(f"no token {reference!r} (see `token list`)", status=404)
    if len(rows) > 1:
        raise AuthError(f"{len(rows)} tokens start with {reference[:SHOWN]!r}: revoke by id "
                        f"({', '.join(str(row.token_id) for row in rows)})", status=400)
    row = rows[0]
    if row.revoked is None:
        row.revoked = utcnow()
        row.save()
    return row.as_dict()


def token_user(secret: str) -> str | None:
    """The user of a live token, or None for an unknown or revoked one."""
    if not secret.startswith(TOKEN_MARK):
        return None
    row = ApiToken.get_or_none((ApiToken.digest == _digest(secret)) & ApiToken.revoked.is_null())
    return None if row is None else row.user
