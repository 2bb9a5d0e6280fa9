"""Completion webhooks to a real HTTP receiver: signed, exactly once per job, retried."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading

import pytest

from factories import TRANSACTION, file_entry, make_bundle
from faults import admin_jobs, wait_until

pytestmark = pytest.mark.e2e

SECRET = "a-long-random-shared-secret"


class Receiver:
    """An HTTP server that records POSTs and answers each with the next planned status."""

    def __init__(self, statuses=()):
        self.planned = list(statuses)
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = receiver.planned.pop(0) if receiver.planned else 200
                    receiver.calls.append({"body": body, "headers": dict(self.headers),
                                           "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict]:
        """The documents of the calls answered 2xx."""
        with self.lock:
            return [json.loads(call["body"]) for call in self.calls if call["status"] < 300]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def _stack(make_stack, receiver):
    return make_stack(extra_env={"INGEST_NOTIFY_URLS": receiver.url,
                                 "INGEST_NOTIFY_SECRET": SECRET}).start()


def test_one_signed_delivery_per_job_ok_or_failed(make_stack, receiver):
    stack = _stack(make_stack, receiver)
    good = stack.ingest(make_bundle({"a.txt": b"fine"}))["job_id"]
    bad = make_bundle({"b.txt": b"12345"}, metadata=TRANSACTION + [file_entry("b.txt", b"54321")])
    failed = stack.ingest(bad)["job_id"]
    wait_until(lambda: len(receiver.calls) >= 2, 30, "two deliveries")
    with receiver.lock:
        calls = list(receiver.calls)
    for call in calls:
        expected = "sha256=" + hmac.new(SECRET.encode(), call["body"], hashlib.sha256).hexdigest()
        assert call["headers"]["X-Ingest-Signature"] == expected
    documents = {doc["job"]["job_id"]: doc for doc in receiver.delivered()}
    assert set(documents) == {good, failed}
    assert documents[good]["event"] == "job.completed"
    assert documents[good]["job"]["complete"] is True
    receipt = stack.session.get(stack.url + "/receipt", params={"job_id": good}, timeout=30)
    assert documents[good]["receipt_sha256"] == receipt.json()["sha256"]
    assert documents[failed]["event"] == "job.failed"
    assert documents[failed]["receipt_sha256"] is None
    assert "mismatch" in documents[failed]["job"]["exception"]
    for call in calls:
        assert call["headers"]["X-Ingest-Delivery"] == json.loads(call["body"])["delivery_id"]
    listed = {job["job_id"]: job["notifications"] for job in admin_jobs(stack)}
    assert [n["state"] for n in listed[good]] == ["delivered"]


def test_retried_after_errors_and_a_worker_restart_delivered_once(make_stack, receiver):
    receiver.planned = [500, 500]
    stack = _stack(make_stack, receiver)
    job_id = stack.ingest(make_bundle({"c.txt": b"retry me"}))["job_id"]
    wait_until(lambda: len(receiver.calls) >= 1, 30, "the first attempt")
    stack.kill(stack.workers[0])  # the retry waits in the broker while no worker runs
    stack.workers.clear()
    stack.start_worker()
    wait_until(lambda: receiver.delivered(), 60, "the delivery after two 500s")
    assert [doc["job"]["job_id"] for doc in receiver.delivered()] == [job_id]
    assert [call["status"] for call in receiver.calls] == [500, 500, 200]
    ids = {call["headers"]["X-Ingest-Delivery"] for call in receiver.calls}
    assert len(ids) == 1, "every attempt is the same delivery"
    notes = [job["notifications"] for job in admin_jobs(stack) if job["job_id"] == job_id][0]
    assert [(n["state"], n["attempts"]) for n in notes] == [("delivered", 3)]
