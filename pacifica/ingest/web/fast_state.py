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
from urllib.parse import parse_qs

import cherrypy
import peewee

from .. import __version__, db, jobs
from ..errors import JobNotFound
from .errors import BadJobId, database_unavailable, parse_job_id

logger = logging.getLogger(__name__)

PATH = "/get_state"
REASONS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found",
           503: "503 Service Unavailable"}


class FastJobState:
    """WSGI middleware: answers ``GET /get_state``, hands everything else to ``app``."""

    def __init__(self, app, **_config):
        self.app = app
        self.server = f"CherryPy/{cherrypy.__version__}"

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        status, body = self._answer(environ.get("QUERY_STRING", ""))
        payload = json.dumps(body).encode("utf-8")
        start_response(REASONS[status], [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(payload))),
                                         ("Server", self.server)])
        return [payload]

    def _answer(self, query: str) -> tuple[int, dict]:
        values = parse_qs(query, keep_blank_values=True).get("job_id")
        value = None if not values else values[0] if len(values) == 1 else values
        try:
            job_id = parse_job_id(value)
        except BadJobId as err:
            return _error(400, str(err))
        database = db.database_proxy
        try:
            database.connect(reuse_if_open=True)
            try:
                return 200, jobs.get(job_id).as_dict()
            finally:
                if not isinstance(database.obj, peewee.SqliteDatabase):
                    database.close()  # SQLite keeps the thread's connection, as the tool does
        except JobNotFound as err:
            return _error(404, str(err))
        except db.UNAVAILABLE_ERRORS as err:
            logger.warning("database unavailable: %s", err)
            return _error(503, database_unavailable(err))


def _error(status: int, message: str) -> tuple[int, dict]:
    return status, {"status": REASONS[status], "message": message, "traceback": "",
                    "version": __version__}
