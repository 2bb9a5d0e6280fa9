"""The worker side in this process: its Celery tasks (eager, or fed a message from the
in-memory broker) and ``run_job``'s rules for duplicates, takeovers and errors."""
from __future__ import annotations

import pytest

from factories import make_bundle
from pacifica.ingest import catalog, jobs, queue, worker
from pacifica.ingest.web.app import create_app
from rejections import GOOD

from .conftest import archive_listing, dead_owner_here, live_owner_here, take_messages
from .wsgi_client import WsgiClient


@pytest.fixture
def celery_app(settings, database):  # pylint: disable=unused-argument
    """The worker's Celery app with its tasks installed, as ``pacifica.ingest.tasks`` builds it."""
    app = queue.make_celery(settings)
    worker.install(app, settings)
    return app


def test_the_ingest_task_runs_a_job_when_called_eagerly(settings, celery_app, landed):
    celery_app.conf.task_always_eager = True
    job_id = landed(make_bundle(GOOD))
    celery_app.ingest_task.delay(job_id)
    job = jobs.get(job_id)
    assert (job.state, job.complete, job.attempts) == ("OK", True, 1), job.exception
    assert len(archive_listing(settings)) == len(GOOD)  # this app's tasks, with its settings


def test_an_upload_goes_from_the_frontend_through_the_broker_to_the_task(settings, celery_app):
    """The frontend's own enqueue (kombu memory://) carries the job; the task named in the
    message runs it; get_state then shows it complete."""
    client = WsgiClient(create_app(settings))
    job_id = client.post("/upload", make_bundle(GOOD),
                         content_type="application/octet-stream").json()["job_id"]
    [message] = take_messages(settings)
    args, _, _ = message.decode()
    celery_app.tasks[message.headers["task"]].apply(args=args)
    state = client.get(f"/get_state?job_id={job_id}").json()
    assert (state["state"], state["complete"], state["task"]) == (
        "OK", True, "ingest metadata"), state
    assert len(catalog.files_of(job_id)) == len(archive_listing(settings)) == len(GOOD)


def test_a_job_that_does_not_exist_is_dropped(run_job, database):  # pylint: disable=unused-argument
    ended = []
    worker.run_job(404, queue.TASK_INGEST, lambda: None, 3600.0, on_end=ended.append)
    assert ended == []


def test_a_job_another_live_worker_runs_is_left_to_it(landed, run_job):
    job_id = landed(make_bundle(GOOD))
    jobs.set_fields(job_id, owner=live_owner_here())
    job = run_job(job_id)
    assert (job.state, job.complete, job.attempts, job.owner) == (
        "OK", False, 0, live_owner_here())


def test_a_job_whose_worker_died_is_taken_over_and_finished(settings, landed, run_job):
    job_id = landed(make_bundle(GOOD))
    jobs.set_fields(job_id, owner=dead_owner_here(), attempts=1)
    job = run_job(job_id)
    assert (job.state, job.complete, job.attempts) == ("OK", True, 2), job.exception


def test_a_job_an_operator_failed_is_not_run(settings, landed, run_job):
    job_id = landed(make_bundle(GOOD))
    jobs.fail(job_id, jobs.Step.UPLOADING, "stopped by an operator")
    job = run_job(job_id)
    assert (job.state, job.exception, job.attempts) == ("FAILED", "stopped by an operator", 0)


def test_on_end_is_told_once_the_job_ends_either_way(settings, landed):
    deps = worker.build_deps(settings)
    good, bad = landed(make_bundle(GOOD)), landed(make_bundle(GOOD, include_metadata=False))
    ended = []
    for job_id in (good, bad, good):  # the third is a duplicate delivery of a done job
        worker.run_job(job_id, queue.TASK_INGEST, lambda: deps, 3600.0, on_end=ended.append)
    assert ended == [good, bad]
    assert (jobs.get(good).state, jobs.get(bad).state) == ("OK", "FAILED")


def test_an_unexpected_error_fails_the_job_without_its_details(landed):
    job_id = landed(make_bundle(GOOD))
    ended = []

    def broken_deps():
        raise RuntimeError("secret internals at /srv/deps.py")

    with pytest.raises(RuntimeError):
        worker.run_job(job_id, queue.TASK_INGEST, broken_deps, 3600.0, on_end=ended.append)
    job = jobs.get(job_id)
    assert (job.state, job.complete) == ("FAILED", True)
    assert job.exception.startswith("internal error while UPLOADING (logged as ")
    assert "secret" not in job.exception and ended == [job_id]
