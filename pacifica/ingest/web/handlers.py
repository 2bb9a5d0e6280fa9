"""HTTP handlers: read the request, call the intake or the job store, return a dict."""
from __future__ import annotations

import cherrypy

from .. import catalog, jobs
from .errors import json_errors, parse_job_id
from .intake import Intake


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

    @cherrypy.tools.json_out()
    @json_errors
    def POST(self, **_params):  # pylint: disable=invalid-name
        """Accept a bundle; answer with the new job's state."""
        request = cherrypy.request
        length = request.headers.get("Content-Length")
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if length is None and not chunked:
            raise cherrypy.HTTPError(411, "send the bundle with a Content-Length header")
        try:
            length = None if length is None else int(length)
        except ValueError:
            raise cherrypy.HTTPError(400, f"Content-Length {length!r} is not a number") from None
        if length == 0:
            raise cherrypy.HTTPError(400, "the request body is empty: POST the tar bundle")
        return self.intake.accept_bundle(request.rfile, length, self.user())


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
