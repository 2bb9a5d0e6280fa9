"""Idempotency-Key on real processes: a retried submission never becomes a second ingest."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import threading
import time

import pymysql
import pytest

from factories import make_bundle
from faults import admin_jobs, wait_until
from harness import MARIADB
from pacifica.ingest import db
from pacifica.ingest.config import DatabaseSettings
from pacifica.ingest.idempotency import IdempotencyKey

pytestmark = pytest.mark.e2e

FILES = {"idem/a.bin": os.urandom(20_000), "idem/b.txt": b"once only"}


def post(stack, body: bytes, key: str | None, user: str | None = None):
    headers = {"Content-Type": "application/octet-stream"}
    if key is not None:
        headers["Idempotency-Key"] = key
    if user is not None:
        headers["X-Http-Authed-User"] = user
    return stack.session.post(stack.url + "/upload", data=body, headers=headers, timeout=60)


def archived_count(stack) -> int:
    return len([path for path in stack.archive_files() if not path.endswith(".part")])


def test_same_key_twice_is_one_job_and_one_copy(make_stack):
    stack = make_stack().start()
    body = make_bundle(FILES)
    first = post(stack, body, "deposit-2026-12-01-a")
    assert first.status_code == 200, first.text
    job_id = first.json()["job_id"]
    assert stack.wait(job_id)["state"] == "OK"
    again = post(stack, body, "deposit-2026-12-01-a")
    assert again.status_code == 200, again.text
    assert again.json()["job_id"] == job_id and again.json()["complete"] is True
    assert [job["job_id"] for job in admin_jobs(stack)] == [job_id]
    assert archived_count(stack) == len(FILES)
    assert len(stack.files(job_id)["files"]) == len(FILES)

    other = post(stack, make_bundle({"idem/c.txt": b"another bundle"}), "deposit-2026-12-01-a")
    assert other.status_code == 422, other.text
    assert "was already used for another request" in other.json()["message"]
    mallory = post(stack, body, "deposit-2026-12-01-a", user="mallory")
    assert mallory.status_code == 200 and mallory.json()["job_id"] != job_id  # keys are per user
    assert post(stack, body, "x" * 256).status_code == 400
    assert post(stack, body, "bad key").status_code == 400


def test_ten_concurrent_requests_with_one_key_make_one_job(make_stack):
    stack = make_stack(extra_env={"INGEST_INGEST_MAX_UPLOADS_PER_USER": "16"}).start()
    body = make_bundle(FILES)
    answers = []

    def send():
        reply = post(stack, body, "the-same-key")
        answers.append((reply.status_code, reply.json().get("job_id")))

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 10 and {status for status, _ in answers} == {200}, answers
    job_ids = {job_id for _, job_id in answers}
    assert len(job_ids) == 1, answers
    job_id = job_ids.pop()
    assert stack.wait(job_id)["state"] == "OK"
    assert [job["job_id"] for job in admin_jobs(stack)] == [job_id]
    assert archived_count(stack) == len(FILES)


def test_after_the_ttl_the_key_makes_a_new_job(make_stack):
    stack = make_stack(extra_env={"INGEST_INGEST_IDEMPOTENCY_TTL": "2"}).start()
    body = make_bundle(FILES)
    first = post(stack, body, "short-lived").json()["job_id"]
    stack.wait(first)
    time.sleep(3)
    stack.admin("recover")  # the sweep (the frontend's janitor may have run it already)
    database = db.bind(DatabaseSettings(url=stack.database.url))
    try:
        assert IdempotencyKey.select().count() == 0, "the expired key was not swept"
    finally:
        database.close()
    second = post(stack, body, "short-lived").json()["job_id"]
    assert second != first
    assert stack.wait(second)["state"] == "OK"


@contextlib.contextmanager
def job_table_held(stack):
    """Hold a write lock on the job table (SQLite or MariaDB) while the block runs."""
    if stack.database.kind == "sqlite":
        connection = sqlite3.connect(stack.database.url.split(":///", 1)[1], timeout=30,
                                     isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        release = "ROLLBACK"
    else:
        connection = pymysql.connect(**MARIADB, database=stack.database.name, autocommit=True)
        connection.cursor().execute("LOCK TABLES ingest_jobs WRITE")
        release = "UNLOCK TABLES"
    try:
        yield
    finally:
        if stack.database.kind == "sqlite":
            connection.execute(release)
        else:
            connection.cursor().execute(release)
        connection.close()


def test_frontend_killed_after_the_body_landed_the_retry_gets_the_job(make_stack):
    """The body is on the volume, the frontend dies before answering: recovery queues the job
    (it is not failed as interrupted) and the client's retry with its key gets it, once."""
    stack = make_stack().start()
    body = make_bundle(FILES)
    head = (f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\nIdempotency-Key: crash-key\r\n\r\n").encode()
    client = socket.create_connection(("127.0.0.1", stack.port), timeout=30)
    try:
        client.sendall(head + body[:-1000])
        wait_until(lambda: any(name.endswith(".tar.part") for name in stack.volume_files()), 30,
                   "the body to start landing")
        with job_table_held(stack):  # the frontend's bookkeeping after the body waits
            client.sendall(body[-1000:])
            wait_until(lambda: any(name.endswith(".tar") for name in stack.volume_files()), 30,
                       "the whole body to land")
            stack.kill(stack.frontend, signal.SIGKILL)
    finally:
        client.close()
    stack.start_frontend()  # its start-up sweep finds the dead frontend's job
    retry = post(stack, body, "crash-key")
    assert retry.status_code == 200, retry.text
    job_id = retry.json()["job_id"]
    state = stack.wait(job_id)
    assert state["state"] == "OK" and state["complete"], state
    assert [job["job_id"] for job in admin_jobs(stack)] == [job_id]
    assert stack.archived(job_id) == FILES
    assert archived_count(stack) == len(FILES)


def test_tus_creation_with_one_key_is_one_upload(make_stack):
    stack = make_stack().start()
    body = make_bundle(FILES)
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": str(len(body)),
               "Idempotency-Key": "tus-key"}
    first = stack.session.post(stack.url + "/files/", headers=headers, timeout=30)
    again = stack.session.post(stack.url + "/files/", headers=headers, timeout=30)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert first.headers["Location"] == again.headers["Location"]
    other = stack.session.post(stack.url + "/files/", timeout=30,
                               headers=dict(headers, **{"Upload-Length": "999"}))
    assert other.status_code == 422, other.text
    url = stack.url + first.headers["Location"]
    reply = stack.session.patch(url, data=body, timeout=60, headers={
        "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": "0"})
    assert reply.status_code == 204, reply.text
    job_id = int(reply.headers["Ingest-Job-Id"])
    assert stack.wait(job_id)["state"] == "OK"
    replay = stack.session.post(stack.url + "/files/", headers=headers, timeout=30)
    assert replay.status_code == 201 and replay.headers["Ingest-Job-Id"] == str(job_id)
    assert replay.headers["Upload-Offset"] == str(len(body))
