"""WSGI entry point for uwsgi/gunicorn: ``pacifica.ingest.wsgi:application``."""
from . import db, logsetup, schema
from .config import load
from .server import start_janitor
from .web.app import create_app

logsetup.configure()
settings = load()
application = create_app(settings)
db.wait_for_database(settings.database)
try:
    schema.require_compatible()
finally:
    db.database_proxy.close()
waiting_jobs_retry = start_janitor(application, settings)
