"""``GET /metrics``: Prometheus text format for this host's frontend and worker processes."""
from __future__ import annotations

import functools

import cherrypy

from .. import metrics


class Metrics:
    """The metrics page; the scrape-time gauges are read by ``read_state``."""

    exposed = True

    def __init__(self, read_state):
        self.read_state = read_state

    def GET(self):  # pylint: disable=invalid-name
        """Every metric, in the exposition format."""
        cherrypy.response.headers["Content-Type"] = metrics.CONTENT_TYPE
        cherrypy.response.headers["Cache-Control"] = "no-store"
        return metrics.exposition(self.read_state)


def mount(root, settings, tus_store) -> dict:
    """Attach ``/metrics``; its CherryPy config (it opens the database itself)."""
    root.metrics = Metrics(functools.partial(
        metrics.service_state, settings.celery.worker_timeout, settings.celery.queue_name,
        tus_store))
    return {"/metrics": {"tools.ingest_db.on": False, "tools.encode.on": False}}
