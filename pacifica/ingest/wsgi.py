"""WSGI entry point for uwsgi/gunicorn: ``pacifica.ingest.wsgi:application``."""
import cherrypy

from . import logsetup, schema, startup
from .config import load
from .server import start_background
from .web.app import create_app

logsetup.configure()
# Hosted by another server: no CherryPy console log (its access log still goes through
# logging), no autoreload or signal handlers of its own.
cherrypy.config.update({"environment": "embedded"})
settings = load()
logsetup.configure(settings.logging.level, settings.logging.format)
startup.require_database(settings)
application = create_app(settings)
schema.check_at_start(settings.database)
background = start_background(application, settings)
