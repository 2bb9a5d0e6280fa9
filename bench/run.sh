#!/usr/bin/env bash
# The benchmark in one command (not part of CI: the default full run takes ~30 minutes on 2 cores):
#   bash bench/run.sh [--runs 3] [--only big,mid,many,floor,state,curves]
#                     [--systems ours-local,ours-pacifica,original] [--curves 1k,10k,100k,64M,1G,4G]
# Creates .venv (scripts/venv.sh) with the `bench` extra (matplotlib) and, for the original 0.4.1
# and the real Pacifica services, bench/.venvs/original; installs wrk from Debian's packages when
# it is missing and we are root. Needs RabbitMQ on 127.0.0.1:5672 for the original.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/venv.sh"
cd "$ROOT"
if ! python -c "import matplotlib" 2>/dev/null; then
  python -m pip install -q -e "$ROOT[test,bench]"
fi
if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; } || true
fi
exec python -m bench "$@"
