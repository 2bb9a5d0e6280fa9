"""HTTP handlers: read the request, call the intake or the job store, return a dict."""
from __future__ import annotations

import hashlib
import json

import cherrypy

from .. import catalog, idempotency, jobs
from ..errors import IngestError
from ..protocol import CALLBACK_URL, IDEMPOTENCY_KEY
from . import pages
from .errors import json_errors, parse_job_id
from .framing import body_length
from .identity import Authenticated, Identifier
from ..intake.body import READ_PIECE
from ..intake.intake import Intake
from .limits import UploadSlots

# Body types a page on another site may POST without the browser asking first (CORS "simple
# requests"): refused, so no page can upload on a logged-in user's behalf.
CURL_HINT = "use --data-binary @bundle.tar -H 'Content-Type: application/octet-stream'"
REFUSED_TYPES = {
    "multipart/form-data": f"curl -F sends a form; {CURL_HINT}",
    "application/x-www-form-urlencoded": f"curl --data-binary sends this type by default; "
                                         f"{CURL_HINT}",
    "text/plain": CURL_HINT,
}


class Root:
    """``GET /``: the service is up."""

    exposed = True

    @cherrypy.tools.json_out()
    def GET(self):  # pylint: disable=invalid-name
        """Report that the service runs."""
        return {"message": "Pacifica Ingest Up and Running"}


class IntakeHandler(Authenticated):
    """A handler that hands work to the intake on behalf of the authenticated user."""

    def __init__(self, intake: Intake, identifier: Identifier):
        super().__init__(identifier)
        self.intake = intake

    def user(self) -> str:
        """The user the request acts for."""
        return self.identity().user

    @staticmethod
    def claim(fingerprint: str) -> idempotency.Claim | None:
        """The request's Idempotency-Key with what identifies its body, if it sent one."""
        key = idempotency.parse_key(cherrypy.request.headers.get(IDEMPOTENCY_KEY))
        return None if key is None else idempotency.Claim(key, fingerprint)

    @staticmethod
    def replayed(replay: idempotency.Replayed, length: int | None = 0, body=None) -> dict:
        """The answer to a request whose key names an earlier job: that job.

        A body up to DRAIN_LIMIT is read and dropped, so the client, still sending, gets the
        answer rather than a reset connection; a larger one is not read and the connection
        is closed after the answer."""
        if length is None or length > DRAIN_LIMIT:
            cherrypy.response.headers["Connection"] = "close"
        elif length:
            drop_body(body or cherrypy.request.rfile, length)
        return jobs.get(replay.job_id).as_dict()


DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of a replayed request's body read and dropped


def drop_body(stream, length: int) -> None:
    """Read and discard ``length`` bytes of a request body (or until it ends)."""
    while length > 0:
        piece = stream.read(min(length, READ_PIECE))
        if not piece:
            return
        length -= len(piece)


def body_fingerprint(length: int | None) -> str:
    """What identifies a streamed body before it is read: its length and digest header."""
    headers = cherrypy.request.headers
    digest = (headers.get("Repr-Digest") or headers.get("Digest") or "").strip()[:300]
    size = "chunked" if length is None else str(length)
    return f"length={size}" + (f", digest={digest}" if digest else "")


class Upload(IntakeHandler):
    """``POST /upload`` and ``POST /ingest``: a raw tar body, streamed to the volume."""

    exposed = True

    def __init__(self, *args, slots: UploadSlots, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots = slots

    @json_errors
    def GET(self, **_params):  # pylint: disable=invalid-name
        """The upload page for people; programs POST the tar bundle here."""
        return pages.upload_page(self.user())

    @cherrypy.tools.json_out()
    @json_errors
    def POST(self, **_params):  # pylint: disable=invalid-name
        """Accept a bundle; answer with the new job's state."""
        user = self.user()
        request = cherrypy.request
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type in REFUSED_TYPES:
            raise cherrypy.HTTPError(415, f"send the raw tar bundle as application/octet-stream "
                                          f"or application/x-tar, not {content_type} "
                                          f"({REFUSED_TYPES[content_type]})")
        length = body_length(request.header_list)
        if length == 0:
            raise cherrypy.HTTPError(400, "the request body is empty: POST the tar bundle")
        with self.slots.hold(user) as body:
            try:
                return self.intake.accept_bundle(
                    body, length, user, self.claim(body_fingerprint(length)),
                    self.intake.callback(request.headers.get(CALLBACK_URL)))
            except idempotency.Replayed as replay:
                return self.replayed(replay, length, body)


class Move(IntakeHandler):
    """``POST /move``: metadata naming files already on the archive."""

    exposed = True

    @cherrypy.tools.json_out()
    @cherrypy.tools.json_in()
    @json_errors
    def POST(self, **_params):  # pylint: disable=invalid-name
        """Accept a move request; answer with the new job's state."""
        document = cherrypy.request.json
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
        try:
            return self.intake.accept_move(
                document, self.user(), self.claim(f"sha256={digest}"),
                self.intake.callback(cherrypy.request.headers.get(CALLBACK_URL)))
        except idempotency.Replayed as replay:
            return self.replayed(replay)


FILES_PAGE = 1000  # files in one get_files answer unless ?limit= says otherwise
MAX_FILES_PAGE = 10000


def page_bound(value, name: str, default: int, most: int | None = None) -> int:
    """A whole-number ``offset``/``limit`` query parameter; IngestError (400) if it is not one."""
    if value is None:
        return default
    text = str(value).strip()
    if not text.isdigit() or len(text) > 18:
        raise IngestError(f"{name} must be a whole number (0 or more), got {str(value)[:40]!r}")
    number = int(text)
    if most is not None and not 1 <= number <= most:
        raise IngestError(f"{name} must be between 1 and {most}, got {number}")
    return number


class JobFiles(Authenticated):
    """``GET /get_files?job_id=N[&offset=&limit=]``: what a job put in the embedded catalog."""

    @cherrypy.tools.json_out()
    @json_errors
    def GET(self, *, job_id=None, offset=None, limit=None,  # pylint: disable=invalid-name
            **_params):
        """The job's state, transaction and one page of its files with their archive ids
        (owner or admin); ``total`` counts them all."""
        number = parse_job_id(job_id)
        start = page_bound(offset, "offset", 0)
        count = page_bound(limit, "limit", FILES_PAGE, MAX_FILES_PAGE)
        job = jobs.get(number, self.identity().may_see)
        return {"job": job.as_dict(), "transaction": catalog.transaction_of(number),
                "files": catalog.files_of(number, start, count), "offset": start,
                "limit": count, "total": catalog.file_count(number)}
