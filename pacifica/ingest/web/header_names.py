"""Header names with underscores never reach the WSGI environ as ``HTTP_*`` keys.

WSGI names a header ``HTTP_`` + its name upper-cased with ``-`` made ``_``, so
``X_Http_Authed_User`` and ``X-Http-Authed-User`` land on the same key: a client could
override (cheroot: the later one wins) a header the fronting proxy set, or hide beside it.
Both servers the frontend runs on are made to drop every such header and to list the names
they dropped in one header of their own, ``Ingest-Underscored-Headers``; web/identity.py
refuses a request whose list names the identity header.  cheroot (``pacifica-ingest``) reads
headers through ``httpserver.IngestServer``, which calls ``fold_header_dict``; gunicorn (docker/gunicorn.conf.py) calls ``fold``
from its ``pre_request`` hook.  A client that sends the list itself only harms its own request.
"""
from __future__ import annotations

from ..protocol import UNDERSCORED_HEADERS

MARKER = UNDERSCORED_HEADERS.upper()
MARKER_KEY = "HTTP_" + MARKER.replace("-", "_")  # its WSGI environ key


def fold(headers) -> list[tuple[str, str]]:
    """The (name, value) pairs without underscored names, plus the marker listing those."""
    kept, dropped = [], []
    for name, value in headers:
        (dropped if "_" in name else kept).append((name, value))
    if dropped:
        kept = [(name, value) for name, value in kept if name.upper() != MARKER]
        kept.append((MARKER, ", ".join(name for name, _ in dropped)))
    return kept


def dropped_names(environ) -> list[str]:
    """The underscored header names the server dropped from this request."""
    return [name.strip() for name in environ.get(MARKER_KEY, "").split(",") if name.strip()]


def fold_header_dict(hdict: dict) -> dict:
    """cheroot's header dict (bytes names) with underscored names folded into the marker."""
    if any(b"_" in name for name in hdict):
        pairs = fold((name.decode("latin-1"), value.decode("latin-1"))
                     for name, value in hdict.items())
        hdict.clear()
        hdict.update((name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs)
    return hdict


def gunicorn_pre_request(_worker, req) -> None:
    """gunicorn's ``pre_request`` hook (with ``header_map = "dangerous"`` so it sees them)."""
    req.headers = fold(req.headers)
