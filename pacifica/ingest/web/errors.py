"""The one place that maps errors to HTTP statuses and renders every error as JSON."""
from __future__ import annotations

import functools
import json
import logging

import cherrypy

from .. import __version__
from ..db import UNAVAILABLE_ERRORS
from ..errors import IngestError, JobNotFound, ServiceUnavailable, UploadError

logger = logging.getLogger(__name__)


class BadJobId(ValueError):
    """A job_id query parameter that is missing or not an integer."""


def parse_job_id(value) -> int:
    """The job id of a query, or BadJobId saying what is wrong with it."""
    if value is None:
        raise BadJobId("job_id is required, e.g. /get_state?job_id=1")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadJobId(f"job_id must be an integer, got {value!r}") from None


def database_unavailable(err: Exception) -> str:
    """The 503 message when the job database cannot be reached."""
    return f"the job database is unavailable; try again shortly ({err})"


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
            raise cherrypy.HTTPError(503, str(err)) from err
        except IngestError as err:
            raise cherrypy.HTTPError(400, str(err)) from err
        except UNAVAILABLE_ERRORS as err:
            logger.warning("database unavailable: %s", err)
            raise cherrypy.HTTPError(503, database_unavailable(err)) from err

    return wrapper


def error_page(status, message, traceback, version):  # pylint: disable=redefined-outer-name
    """CherryPy's error page, as JSON in the shape the original service used."""
    cherrypy.response.headers["Content-Type"] = "application/json"
    return json.dumps({"status": status, "message": message, "traceback": traceback,
                       "version": __version__})
