"""HTTP handlers: read the request, call the intake or the job store, return a dict."""
from __future__ import annotations

import cherrypy

from .. import catalog, jobs
from ..auth import AuthError, Identity
from .errors import json_errors, parse_job_id
from .identity import Identifier, error_headers
from .intake import Intake


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
            cherrypy.response.headers.update(error_headers(err))
            raise cherrypy.HTTPError(err.status, str(err)) from err


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


class Upload(IntakeHandler):
    """``POST /upload`` and ``POST /ingest``: a raw tar body, streamed to the volume."""

    exposed = True

    @cherrypy.tools.json_out()
    @json_errors
    def POST(self, **_params):  # pylint: disable=invalid-name
        """Accept a bundle; answer with the new job's state."""
        user = self.user()
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
        return self.intake.accept_bundle(request.rfile, length, user)


class Move(IntakeHandler):
    """``POST /move``: metadata naming files already on the archive."""

    exposed = True

    @cherrypy.tools.json_out()
    @cherrypy.tools.json_in()
    @json_errors
    def POST(self, **_params):  # pylint: disable=invalid-name
        """Accept a move request; answer with the new job's state."""
        return self.intake.accept_move(cherrypy.request.json, self.user())


class JobState(Authenticated):
    """``GET /get_state?job_id=N`` (web/fast_state.py answers the GETs ahead of CherryPy)."""

    @cherrypy.tools.json_out()
    @json_errors
    def GET(self, job_id=None, **_params):  # pylint: disable=invalid-name
        """The job state object, for its owner or an admin."""
        number = parse_job_id(job_id)
        return jobs.get(number, self.identity().may_see).as_dict()


class JobFiles(Authenticated):
    """``GET /get_files?job_id=N``: what a job put in the embedded catalog."""

    @cherrypy.tools.json_out()
    @json_errors
    def GET(self, job_id=None, **_params):  # pylint: disable=invalid-name
        """The job's state, transaction and files with their archive ids (owner or admin)."""
        number = parse_job_id(job_id)
        job = jobs.get(number, self.identity().may_see)
        return {"job": job.as_dict(), "transaction": catalog.transaction_of(number),
                "files": catalog.files_of(number)}
