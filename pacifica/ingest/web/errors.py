"""The one place that maps errors to HTTP statuses and renders every error as JSON."""
from __future__ import annotations

import functools
import json
import logging

import cherrypy

from .. import __version__
from ..db import UNAVAILABLE_ERRORS
from ..errors import IngestError, JobNotFound, ServiceUnavailable, UploadError
from ..http import redact
from ..jobs import job_id_from

logger = logging.getLogger(__name__)


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


def json_errors(handler):
    """Turn our error types into HTTP errors with a message a person can act on."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except JobNotFound as err:
            raise cherrypy.HTTPError(404, str(err)) from err
        except BadJobId as err:
            raise cherrypy.HTTPError(400, str(err)) from err
        except UploadError as err:
            job = getattr(err, "job_id", None)
            suffix = f" (job {job} is marked FAILED)" if job is not None else ""
            raise cherrypy.HTTPError(err.status, f"{err}{suffix}") from err
        except ServiceUnavailable as err:
            raise cherrypy.HTTPError(503, redact(str(err))) from err
        except IngestError as err:
            raise cherrypy.HTTPError(400, str(err)) from err
        except UNAVAILABLE_ERRORS as err:
            logger.warning("database unavailable: %s", err)
            raise cherrypy.HTTPError(503, database_unavailable(err)) from err

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
