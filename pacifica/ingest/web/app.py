"""Composition root of the frontend: build the handlers, tools and CherryPy config."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import socket

import cherrypy

from .. import db, metrics
from ..config import Settings
from ..health import Readiness, checks_for
from ..queue import Enqueuer, make_celery
from ..services.ids import from_settings as ids_from_settings
from .errors import database_unavailable, error_page, status_line
from .fast_state import FastJobState
from .health import Health, Ready
from .handlers import JobFiles, Move, Root, Upload
from .identity import Identifier
from ..intake.intake import Intake
from .metrics import mount as mount_metrics
from .pages import mount as mount_pages
from .receipts import mount as mount_receipts
from .limits import UploadSlots, read_timeout, thread_pool
from ..intake.staging import Staging
from ..intake.resumable import build_uploads
from .tus import mount as mount_tus
from .uploader_policy import UploaderQueries

logger = logging.getLogger(__name__)


class DatabaseTool(cherrypy.Tool):
    """Holds ``db.connection()`` from the start of a request to its end."""

    def __init__(self):
        super().__init__("on_start_resource", self._connect, priority=10)

    def _setup(self):
        super()._setup()
        cherrypy.request.hooks.attach("on_end_request", self._close)

    @staticmethod
    def _connect():
        held = contextlib.ExitStack()
        try:
            held.enter_context(db.connection())
        except db.UNAVAILABLE_ERRORS as err:
            raise cherrypy.HTTPError(status_line(503), database_unavailable(err)) from err
        cherrypy.request.ingest_db = held

    @staticmethod
    def _close():
        held = getattr(cherrypy.request, "ingest_db", None)
        if held is not None:
            held.close()


cherrypy.tools.ingest_db = DatabaseTool()

# What to say for an unknown path, by its first component (docs/PROTOCOL.md lists them all).
ENDPOINT_HINTS = {
    "upload": "POST bundles to /upload (GET /upload is the browser's upload page)",
    "ingest": "POST bundles to /ingest",
    "move": "POST move requests (JSON) to /move",
    "get_state": "ask GET /get_state?job_id=N",
    "get_files": "ask GET /get_files?job_id=N",
    "receipt": "ask GET /receipt?job_id=N",
    "receipt-key": "ask GET /receipt-key",
    "jobs": "the pages for people are GET /jobs and GET /jobs/N",
    "health": "ask GET /health",
    "ready": "ask GET /ready",
    "metrics": "ask GET /metrics",
    "uploader": "POST Pacifica Policy uploader queries (JSON) to /uploader",
}
ALL_ENDPOINTS = ("the endpoints are GET /, POST /upload (or /ingest), POST /move, "
                 "GET /get_state?job_id=N, GET /get_files?job_id=N, GET /receipt?job_id=N, "
                 "GET /receipt-key, tus under /files/, GET /health, /ready, /metrics, and "
                 "the pages GET /jobs, /jobs/N, /upload (docs/PROTOCOL.md)")


def no_such_endpoint(path: str) -> str:
    """The 404 message for an unknown path: what it is and where to go instead."""
    parts = [part for part in path.split("/") if part]
    hint = ENDPOINT_HINTS.get(parts[0], ALL_ENDPOINTS) if parts else ALL_ENDPOINTS
    shown = path if len(path) <= 200 else path[:200] + "..."
    return f"no such endpoint {shown}; {hint}"


def _takes_sub_paths(resource, count: int) -> bool:
    """Whether a method of a handler takes ``count`` extra path components as positional
    arguments (``/jobs/7`` is ``JobPages.GET("7")``, ``/files/<id>`` goes to ``*path``)."""
    for name, method in inspect.getmembers(resource):
        if not (name.isupper() and callable(method)):
            continue
        kinds = [p.kind for p in inspect.signature(method).parameters.values()]
        if inspect.Parameter.VAR_POSITIONAL in kinds or count <= sum(
                kind in (inspect.Parameter.POSITIONAL_ONLY,
                         inspect.Parameter.POSITIONAL_OR_KEYWORD) for kind in kinds):
            return True
    return False


class Endpoints(cherrypy.dispatch.MethodDispatcher):
    """Method dispatch where every unknown path, under any method, is a 404 naming the right URL
    (CherryPy would call ``Upload.POST`` with the rest of ``/upload/x`` and fail with a 500)."""

    def find_handler(self, path):
        resource, vpath = super().find_handler(path)
        if resource is not None and vpath and not _takes_sub_paths(resource, len(vpath)):
            resource = None
        return resource, vpath

    def __call__(self, path_info):
        super().__call__(path_info)
        request = cherrypy.serving.request
        if isinstance(request.handler, cherrypy.NotFound):
            request.handler = cherrypy.HTTPError(404, no_such_endpoint(path_info))


def build_intake(settings: Settings, enqueue) -> Intake:
    """The intake with the configured id source, staging volume and queue."""
    return Intake(ids_from_settings(settings), Staging.from_settings(settings), enqueue,
                  owner=f"{socket.gethostname()}:{os.getpid()}",
                  moves_allowed=bool(settings.move.allowed_roots),
                  idempotency_ttl=settings.ingest.idempotency_ttl,
                  callback_hosts=(settings.notify.allowed_hosts
                                  if settings.notify.allow_client_urls else None))


def create_app(settings: Settings, enqueue=None) -> cherrypy.Application:
    """The WSGI application: routes, JSON errors, streaming upload bodies."""
    db.bind(settings.database, pooled=True)  # request threads: a connection each, pooled
    metrics.enable(settings.ingest.volume_path)
    celery_app = make_celery(settings)  # tasks go by name: the frontend never imports the pipeline
    intake = build_intake(settings, enqueue or Enqueuer(celery_app, settings.celery.queue_name))
    identifier = Identifier(settings)
    root = Root()
    slots = UploadSlots.from_settings(settings)
    root.upload = Upload(intake, identifier, slots=slots)
    root.ingest = root.upload
    root.move = Move(intake, identifier)
    root.get_files = JobFiles(identifier)
    root.health = Health()
    root.ready = Ready(Readiness(checks_for(settings, celery_app)))
    if not settings.services.policy:  # pacifica-cli's policy queries, for the built-in policy
        root.uploader = UploaderQueries(identifier)
    streaming = {"request.process_request_body": False}
    config = {
        "/": {
            "request.dispatch": Endpoints(),
            "error_page.default": error_page,
            "tools.ingest_db.on": True,
            "request.show_tracebacks": False,
            "tools.encode.on": True,
            "request.body.maxbytes": settings.ingest.max_metadata_size,
            "tools.body_floor.on": True,
            "tools.body_floor.slots": slots,
        },
        "/health": {"tools.ingest_db.on": False},
        "/ready": {"tools.ingest_db.on": False},
        "/upload": streaming,
        "/ingest": streaming,
    }
    uploads = build_uploads(settings, intake)
    config.update(mount_tus(root, uploads, settings, identifier, slots))
    config.update(mount_metrics(root, settings, uploads.store))
    config.update(mount_receipts(root, identifier))
    config.update(mount_pages(root, identifier))
    app = cherrypy.Application(root, script_name="", config=config)
    app.wsgiapp.pipeline.append(("fast_job_state", functools.partial(
        FastJobState, identifier=identifier, log=app.log,
        worker_timeout=settings.celery.worker_timeout, queue=settings.celery.queue_name,
        sample=settings.logging.access_log_sample)))  # /get_state: no CherryPy handler
    app.intake = intake
    app.tus = uploads
    return app


def server_config(settings: Settings, host: str, port: int) -> dict:
    """CherryPy's own server: no body size cap (we stream and enforce our own), strict framing
    and bounded reads (``httpserver.IngestServer``), threads beyond the upload cap."""
    return {
        "server.instance": "pacifica.ingest.web.httpserver.IngestServer",
        "server.socket_host": host,
        "server.socket_port": port,
        "server.max_request_body_size": 0,
        "server.socket_timeout": read_timeout(settings),
        "server.thread_pool": thread_pool(settings),
        # CherryPy listens with a backlog of 5: a burst of new connections (32 pollers at
        # once) overflows it, and the kernel drops SYNs that clients resend only a second later.
        "server.socket_queue_size": 1024,
        "engine.autoreload.on": False,
        "checker.on": False,
        "log.screen": False,
        "environment": "production",
    }
