"""Cross-origin access to the tus endpoint (``/files/``) for pages served from other origins.

``[ingest] cors_origins`` lists the origins (``https://portal.example.org``, or ``*``) whose
pages may drive uploads here, e.g. with tus-js-client or Uppy; any other origin gets no CORS
headers, so browsers keep its scripts out.  The upload endpoints ``/upload`` and ``/ingest``
never allow other origins (a page could otherwise upload as a logged-in user).
"""
from __future__ import annotations

import cherrypy

ALLOW_HEADERS = ("Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Metadata, "
                 "Upload-Offset, Upload-Checksum, Upload-Defer-Length, Idempotency-Key, "
                 "Callback-Url, X-HTTP-Method-Override")
EXPOSE_HEADERS = ("Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, "
                  "Tus-Checksum-Algorithm, Upload-Offset, Upload-Length, Upload-Metadata, "
                  "Upload-Expires, Ingest-Job-Id")
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
