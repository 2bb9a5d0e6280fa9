"""Uploads cut short: a client that goes away mid-body, a frontend killed with SIGKILL mid-upload."""
from __future__ import annotations

import os
import signal

from faults import admin_jobs, job_expecting, partial_upload, wait_until

SMALL_CHUNKS = {"TRANSFER_SIZE": "64 Kb"}


def _part_size(stack, job_id: int) -> int:
    path = os.path.join(stack.volume, f"{job_id}.tar.part")
    return os.path.getsize(path) if os.path.exists(path) else 0


def test_client_disconnects_mid_body(stack):
    length = 3_000_017
    sock = partial_upload(stack.port, length, 700_000)
    job = wait_until(lambda: job_expecting(stack, length), 60, "the frontend to record the job")
    sock.close()
    job = wait_until(lambda: (lambda s: s["state"] == "FAILED" and s)(stack.state(job["job_id"])),
                     60, "the interrupted upload to fail its job")
    assert job["complete"] and job["task"] == "UPLOADING", job
    assert "upload was interrupted" in job["exception"], job
    assert f"700000 bytes of {length}" in job["exception"], job
    assert not [name for name in stack.volume_files() if name.startswith(f"{job['job_id']}.")]
    assert stack.session.get(stack.url + "/", timeout=10).status_code == 200


def _kill_frontend_mid_upload(stack, length: int) -> tuple[int, int, str]:
    """Start an upload, wait until bytes are on the volume, SIGKILL the frontend."""
    sock = partial_upload(stack.port, length, 300_000)
    try:
        job = wait_until(lambda: job_expecting(stack, length), 60, "the job to be recorded")
        wait_until(lambda: _part_size(stack, job["job_id"]) >= 256 * 1024, 60,
                   "the partial bundle to reach the volume")
        owner = f"{job['owner']}"
        stack.kill(stack.frontend, signal.SIGKILL)
    finally:
        sock.close()
    job = admin_jobs(stack)[0]
    assert (job["state"], job["task"], job["queue_state"]) == ("OK", "UPLOADING", "receiving")
    return job["job_id"], _part_size(stack, job["job_id"]), owner


def _assert_failed_as_interrupted(stack, job_id: int, received: int, length: int, owner: str):
    job = admin_jobs(stack)[0]
    assert (job["job_id"], job["state"], job["complete"]) == (job_id, "FAILED", True), job
    assert "upload was interrupted" in job["exception"], job
    assert f"{received} bytes of {length}" in job["exception"], job
    assert owner in job["exception"], job
    assert not os.path.exists(os.path.join(stack.volume, f"{job_id}.tar.part"))


def test_frontend_killed_mid_upload_is_failed_on_restart(make_stack):
    stack = make_stack(workers=0, extra_env=SMALL_CHUNKS).start()
    length = 5_000_011
    job_id, received, owner = _kill_frontend_mid_upload(stack, length)
    assert received >= 256 * 1024

    stack.start_frontend()  # the start-up sweep runs before it serves
    _assert_failed_as_interrupted(stack, job_id, received, length, owner)
    assert stack.state(job_id)["state"] == "FAILED"


def test_frontend_killed_mid_upload_is_failed_by_admin_recover(make_stack):
    stack = make_stack(workers=0, extra_env=SMALL_CHUNKS).start()
    length = 4_000_037
    job_id, received, owner = _kill_frontend_mid_upload(stack, length)

    listed = admin_jobs(stack, "--queue-state", "receiving", "--running")
    assert [job["job_id"] for job in listed] == [job_id]
    stack.admin("recover")
    _assert_failed_as_interrupted(stack, job_id, received, length, owner)
