"""Celery entry point: ``celery -A pacifica.ingest.tasks worker`` (reads settings once)."""
from . import worker
from .config import load
from .queue import make_celery

settings = load()
app = make_celery(settings)
worker.install(app, settings)
ingest = app.ingest_task
move = app.move_task
