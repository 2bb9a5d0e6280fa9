"""``GET /get_state`` answered beneath CherryPy's request machinery.

Every client polls it (pacifica-cli once a second per upload), so it is the request the
frontend serves most.  Run through CherryPy's dispatcher, tools and hooks it cost several
times the database query it needs (py-spy); as WSGI middleware in front of the CherryPy
application it answers the same bytes — the same job object, the same JSON error bodies
and statuses — and every other request passes through untouched.
"""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs

import cherrypy

from .. import __version__, db, heartbeats, jobs, metrics
from ..auth import AuthError
from ..errors import JobNotFound
from ..protocol import GET_STATE_PATH
from .errors import BadJobId, database_unavailable, parse_job_id
from .identity import Identifier, error_headers

logger = logging.getLogger(__name__)
access_log = logging.getLogger("pacifica.ingest.access")

PATH = GET_STATE_PATH
REASONS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
           404: "404 Not Found", 500: "500 Internal Server Error",
           503: "503 Service Unavailable"}


class FastJobState:
    """WSGI middleware: answers ``GET /get_state``, hands everything else to ``app``."""

    def __init__(self, app, identifier: Identifier, worker_timeout: float = 30.0,
                 queue: str | None = None, log_level: str = "DEBUG", **_config):
        self.app = app
        self.identifier = identifier
        self.log_level = logging.getLevelName(log_level)
        self.server = f"CherryPy/{cherrypy.__version__}"
        self.worker_timeout = worker_timeout
        self.queue = queue

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        started = time.monotonic()
        try:
            status, body, headers = self._answer(environ)
        except Exception:  # pylint: disable=broad-except
            logger.exception("GET /get_state?%s failed", environ.get("QUERY_STRING", "")[:200])
            status, body, headers = _error(500, "the job state could not be read (an internal "
                                                "error, logged by the service)")
        seconds = time.monotonic() - started
        metrics.instruments().get_state_seconds.observe(seconds)
        if access_log.isEnabledFor(self.log_level):
            access_log.log(self.log_level, '%s "GET %s?%s" %d %.1f ms',
                           environ.get("REMOTE_ADDR", "-"), PATH,
                           environ.get("QUERY_STRING", "")[:200], status, seconds * 1000,
                           extra={"job_id": body.get("job_id")})
        payload = json.dumps(body).encode("utf-8")
        start_response(REASONS[status], [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(payload))),
                                         ("Server", self.server), *headers])
        return [payload]

    def _answer(self, environ) -> tuple[int, dict, list]:
        values = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).get("job_id")
        value = None if not values else values[0] if len(values) == 1 else values
        try:
            job_id = parse_job_id(value)
        except BadJobId as err:
            return _error(400, str(err))
        try:
            db.database_proxy.connect(reuse_if_open=True)
            try:
                identity = self.identifier.identify(environ)
                return 200, heartbeats.job_state(jobs.get(job_id, identity.may_see),
                                                 self.worker_timeout, self.queue), []
            finally:
                db.release_connection()
        except AuthError as err:
            return _error(err.status, str(err), error_headers(err))
        except JobNotFound as err:
            return _error(404, str(err))
        except db.UNAVAILABLE_ERRORS as err:
            logger.warning("database unavailable: %s", err)
            return _error(503, database_unavailable(err))


def _error(status: int, message: str, headers=()) -> tuple[int, dict, list]:
    return status, {"status": REASONS[status], "message": message, "traceback": "",
                    "version": __version__}, list(headers)
