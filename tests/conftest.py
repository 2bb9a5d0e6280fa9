"""Shared fixtures: one real stack (frontend + Celery worker) per session, fresh ones on demand."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import processes  # noqa: E402  pylint: disable=wrong-import-position
from harness import Stack  # noqa: E402  pylint: disable=wrong-import-position

processes.become_subreaper()


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
    """Fail the run when a process the suite started outlives it (then kill it)."""
    left = processes.leftovers()
    if left:
        processes.kill_all(left)
        lines = "\n".join(f"  pid {pid}: {command}" for pid, command in left.items())
        session.config.get_terminal_writer().line(
            f"\nprocesses started by the tests were still alive at the end (now killed):\n"
            f"{lines}", red=True)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """A running frontend and worker on the backends the environment chooses."""
    running = Stack(str(tmp_path_factory.mktemp("stack"))).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def move_stack(tmp_path_factory):
    """A running stack whose ``/move`` may take files from beneath its own base folder
    (which also holds its archive, volume, queue and SQLite file: those stay refused)."""
    base = str(tmp_path_factory.mktemp("move-stack"))
    running = Stack(base, extra_env={"INGEST_MOVE_ALLOWED_ROOTS": base}).start()
    yield running
    running.stop()


@pytest.fixture
def make_stack(tmp_path):
    """Build extra stacks (stopped at the end of the test)."""
    made = []

    def build(**options) -> Stack:
        made.append(Stack(str(tmp_path / f"stack{len(made)}"), **options))
        return made[-1]

    yield build
    for item in made:
        item.stop()
