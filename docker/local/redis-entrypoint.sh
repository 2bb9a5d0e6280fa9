#!/bin/sh
# redis-server answers other containers without a password, as the official image's does.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
