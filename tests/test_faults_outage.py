"""Broker and database outages, made by cutting a TCP proxy that only this test's stack uses.

The proxy forwards to the machine's real RabbitMQ, Redis or MariaDB: the break
is a real network break for our processes, and other users of those servers
see nothing.  Each test skips when the server does not answer on loopback.
"""
from __future__ import annotations

import os
import time

import pytest

from factories import make_bundle
from faults import admin_jobs, answers, wait_until
from harness import MARIADB
from proxy import TcpProxy
from test_e2e_ingest import assert_archived

OUTAGE = 3.0  # seconds; kept short


def _requires(port: int, name: str) -> None:
    if not answers(port):
        pytest.skip(f"{name} does not answer on 127.0.0.1:{port}")


@pytest.mark.parametrize("broker,port,url", [
    ("rabbitmq", 5672, "amqp://guest:guest@127.0.0.1:{port}//"),
    ("redis", 6379, "redis://127.0.0.1:{port}/0"),
])
def test_upload_during_broker_outage_is_kept_and_queued_once(make_stack, broker, port, url):
    _requires(port, broker)
    with TcpProxy("127.0.0.1", port) as proxy:
        stack = make_stack(broker=broker, workers=1, concurrency=1,
                           extra_env={"BROKER_URL": url.format(port=proxy.port)}).start()
        assert stack.ingest(make_bundle({"before.txt": b"before"}))["state"] == "OK"

        files = {"during/outage.bin": os.urandom(100_000)}
        proxy.cut()
        try:
            answer = stack.upload(make_bundle(files))
            assert (answer["state"], answer["task"]) == ("OK", "UPLOADING"), answer
            # "queued" shows for a moment while the frontend's retry tries the broker again
            job = wait_until(lambda: [j for j in admin_jobs(stack)
                                      if j["job_id"] == answer["job_id"]
                                      and j["queue_state"] == "waiting"], 60,
                             "the job to be recorded as waiting for the broker")[0]
            assert (job["state"], job["attempts"]) == ("OK", 0), job
            assert os.path.exists(job["path"]), job
        finally:
            proxy.restore()
        state = stack.wait(answer["job_id"], timeout=120)
        assert state["state"] == "OK" and state["complete"], state
        assert_archived(stack, answer["job_id"], files)
        job = [j for j in admin_jobs(stack) if j["job_id"] == answer["job_id"]][0]
        assert (job["queue_state"], job["attempts"]) == ("done", 1), job
        stack.stop()  # while the proxy still forwards, so shutdown waits on no dead link


def _on_mariadb_through(proxy: TcpProxy, make_stack):
    """A started stack on MariaDB whose processes reach it only through ``proxy``."""
    stack = make_stack(database="mariadb", workers=1, concurrency=1)
    stack.env["PEEWEE_URL"] = (f"mysql://{MARIADB['user']}@127.0.0.1:{proxy.port}/"
                               f"{stack.database.name}")
    return stack.start()


def test_database_outage_answers_503_and_recovers(make_stack):
    _requires(MARIADB["port"], "MariaDB")
    with TcpProxy(MARIADB["host"], MARIADB["port"]) as proxy:
        stack = _on_mariadb_through(proxy, make_stack)
        assert stack.ingest(make_bundle({"before.txt": b"before"}))["state"] == "OK"

        files = {f"d/f{n:02d}.bin": os.urandom(64 * 1024) for n in range(60)}
        job_id = stack.upload(make_bundle(files))["job_id"]
        proxy.cut()
        try:
            started = time.monotonic()
            for reply in (stack.session.get(stack.url + "/get_state", params={"job_id": job_id},
                                            timeout=30),
                          stack.session.post(stack.url + "/upload", data=b"x" * 1000,
                                             timeout=30)):
                assert reply.status_code == 503, reply.text
                body = reply.json()
                assert body["status"].startswith("503")
                assert "database is unavailable" in body["message"], body
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - started)))
        finally:
            proxy.restore()
        wait_until(lambda: stack.session.get(stack.url + "/get_state", params={"job_id": job_id},
                                             timeout=30).status_code == 200,
                   60, "the frontend to answer again")
        state = stack.wait(job_id, timeout=120)
        assert state["state"] == "OK" and state["complete"], state
        assert_archived(stack, job_id, files)
        assert [j["attempts"] for j in admin_jobs(stack) if j["job_id"] == job_id] == [1]
        stack.stop()  # while the proxy still forwards, so shutdown waits on no dead link


def test_the_frontend_reuses_its_database_connections(make_stack):
    """get_state polls borrow pooled connections: opening one per request cost ~26 ms of CPU
    on MariaDB (PyMySQL builds a TLS context for every new connection)."""
    _requires(MARIADB["port"], "MariaDB")
    with TcpProxy(MARIADB["host"], MARIADB["port"]) as proxy:
        stack = _on_mariadb_through(proxy, make_stack)
        job_id = stack.ingest(make_bundle({"one.txt": b"one"}))["job_id"]
        before = proxy.accepted
        for _ in range(100):
            reply = stack.session.get(stack.url + "/get_state", params={"job_id": job_id},
                                      timeout=30)
            assert reply.status_code == 200 and reply.json()["complete"], reply.text
        opened = proxy.accepted - before
        assert opened < 20, f"{opened} database connections opened for 100 polls"
        stack.stop()
