"""Composition root of the frontend: build the handlers, tools and CherryPy config."""
from __future__ import annotations

import functools
import logging
import os
import socket

import cherrypy

from .. import db, metrics
from ..config import Settings
from ..health import Readiness, checks_for
from ..http import make_session
from ..queue import Enqueuer, make_celery
from ..services.ids import CounterIdSource, UniqueIdClient
from .errors import database_unavailable, error_page
from .fast_state import FastJobState
from .health import Health, Ready
from .handlers import JobFiles, JobState, Move, Root, Upload
from .identity import Identifier
from .intake import Intake
from .metrics import mount as mount_metrics
from .pages import mount as mount_pages
from .receipts import mount as mount_receipts
from .limits import UploadSlots, read_timeout, thread_pool
from .staging import Staging
from .tus import build_uploads
from .tus import mount as mount_tus

logger = logging.getLogger(__name__)


class DatabaseTool(cherrypy.Tool):
    """Opens the thread's database connection for a request and closes it after."""

    def __init__(self):
        super().__init__("on_start_resource", self._connect, priority=10)

    def _setup(self):
        super()._setup()
        cherrypy.request.hooks.attach("on_end_request", self._close)

    @staticmethod
    def _connect():
        try:
            db.database_proxy.connect(reuse_if_open=True)
        except db.UNAVAILABLE_ERRORS as err:
            raise cherrypy.HTTPError(503, database_unavailable(err)) from err

    @staticmethod
    def _close():
        db.release_connection()


cherrypy.tools.ingest_db = DatabaseTool()


def build_intake(settings: Settings, enqueue) -> Intake:
    """The intake with the configured id source, staging volume and queue."""
    ids = (UniqueIdClient(settings.services.uniqueid, make_session(settings.http))
           if settings.services.uniqueid else CounterIdSource())
    staging = Staging(settings.ingest.volume_path, settings.ingest.transfer_size,
                      settings.ingest.max_bundle_size, settings.ingest.min_free_space)
    return Intake(ids, staging, enqueue,
                  owner=f"{socket.gethostname()}:{os.getpid()}",
                  moves_allowed=bool(settings.move.allowed_roots),
                  idempotency_ttl=settings.ingest.idempotency_ttl,
                  callback_hosts=(settings.notify.allowed_hosts
                                  if settings.notify.allow_client_urls else None))


def create_app(settings: Settings, enqueue=None) -> cherrypy.Application:
    """The WSGI application: routes, JSON errors, streaming upload bodies."""
    db.bind(settings.database)
    metrics.enable(settings.ingest.volume_path)
    celery_app = make_celery(settings)  # tasks go by name: the frontend never imports the pipeline
    intake = build_intake(settings, enqueue or Enqueuer(celery_app, settings.celery.queue_name))
    identifier = Identifier(settings)
    root = Root()
    slots = UploadSlots.from_settings(settings)
    root.upload = Upload(intake, identifier, slots=slots)
    root.ingest = root.upload
    root.move = Move(intake, identifier)
    root.get_state = JobState(identifier)
    root.get_files = JobFiles(identifier)
    root.health = Health()
    root.ready = Ready(Readiness(checks_for(settings, celery_app)))
    streaming = {"request.process_request_body": False}
    config = {
        "/": {
            "request.dispatch": cherrypy.dispatch.MethodDispatcher(),
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
        FastJobState, identifier=identifier, worker_timeout=settings.celery.worker_timeout,
        queue=settings.celery.queue_name, log_level=settings.logging.get_state_level)))
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
