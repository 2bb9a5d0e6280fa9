#!/bin/sh
# Entry point of both images, and runnable as is on a bare host:
#   docker/entrypoint.sh COMMAND [ARGS...]
# Waits for the database, brings its schema up to date, then runs COMMAND in its place
# (exec: the command gets the container's signals as PID 1).
#
# INGEST_DB_INIT=sync (default)  run `pacifica-ingest-cmd dbsync` first.  It retries the
#                                connection DATABASE_CONNECT_ATTEMPTS times, DATABASE_CONNECT_WAIT
#                                seconds apart, and holds a database lock while it works, so a
#                                frontend and any number of workers starting together migrate
#                                the schema exactly once (the others find it current).
# INGEST_DB_INIT=skip            run COMMAND straight away.
set -eu

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]" >&2
  exit 64
fi

case "${INGEST_DB_INIT:-sync}" in
  sync)
    if ! pacifica-ingest-cmd dbsync; then
      echo "entrypoint: the database schema could not be brought up to date; not starting $1" >&2
      exit 1
    fi
    ;;
  skip) ;;
  *)
    echo "entrypoint: INGEST_DB_INIT must be 'sync' or 'skip', not '${INGEST_DB_INIT}'" >&2
    exit 64
    ;;
esac

exec "$@"
