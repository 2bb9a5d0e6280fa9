#!/usr/bin/env bash
# The whole test suite: everything on the embedded defaults, then the end-to-end suite again
# on MariaDB + RabbitMQ and on MariaDB + Redis when those answer on loopback.
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
cd "$ROOT"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pages' browser tests drive Debian's Chromium (never a browser a tool downloads itself);
# they skip, naming what is missing, where it cannot be installed.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      chromium chromium-driver >/dev/null) || echo "chromium did not install: browser tests skip" >&2
  else
    echo "chromium/chromedriver missing (apt-get install chromium chromium-driver): browser tests skip" >&2
  fi
fi

python -m pytest "$@"
if answers 3306 && answers 5672; then
  INGEST_TEST_DATABASE=mariadb INGEST_TEST_BROKER=rabbitmq python -m pytest -m e2e "$@"
else
  echo "MariaDB or RabbitMQ not answering on 127.0.0.1: skipped that end-to-end run" >&2
fi
if answers 3306 && answers 6379; then
  INGEST_TEST_DATABASE=mariadb INGEST_TEST_BROKER=redis python -m pytest -m e2e "$@"
else
  echo "MariaDB or Redis not answering on 127.0.0.1: skipped that end-to-end run" >&2
fi
