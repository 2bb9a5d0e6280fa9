"""Cross-origin access to the tus endpoint (``/files/``) for pages served from other origins.

``[ingest] cors_origins`` lists the origins (``https://portal.example.org``, or ``*``) whose
pages may drive uploads here, e.g. with tus-js-client or Uppy; any other origin gets no CORS
headers, so browsers keep its scripts out.  The upload endpoints ``/upload`` and ``/ingest``
never allow other origins (a page could otherwise upload as a logged-in user).
"""
from __future__ import annotations

import cherrypy

from .. import protocol as p

ALLOW_HEADERS = ", ".join((
    "Authorization", "Content-Type", p.TUS_RESUMABLE, p.UPLOAD_LENGTH, p.UPLOAD_METADATA,
    p.UPLOAD_OFFSET, p.UPLOAD_CHECKSUM, p.UPLOAD_DEFER_LENGTH, p.IDEMPOTENCY_KEY, p.CALLBACK_URL,
    "X-HTTP-Method-Override"))
EXPOSE_HEADERS = ", ".join((
    "Location", p.TUS_RESUMABLE, p.TUS_VERSION_HEADER, p.TUS_EXTENSION, p.TUS_MAX_SIZE,
    p.TUS_CHECKSUM_ALGORITHM, p.UPLOAD_OFFSET, p.UPLOAD_LENGTH, p.UPLOAD_METADATA,
    p.UPLOAD_EXPIRES, p.JOB_ID))
METHODS = "POST, HEAD, PATCH, DELETE, OPTIONS"
MAX_AGE = "86400"


class CorsTool(cherrypy.Tool):
    """Adds CORS headers for an allowed ``Origin`` (config: ``tools.cors.origins``)."""

    def __init__(self):
        super().__init__("before_handler", self._headers, priority=20)

    @staticmethod
    def _headers(origins=()):
        origin = cherrypy.request.headers.get("Origin")
        if not origin or not (origin in origins or "*" in origins):
            return
        headers = cherrypy.response.headers
        headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
        headers["Vary"] = "Origin"
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if cherrypy.request.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = METHODS
            headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            headers["Access-Control-Max-Age"] = MAX_AGE
        if "*" not in origins:
            headers["Access-Control-Allow-Credentials"] = "true"


cherrypy.tools.cors = CorsTool()


def config(origins: tuple[str, ...]) -> dict:
    """The CherryPy config turning CORS on for ``/files`` (empty when no origin is allowed)."""
    if not origins:
        return {}
    return {"tools.cors.on": True, "tools.cors.origins": tuple(origins)}
