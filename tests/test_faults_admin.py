"""Stuck jobs from the command line: list by state and age, fail, requeue."""
from __future__ import annotations

import json

from factories import make_bundle
from faults import admin_jobs, wait_until
from test_e2e_ingest import assert_archived


def test_list_fail_and_requeue_a_stuck_job(make_stack):
    stack = make_stack(workers=0).start()  # nobody takes the job: it is stuck in the queue
    files = {"stuck/a.txt": b"stuck"}
    job_id = stack.upload(make_bundle(files))["job_id"]
    # it ages past --older-than 1 a second after it was queued (under load, a while after
    # the upload's answer)
    listed = wait_until(lambda: admin_jobs(stack, "--stale", "--older-than", "1"), 60,
                        "the queued job to be listed as stale", interval=0.5)
    assert [(j["job_id"], j["stale"], j["queue_state"]) for j in listed] == [(job_id, True,
                                                                              "queued")]
    assert admin_jobs(stack, "--state", "FAILED") == []
    assert admin_jobs(stack, "--stale") == []  # not stale by the configured 3600 s

    failed = json.loads(stack.admin("fail", "--job-id", str(job_id), "--message",
                                    "instrument re-sends it").stdout)
    assert [(j["state"], j["complete"], j["exception"]) for j in failed] == [
        ("FAILED", True, "instrument re-sends it")]

    stack.start_worker()  # the old message arrives: a FAILED job is left alone
    wait_until(lambda: "is already FAILED" in stack.log("worker0"), 60,
               "the worker to drop the failed job's message")
    assert stack.state(job_id)["state"] == "FAILED"

    requeued = json.loads(stack.admin("requeue", "--job-id", str(job_id)).stdout)
    assert [(j["state"], j["queue_state"]) for j in requeued] == [("OK", "queued")]
    state = stack.wait(job_id, timeout=120)
    assert state["state"] == "OK" and state["complete"], state
    assert_archived(stack, job_id, files)
    assert admin_jobs(stack)[0]["attempts"] == 1
