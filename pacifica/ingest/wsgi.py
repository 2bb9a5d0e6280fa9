"""WSGI entry point for uwsgi/gunicorn: ``pacifica.ingest.wsgi:application``."""
import cherrypy

from . import db, logsetup, schema, startup
from .config import load
from .server import start_background
from .web.app import create_app

logsetup.configure()
# Hosted by another server: no CherryPy console log (its access log still goes through
# logging), no autoreload or signal handlers of its own.
cherrypy.config.update({"environment": "embedded"})
settings = load()
logsetup.configure(settings.logging.level, settings.logging.format)
startup.announce(settings)
problem = startup.missing_database(settings)
if problem:  # connecting would create an empty database file
    raise schema.SchemaError(problem)
application = create_app(settings)
db.wait_for_database(settings.database)
try:
    schema.require_compatible()
finally:
    db.database_proxy.close()
background = start_background(application, settings)
