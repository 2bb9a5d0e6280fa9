"""gunicorn settings for the frontend: ``gunicorn -c docker/gunicorn.conf.py
pacifica.ingest.wsgi:application`` (Dockerfile.frontend's command; the same on a bare host).

Uploads are long and stream: each is held by one thread that copies the socket to the volume
in ``transfer_size`` chunks, so nothing buffers a whole body.  ``gthread`` workers keep
sending their heartbeat while their threads stream, so ``timeout`` never cuts an upload (a
``sync`` worker would be killed after ``timeout`` seconds of a single request).
"""
import os

from pacifica.ingest.config import load
from pacifica.ingest.web.header_names import gunicorn_pre_request
from pacifica.ingest.web.limits import thread_pool

_settings = load()

bind = [os.environ.get("INGEST_BIND", "0.0.0.0:8066")]
# gthread, with a deadline on each request head (a slow head held a thread for ever).
worker_class = "pacifica.ingest.web.gunicorn_worker.IngestThreadWorker"
# Processes; each imports the app after the fork (no preload) and runs its own retry thread.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Concurrent requests per process: [ingest] thread_pool, raised (as for CherryPy's own server)
# to leave threads for get_state beyond the [ingest] max_uploads each process streams at once.
threads = thread_pool(_settings)
# Seconds a worker may miss its heartbeat (a hung process), not a request time limit.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# On stop or reload, uploads still streaming get this long to finish.
graceful_timeout = int(_settings.ingest.socket_timeout)
keepalive = 5
# The heartbeat file on tmpfs: a slow container overlay disk cannot stall it.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Requests are logged once, by the application's access log; gunicorn's own goes to stderr.
accesslog = None
errorlog = "-"
# No runtime control socket (gunicorn >= 24): one fixed path per user would clash between
# two servers on a host, and the container user has no writable home.
control_socket_disable = True
loglevel = os.environ.get("INGEST_LOG_LEVEL", "info").lower()
# Header names with underscores (X_Http_Authed_User) reach the hook, which drops them and
# lists them for the application: it refuses one standing for the identity header (400)
# instead of gunicorn's silent drop (web/header_names.py).
header_map = "dangerous"
pre_request = gunicorn_pre_request
