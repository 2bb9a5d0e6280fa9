"""``GET /health`` (the process answers) and ``GET /ready`` (everything it needs answers)."""
from __future__ import annotations

import cherrypy

from ..health import Readiness


class Health:
    """Liveness: answers without touching the database, the broker or the disk."""

    exposed = True

    @cherrypy.tools.json_out()
    def GET(self):  # pylint: disable=invalid-name
        """The process is alive."""
        return {"alive": True}


class Ready:
    """Readiness: one entry per check with its time; 503 naming the failing ones."""

    exposed = True

    def __init__(self, readiness: Readiness):
        self.readiness = readiness

    @cherrypy.tools.json_out()
    def GET(self):  # pylint: disable=invalid-name
        """200 when every check passes, 503 otherwise."""
        ready, body = self.readiness.report()
        if not ready:
            cherrypy.response.status = 503
        cherrypy.response.headers["Cache-Control"] = "no-store"
        return body
