"""A WSGI application that answers every request with one fixed job state: run under the
frontend's own gunicorn settings it shows what the server alone can serve on this machine
(the ceiling of ``get_state``), beside what our application does inside it."""
from __future__ import annotations

BODY = (b'{"job_id": 1, "state": "OK", "task": "ingest metadata", "task_percent": "100.0", '
        b'"complete": true, "updated": "2026-12-02 00:00:00", "created": "2026-12-02 00:00:00", '
        b'"exception": ""}')
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    """The same answer, whatever was asked."""
    del environ
    start_response("200 OK", HEADERS)
    return [BODY]
