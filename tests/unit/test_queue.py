"""What the frontend puts on the broker (kombu's in-memory transport) and how a job gets there
exactly once."""
from __future__ import annotations

import pytest

from pacifica.ingest import jobs, queue

from .conftest import take_messages


def waiting_job(job_id: int, kind: str = jobs.KIND_UPLOAD) -> None:
    """A job accepted whole and waiting for the broker."""
    jobs.create(job_id, "alice", kind=kind, path=f"/volume/{job_id}.tar")
    jobs.set_fields(job_id, queue_state=jobs.WAITING)


def test_make_celery_uses_the_configured_queue_and_json_only(settings):
    app = queue.make_celery(settings)
    assert app.conf.task_default_queue == settings.celery.queue_name
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1


@pytest.mark.parametrize("kind, task", [("upload", queue.TASK_INGEST),
                                        ("move", queue.TASK_MOVE)])
def test_enqueuer_sends_the_task_for_the_kind_with_the_job_id(settings, kind, task):
    queue.Enqueuer(queue.make_celery(settings), settings.celery.queue_name)(42, kind)
    [message] = take_messages(settings)
    assert message.headers["task"] == task
    args, kwargs, _ = message.decode()
    assert (args, kwargs) == ([42], {})
    assert message.content_type == "application/json"


def test_an_unknown_kind_is_refused_before_the_broker(settings):
    with pytest.raises(KeyError):
        queue.Enqueuer(queue.make_celery(settings), settings.celery.queue_name)(1, "teleport")
    assert take_messages(settings) == []


def test_submit_hands_a_waiting_job_over_once(database, recorder):
    waiting_job(1)
    assert queue.submit(1, jobs.KIND_UPLOAD, recorder)
    assert not queue.submit(1, jobs.KIND_UPLOAD, recorder)  # already queued: not twice
    assert recorder.jobs == [(1, "upload")]
    assert jobs.get(1).queue_state == jobs.QUEUED


def test_submit_leaves_a_job_waiting_when_the_broker_refuses(database):
    waiting_job(1)

    def broker_down(job_id, kind):
        raise ConnectionError(f"cannot send {kind} job {job_id}")

    assert not queue.submit(1, jobs.KIND_UPLOAD, broker_down)
    job = jobs.get(1)
    assert (job.queue_state, job.state, job.complete) == (jobs.WAITING, "OK", False)


def test_submit_ignores_a_job_that_is_not_waiting(database, recorder):
    jobs.create(1, "alice")  # still receiving its body
    assert not queue.submit(1, jobs.KIND_UPLOAD, recorder)
    assert recorder.jobs == [] and jobs.get(1).queue_state == jobs.RECEIVING


def test_waiting_jobs_go_to_the_broker_in_order_once_it_is_back(database, recorder):
    waiting_job(1)
    waiting_job(2, jobs.KIND_MOVE)
    waiting_job(3)
    jobs.fail(3, jobs.Step.UPLOADING, "failed by an operator")
    refusals = []

    def flaky(job_id, kind):
        if not refusals:
            refusals.append(job_id)
            raise ConnectionError("broker restarting")
        recorder(job_id, kind)

    retry = queue.WaitingJobsRetry(flaky)
    assert retry.run_once() == 0  # stops at the first refusal; the job waits
    assert jobs.get(1).queue_state == jobs.WAITING
    assert retry.run_once() == 2
    assert recorder.jobs == [(1, "upload"), (2, "move")]
    assert retry.run_once() == 0


def test_a_job_round_trips_through_the_in_memory_broker(settings, database):
    """submit with the real Enqueuer: the message names the job the row says is queued."""
    waiting_job(7)
    enqueue = queue.Enqueuer(queue.make_celery(settings), settings.celery.queue_name)
    assert queue.submit(7, jobs.KIND_UPLOAD, enqueue)
    [message] = take_messages(settings)
    assert message.headers["task"] == queue.TASK_INGEST and message.decode()[0] == [7]
    assert jobs.get(7).queue_state == jobs.QUEUED
