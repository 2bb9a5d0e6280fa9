#!/bin/sh
# Container health (Dockerfile HEALTHCHECK), runnable on a bare host too:
#   docker/healthcheck.sh frontend   GET /ready on the port of $INGEST_BIND answers 200: the
#                                    database, broker, volume and a live worker all answer
#   docker/healthcheck.sh backend    this host's worker (celery@$(hostname)) answers a ping
#                                    over the broker (RabbitMQ or Redis)
set -eu

case "${1:-}" in
  frontend)
    port="${INGEST_BIND:-0.0.0.0:8066}"
    port="${port##*:}"
    exec python -c 'import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/ready", timeout=8) as reply:
    sys.exit(0 if reply.status == 200 else 1)' "$port"
    ;;
  backend)
    exec celery -A pacifica.ingest.tasks inspect ping --timeout 10 \
      --destination "${INGEST_WORKER_NAME:-celery@$(hostname)}"
    ;;
  *)
    echo "usage: $0 frontend|backend" >&2
    exit 64
    ;;
esac
