"""Who a request comes from, read from its WSGI environ: the one place every endpoint asks.

In order: a header spelt with underscores that stands for the identity header is refused;
the identity header (``[ingest] auth_header``) is believed from a peer in ``[auth]
trusted_proxies`` and refused from any other; then an API token (``Authorization: Bearer``,
or HTTP Basic with the token as password and its user as user name); then, unless
``[auth] require_user``, the default user.  Needs the job database for tokens.
"""
from __future__ import annotations

import base64
import binascii

import cherrypy

from ..auth import AuthError, Identity, check_user_name, parse_networks, peer_in, token_user
from ..config import Settings
from .errors import http_error
from .header_names import dropped_names

HOW = ("send an API token as 'Authorization: Bearer <token>' (or HTTP Basic with your user "
       "name and the token as password)")


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


class Identifier:
    """Turns a request's environ into an Identity, or raises AuthError."""

    def __init__(self, settings: Settings):
        self.header = settings.ingest.auth_header
        self.key = _environ_key(self.header)
        self.default_user = settings.ingest.default_user
        self.proxies = parse_networks(settings.auth.trusted_proxies)
        self.require_user = settings.auth.require_user
        self.admins = frozenset(settings.auth.admins)

    def identify(self, environ) -> Identity:
        """The identity of the request (see the module's docstring for the order)."""
        for name in dropped_names(environ):
            if _environ_key(name) == self.key:
                raise AuthError(f"the header {name[:64]!r} is refused: the identity header is "
                                f"spelt {self.header}", status=400)
        claimed = environ.get(self.key)
        if claimed is not None:
            peer = environ.get("REMOTE_ADDR", "")
            if not peer_in(peer, self.proxies):
                raise AuthError(f"the {self.header} header is only believed from a trusted proxy "
                                f"([auth] trusted_proxies) and {peer or 'this peer'} is not one; "
                                f"{HOW}", status=400)
            return self._vouched(check_user_name(claimed, f"the {self.header} header"))
        credentials = environ.get("HTTP_AUTHORIZATION")
        if credentials is not None:
            return self._vouched(self._token_user(credentials))
        if self.require_user:
            raise AuthError(f"this service needs to know who you are: {HOW}, or come through "
                            "the authenticating proxy", status=401)
        return Identity(self.default_user, authenticated=False)

    def _vouched(self, user: str) -> Identity:
        return Identity(user, authenticated=True, admin=user in self.admins)

    @staticmethod
    def _token_user(credentials: str) -> str:
        scheme, _, value = credentials.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            user = token_user(value)
            if user is None:
                raise AuthError("the API token is unknown or revoked", status=401)
            return user
        if scheme.lower() != "basic":
            raise AuthError(f"the Authorization scheme {scheme[:32]!r} is not supported; {HOW}",
                            status=401)
        try:
            pair = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            pair = ""
        name, colon, secret = pair.partition(":")
        if not colon:
            raise AuthError("the Basic credentials are not base64 of 'user:token'", status=401)
        user = token_user(secret)
        if user is None or user != name:
            raise AuthError(f"the API token is unknown, revoked or not {name[:64]!r}'s",
                            status=401)
        return user


class Authenticated:
    """A handler acting for the request's identity (decided by web/identity.py)."""

    exposed = True

    def __init__(self, identifier: Identifier):
        self.identifier = identifier

    def identity(self) -> Identity:
        """Who the request comes from; an HTTP error when that is refused or unknown."""
        try:
            return self.identifier.identify(cherrypy.request.wsgi_environ)
        except AuthError as err:
            raise http_error(err) from err
