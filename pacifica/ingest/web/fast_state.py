"""``GET /get_state`` answered beneath CherryPy's request machinery: its one handler.

Every client polls it (pacifica-cli once a second per upload), so it is the request the
frontend serves most.  Run through CherryPy's dispatcher, tools and hooks it cost several
times the database query it needs (py-spy); as WSGI middleware in front of the CherryPy
application it answers with the same job object, the same JSON errors (web/errors.py) and
an access line in CherryPy's format on CherryPy's access logger (``[logging]
access_log_sample`` of the successful ones); every other request passes through untouched.
"""
from __future__ import annotations

import json
import logging
import random
import time
from urllib.parse import parse_qs

import cherrypy

from .. import db, heartbeats, jobs, logsetup, metrics
from ..protocol import GET_STATE_PATH
from .errors import answer, error_json, parse_job_id, status_line
from .identity import Identifier

logger = logging.getLogger(__name__)

PATH = GET_STATE_PATH
METHODS = ("GET", "HEAD")


class FastJobState:
    """WSGI middleware: answers ``/get_state``, hands everything else to ``app``."""

    def __init__(self, app, *, identifier: Identifier, log: cherrypy._cplogging.LogManager,
                 worker_timeout: float, queue: str, sample: float, **_config):
        self.app = app
        self.identifier = identifier
        self.log = log  # the CherryPy application's: its access logger and format
        self.sample = sample
        self.server = f"CherryPy/{cherrypy.__version__}"
        self.worker_timeout = worker_timeout
        self.queue = queue

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        started = time.monotonic()
        job_id = None
        headers: list = []
        try:
            if environ.get("REQUEST_METHOD") not in METHODS:
                headers = [("Allow", ", ".join(METHODS))]
                status, payload = 405, error_json(status_line(405), f"ask GET {PATH}?job_id=N")
            else:
                job_id = self._job_id(environ)
                status, payload = 200, json.dumps(self._state(environ, job_id))
        except Exception as err:  # pylint: disable=broad-except
            known = answer(err)
            if known is None:
                logger.exception("GET %s?%s failed", PATH, environ.get("QUERY_STRING", "")[:200])
                known = (500, "the job state could not be read (an internal error, logged by "
                              "the service)", [])
            status, message, headers = known
            payload = error_json(status_line(status), message)
        body = payload.encode("utf-8")
        metrics.instruments().get_state_seconds.observe(time.monotonic() - started)
        if status >= 400 or self.sample >= 1.0 or random.random() < self.sample:
            self._access(environ, status, len(body), job_id)
        start_response(status_line(status), [("Content-Type", "application/json"),
                                             ("Content-Length", str(len(body))),
                                             ("Server", self.server), *headers])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def _access(self, environ, status: int, length: int, job_id: int | None) -> None:
        """The line CherryPy's access log writes for any other request, on the same logger."""
        target = environ.get("REQUEST_URI") or environ.get("RAW_URI") or (
            PATH + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else ""))
        sent = {"h": environ.get("REMOTE_ADDR") or "-",  # what the client chose: escaped
                "r": f"{environ.get('REQUEST_METHOD')} {target[:300]} "
                     f"{environ.get('SERVER_PROTOCOL', 'HTTP/1.1')}",
                "f": environ.get("HTTP_REFERER", ""), "a": environ.get("HTTP_USER_AGENT", ""),
                "o": environ.get("HTTP_HOST", "-")}
        atoms = {key: logsetup.escape(value).replace('"', '\\"') for key, value in sent.items()}
        self.log.access_log.info(self.log.access_log_format.format(
            l="-", u="-", t=self.log.time(), s=status, b=length, i="-", z="-", **atoms),
            extra={"job_id": job_id})

    @staticmethod
    def _job_id(environ) -> int:
        values = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).get("job_id")
        return parse_job_id(None if not values else values[0] if len(values) == 1 else values)

    def _state(self, environ, job_id: int) -> dict:
        with db.connection():
            identity = self.identifier.identify(environ)
            return heartbeats.job_state(jobs.get(job_id, identity.may_see), self.worker_timeout,
                                        self.queue)
