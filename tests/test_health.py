"""GET /health, GET /ready and worker heartbeats, on real processes.

/ready must flip to 503 naming the check when the workers, the broker or the database go away,
and back when they return; a job queued while no worker lives says what it is waiting for.
The broker and database breaks are cuts of a TCP proxy only this test's stack uses.
"""
from __future__ import annotations

import pytest

from factories import make_bundle
from faults import answers, wait_until
from harness import MARIADB
from proxy import TcpProxy

pytestmark = pytest.mark.e2e

FAST_BEATS = {"INGEST_CELERY_HEARTBEAT_INTERVAL": "0.5", "INGEST_CELERY_WORKER_TIMEOUT": "3"}


def _ready(stack) -> tuple[int, dict]:
    reply = stack.session.get(stack.url + "/ready", timeout=30)
    return reply.status_code, reply.json()


def _wait_ready(stack, expected: int, failing: list[str] | None = None) -> dict:
    """Poll /ready until it answers ``expected`` (and names exactly ``failing``)."""
    def matches():
        status, body = _ready(stack)
        wanted = status == expected and (failing is None or body["failing"] == failing)
        return body if wanted else None
    return wait_until(matches, 60, f"/ready to answer {expected} failing {failing}", 0.2)


def test_health_answers_and_ready_lists_every_check(make_stack):
    stack = make_stack(extra_env=FAST_BEATS).start()
    reply = stack.session.get(stack.url + "/health", timeout=10)
    assert (reply.status_code, reply.json()) == (200, {"alive": True})
    body = _wait_ready(stack, 200, [])
    assert body["ready"] is True
    assert set(body["checks"]) == {"database", "broker", "volume", "workers"}
    for name, check in body["checks"].items():
        assert check["ok"] is True, (name, check)
        assert check["seconds"] >= 0
    assert body["checks"]["workers"]["detail"] == "1 live"


def test_queued_job_says_no_worker_until_one_comes(make_stack):
    stack = make_stack(workers=0, extra_env=FAST_BEATS).start()
    job_id = stack.upload(make_bundle({"a.txt": b"waiting for a worker"}))["job_id"]
    state = stack.state(job_id)
    assert (state["state"], state["task"], state["complete"]) == ("OK", "UPLOADING", False)
    assert state["waiting_for"].startswith("a worker: none has been seen yet"), state
    status, body = _ready(stack)
    assert status == 503 and body["failing"] == ["workers"], body

    stack.start_worker()
    state = stack.wait(job_id, timeout=120)
    assert state["state"] == "OK" and state["complete"], state
    assert "waiting_for" not in state
    _wait_ready(stack, 200, [])

    stack.kill(stack.workers[0])  # a clean stop: the worker says it stopped
    _wait_ready(stack, 503, ["workers"])
    job_id = stack.upload(make_bundle({"b.txt": b"and again"}))["job_id"]
    note = stack.state(job_id)["waiting_for"]
    assert note.startswith("a worker: none has been seen for "), note


@pytest.mark.parametrize("what", ["broker", "database"])
def test_ready_names_a_broken_broker_or_database_and_recovers(make_stack, what):
    port = 5672 if what == "broker" else MARIADB["port"]
    if not answers(port):
        pytest.skip(f"nothing answers on 127.0.0.1:{port}")
    with TcpProxy("127.0.0.1", port) as proxy:
        if what == "broker":
            stack = make_stack(broker="rabbitmq", extra_env={
                **FAST_BEATS, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}//"})
        else:
            stack = make_stack(database="mariadb", extra_env=FAST_BEATS)
            stack.env["PEEWEE_URL"] = (f"mysql://{MARIADB['user']}@127.0.0.1:{proxy.port}/"
                                       f"{stack.database.name}")
        stack.start()
        _wait_ready(stack, 200, [])
        proxy.cut()
        try:
            body = _wait_ready(stack, 503)
            assert what in body["failing"], body
            assert body["checks"][what]["ok"] is False
            assert "does not answer" in body["checks"][what]["detail"], body
        finally:
            proxy.restore()
        _wait_ready(stack, 200, [])
        stack.stop()  # while the proxy still forwards, so shutdown waits on no dead link
