"""HTTP handlers: read the request, call the intake or the job store, return a dict."""
from __future__ import annotations

import cherrypy

from .. import catalog, jobs
from .errors import json_errors, parse_job_id
from .framing import body_length
from .intake import Intake
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


def request_user(auth_header: str, default_user: str) -> str:
    """The user a fronting proxy authenticated (its header), or the configured default."""
    return cherrypy.request.headers.get(auth_header, default_user)


class Root:
    """``GET /``: the service is up."""

    exposed = True

    @cherrypy.tools.json_out()
    def GET(self):  # pylint: disable=invalid-name
        """Report that the service runs."""
        return {"message": "Pacifica Ingest Up and Running"}


class IntakeHandler:
    """A handler that hands work to the intake on behalf of the authenticated user."""

    exposed = True

    def __init__(self, intake: Intake, auth_header: str, default_user: str):
        self.intake = intake
        self.auth_header = auth_header
        self.default_user = default_user

    def user(self) -> str:
        """The user the fronting proxy named, or the default one."""
        return request_user(self.auth_header, self.default_user)


class Upload(IntakeHandler):
    """``POST /upload`` and ``POST /ingest``: a raw tar body, streamed to the volume."""

    exposed = True

    def __init__(self, *args, slots: UploadSlots, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots = slots

    @cherrypy.tools.json_out()
    @json_errors
    def POST(self, **_params):  # pylint: disable=invalid-name
        """Accept a bundle; answer with the new job's state."""
        request = cherrypy.request
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type in REFUSED_TYPES:
            raise cherrypy.HTTPError(415, f"send the raw tar bundle as application/octet-stream "
                                          f"or application/x-tar, not {content_type} "
                                          f"({REFUSED_TYPES[content_type]})")
        length = body_length(request.header_list)
        if length == 0:
            raise cherrypy.HTTPError(400, "the request body is empty: POST the tar bundle")
        user = self.user()
        with self.slots.hold(user) as body:
            return self.intake.accept_bundle(body, length, user)


class Move(IntakeHandler):
    """``POST /move``: metadata naming files already on the archive."""

    exposed = True

    @cherrypy.tools.json_out()
    @cherrypy.tools.json_in()
    @json_errors
    def POST(self, **_params):  # pylint: disable=invalid-name
        """Accept a move request; answer with the new job's state."""
        return self.intake.accept_move(cherrypy.request.json, self.user())


class JobState:
    """``GET /get_state?job_id=N``."""

    exposed = True

    @cherrypy.tools.json_out()
    @json_errors
    def GET(self, job_id=None, **_params):  # pylint: disable=invalid-name
        """The job state object."""
        return jobs.get(parse_job_id(job_id)).as_dict()


class JobFiles:
    """``GET /get_files?job_id=N``: what a job put in the embedded catalog."""

    exposed = True

    @cherrypy.tools.json_out()
    @json_errors
    def GET(self, job_id=None, **_params):  # pylint: disable=invalid-name
        """The job's state, transaction and files with their archive ids."""
        number = parse_job_id(job_id)
        job = jobs.get(number)
        return {"job": job.as_dict(), "transaction": catalog.transaction_of(number),
                "files": catalog.files_of(number)}
