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

from .. import db, heartbeats, jobs, metrics
from ..protocol import GET_STATE_PATH
from .errors import answer, error_json, parse_job_id, status_line
from .identity import Identifier

logger = logging.getLogger(__name__)
access_log = logging.getLogger("pacifica.ingest.access")

PATH = GET_STATE_PATH


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
        job_id = None
        headers: list = []
        try:
            job_id = self._job_id(environ)
            status, payload = 200, json.dumps(self._state(environ, job_id)).encode("utf-8")
        except Exception as err:  # pylint: disable=broad-except
            known = answer(err)
            if known is None:
                logger.exception("GET /get_state?%s failed", environ.get("QUERY_STRING", "")[:200])
                known = (500, "the job state could not be read (an internal error, logged by "
                              "the service)", [])
            status, message, headers = known
            payload = error_json(status_line(status), message).encode("utf-8")
        seconds = time.monotonic() - started
        metrics.instruments().get_state_seconds.observe(seconds)
        if access_log.isEnabledFor(self.log_level):
            access_log.log(self.log_level, '%s "GET %s?%s" %d %.1f ms',
                           environ.get("REMOTE_ADDR", "-"), PATH,
                           environ.get("QUERY_STRING", "")[:200], status, seconds * 1000,
                           extra={"job_id": job_id})
        start_response(status_line(status), [("Content-Type", "application/json"),
                                             ("Content-Length", str(len(payload))),
                                             ("Server", self.server), *headers])
        return [payload]

    @staticmethod
    def _job_id(environ) -> int:
        values = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).get("job_id")
        return parse_job_id(None if not values else values[0] if len(values) == 1 else values)

    def _state(self, environ, job_id: int) -> dict:
        db.database_proxy.connect(reuse_if_open=True)
        try:
            identity = self.identifier.identify(environ)
            return heartbeats.job_state(jobs.get(job_id, identity.may_see), self.worker_timeout,
                                        self.queue)
        finally:
            db.release_connection()
