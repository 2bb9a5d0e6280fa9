#!/usr/bin/env bash
# Run Pacifica Ingest alone on its embedded defaults (SQLite, a filesystem broker, a local
# archive, all under the checkout's var/, or $INGEST_HOME/var): the frontend on
# http://127.0.0.1:8066 plus one Celery worker.
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$ROOT"
exec pacifica-ingest --dbsync --with-worker "$@"
