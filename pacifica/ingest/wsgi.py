"""WSGI entry point for uwsgi/gunicorn: ``pacifica.ingest.wsgi:application``."""
import cherrypy

from . import db, logsetup, schema
from .config import load
from .queue import WaitingJobsRetry
from .web.app import create_app
from .web.tus import TusSweeper

logsetup.configure()
# Hosted by another server: no CherryPy console log (its access log still goes through
# logging), no autoreload or signal handlers of its own.
cherrypy.config.update({"environment": "embedded"})
settings = load()
application = create_app(settings)
db.wait_for_database(settings.database)
try:
    schema.require_compatible()
finally:
    db.database_proxy.close()
waiting_jobs_retry = WaitingJobsRetry(application.intake.enqueue)
waiting_jobs_retry.start()
tus_sweeper = TusSweeper(application.tus)
tus_sweeper.start()
