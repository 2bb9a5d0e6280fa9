"""Kill a worker with SIGKILL in the middle of "ingest files": a fresh worker finishes the job once.

Runs on every broker (the e2e re-runs) with the default ``stale_after`` (an hour):
RabbitMQ redelivers the unacknowledged message; the filesystem transport has
already deleted it and Redis hides it for the visibility timeout, so there the
frontend's lost-job sweep queues it again as soon as it sees the worker's pid
is gone (the worker ran on this host).
"""
from __future__ import annotations

import os
import signal

import pytest

from factories import make_bundle
from faults import StateRecorder, admin_jobs, archive_names, wait_until
from test_e2e_ingest import assert_archived

pytestmark = pytest.mark.e2e

STEP_ORDER = ["UPLOADING", "open tar", "load metadata", "Policy Validation", "ingest files",
              "ingest metadata"]


def assert_progress_never_goes_back(seen: list[tuple[str, float]], restarted: str) -> None:
    """Tasks only move forward; a percent drops only when ``restarted`` starts over, once."""
    drops = 0
    for (task_a, pct_a), (task_b, pct_b) in zip(seen, seen[1:]):
        assert STEP_ORDER.index(task_b) >= STEP_ORDER.index(task_a), seen
        if task_a == task_b and pct_b < pct_a:
            assert task_a == restarted, seen
            drops += 1
    assert drops <= 1, seen


def test_worker_killed_mid_ingest_files(make_stack):
    stack = make_stack(workers=1, concurrency=1).start()  # stale_after: the default hour
    files = {f"run/part{n:03d}.bin": os.urandom(128 * 1024) for n in range(400)}
    job_id = stack.upload(make_bundle(files))["job_id"]
    with StateRecorder(stack, job_id) as recorder:
        wait_until(lambda: len(archive_names(stack)) >= 3, 120, "the worker to store 3 files")
        stack.kill(stack.workers[0], signal.SIGKILL)
        before = admin_jobs(stack)[0]
        assert before["job_id"] == job_id
        assert (before["task"], before["complete"]) == ("ingest files", False), before
        assert 0 < len(archive_names(stack)) < len(files)

        stack.start_worker()
        state = stack.wait(job_id, timeout=60)
    assert state["state"] == "OK" and state["complete"], state
    after = admin_jobs(stack)[0]
    assert after["attempts"] == 2, after
    assert (after["file_id_start"], after["file_count"]) == (before["file_id_start"], 400)
    assert_archived(stack, job_id, files)
    stored = archive_names(stack)
    assert len(stored) == len(files) and not [n for n in stored if not n.split("/")[-1].isdigit()]
    assert not [name for name in stack.volume_files() if name.startswith(f"{job_id}.")]
    assert_progress_never_goes_back(recorder.seen, "ingest files")
