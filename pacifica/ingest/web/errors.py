"""The one place that maps errors to HTTP statuses and renders every error as JSON.

``answer`` is the table (exception -> status, message, headers); ``status_line`` adds the
reason; ``error_json`` is the body.  CherryPy handlers (``json_errors``, ``error_page``), the
fast ``/get_state`` path (web/fast_state.py), tus (web/tus.py) and cheroot's own answers
(web/httpserver.py) all go through them.
"""
from __future__ import annotations

import functools
import http
import json
import logging

import cherrypy

from .. import __version__
from ..auth import AuthError
from ..db import UNAVAILABLE_ERRORS
from ..errors import IngestError, JobNotFound, ServiceUnavailable, UploadError
from ..http import redact
from ..jobs import job_id_from
from ..protocol import CHECKSUM_MISMATCH

logger = logging.getLogger(__name__)

REALM = "pacifica-ingest"
CHALLENGE = f'Basic realm="{REALM}", Bearer realm="{REALM}"'  # with a 401
REASONS = {status.value: status.phrase for status in http.HTTPStatus}
REASONS[CHECKSUM_MISMATCH] = "Checksum Mismatch"


class BadJobId(ValueError):
    """A job_id query parameter that is missing or not a job id."""


def parse_job_id(value) -> int:
    """The job id of a query, or BadJobId saying what is wrong with it."""
    if value is None:
        raise BadJobId("job_id is required, e.g. /get_state?job_id=1")
    try:
        return job_id_from(value)
    except ValueError as err:
        raise BadJobId(str(err)) from None


def database_unavailable(err: Exception) -> str:
    """The 503 message when the job database cannot be reached."""
    return redact(f"the job database is unavailable; try again shortly ({err})")


def status_line(code: int) -> str:
    """``404 Not Found``: the status with its reason (ours too, e.g. ``460 Checksum Mismatch``)."""
    return f"{code} {REASONS.get(code, 'Error')}"


def answer(err: BaseException) -> tuple[int, str, list[tuple[str, str]]] | None:
    """The status, message and extra headers for an error we expect; None for any other."""
    if isinstance(err, AuthError):
        return err.status, str(err), ([("WWW-Authenticate", CHALLENGE)] if err.status == 401
                                      else [])
    if isinstance(err, JobNotFound):
        return 404, str(err), []
    if isinstance(err, UploadError):
        job = getattr(err, "job_id", None)
        suffix = f" (job {job} is marked FAILED)" if job is not None else ""
        return err.status, f"{err}{suffix}", []
    if isinstance(err, ServiceUnavailable):
        return 503, redact(str(err)), []
    if isinstance(err, (IngestError, BadJobId)):
        return 400, str(err), []
    if isinstance(err, UNAVAILABLE_ERRORS):
        logger.warning("database unavailable: %s", err)
        return 503, database_unavailable(err), []
    return None


def http_error(err: BaseException) -> cherrypy.HTTPError | None:
    """The CherryPy error for an error we expect (its headers set on the response), else None."""
    known = answer(err)
    if known is None:
        return None
    status, message, headers = known
    cherrypy.response.headers.update(headers)
    return cherrypy.HTTPError(status_line(status), message)


def json_errors(handler):
    """Turn our error types into HTTP errors with a message a person can act on."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (IngestError, BadJobId, *UNAVAILABLE_ERRORS) as err:
            raise http_error(err) from err

    return wrapper


def error_json(status: str, message: str) -> str:
    """An error body in the shape the original service used; never a traceback (it is logged)."""
    return json.dumps({"status": status, "message": message, "traceback": "",
                       "version": __version__})


def error_page(status, message, traceback, version):  # pylint: disable=redefined-outer-name
    """CherryPy's error page, as JSON (CherryPy logs the traceback; clients never see it)."""
    del traceback, version  # the version is this package's, not CherryPy's
    cherrypy.response.headers["Content-Type"] = "application/json"
    return error_json(status, message)
