"""Our service as the benchmark runs it: the test harness's real processes, default settings."""
from __future__ import annotations

import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

from harness import Stack  # noqa: E402  pylint: disable=wrong-import-position,import-error
from images import image_command  # noqa: E402  pylint: disable=wrong-import-position,import-error

# The harness tunes a few settings for fast tests; the benchmark keeps the shipped defaults.
DEFAULTS = {"INGEST_INGEST_PROGRESS_INTERVAL": "0.5"}


def start(workdir: str, services: dict | None = None, web_concurrency: int | None = None,
          database: str = "sqlite", settings: dict | None = None) -> Stack:
    """One frontend and one worker on SQLite (or MariaDB) and the filesystem broker; remote
    back ends if given.

    The frontend is CherryPy's own server in one process (the one-command run), or with
    ``web_concurrency`` the image's command (Dockerfile.frontend: entrypoint, gunicorn with
    docker/gunicorn.conf.py) with that many processes.
    """
    env = dict(DEFAULTS, **(services or {}), **(settings or {}))
    command = None
    if web_concurrency:
        env["WEB_CONCURRENCY"] = str(web_concurrency)
        command = image_command("Dockerfile.frontend")
    stack = Stack(workdir, database=database, broker="filesystem", workers=1, extra_env=env,
                  frontend_command=command)
    return stack.start()


def pids(stack: Stack) -> dict[str, int]:
    """Root pids of the frontend and the worker, for RSS sampling."""
    return {"frontend": stack.frontend.pid, "worker": stack.workers[0].pid}


def clean(stack: Stack) -> None:
    """Empty the local archive between runs (the database keeps its rows: ids keep growing)."""
    shutil.rmtree(stack.archive, ignore_errors=True)
