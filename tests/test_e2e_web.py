"""The HTTP surface over a real server: JSON everywhere, streaming uploads, interrupted bodies."""
from __future__ import annotations

import http.client
import json
import socket
import time

import pytest
import requests

from factories import make_bundle

pytestmark = pytest.mark.e2e


def test_root_says_up(stack):
    reply = requests.get(stack.url + "/", timeout=10)
    assert reply.status_code == 200
    assert reply.json() == {"message": "Pacifica Ingest Up and Running"}


@pytest.mark.parametrize("query, status, words", [
    ("", 400, "job_id is required"),
    ("?job_id=abc", 400, "must be an integer"),
    ("?job_id=987654321", 404, "job ID 987654321 does not exist"),
])
def test_get_state_errors_are_json(stack, query, status, words):
    reply = requests.get(stack.url + "/get_state" + query, timeout=10)
    assert reply.status_code == status
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert words in body["message"]
    assert set(body) == {"status", "message", "traceback", "version"}
    head = requests.head(stack.url + "/get_state" + query, timeout=10)
    assert head.status_code == status and not head.content


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/no/such/page", 404),
    ("DELETE", "/upload", 405),
    ("PUT", "/upload", 405),
    ("POST", "/get_state?job_id=1", 405),
    ("DELETE", "/get_state", 405),
])
def test_routing_errors_are_json(stack, method, path, status):
    reply = requests.request(method, stack.url + path, timeout=10)
    assert reply.status_code == status
    assert reply.json()["status"].startswith(str(status))


def test_empty_body_is_refused(stack):
    reply = requests.post(stack.url + "/upload", data=b"", timeout=10)
    assert reply.status_code == 400
    assert "empty" in reply.json()["message"]


def test_chunked_body_is_accepted(stack):
    body = make_bundle({"chunked/one.bin": b"1" * 100_000})
    chunks = (body[i:i + 7000] for i in range(0, len(body), 7000))
    reply = requests.post(stack.url + "/upload", data=chunks, timeout=60)
    assert reply.status_code == 200, reply.text
    assert stack.wait(reply.json()["job_id"])["state"] == "OK"


def _raw_post(stack, declared: int, sent: bytes) -> None:
    """Send headers declaring ``declared`` bytes, send fewer, and hang up."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall((f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}"
                      "\r\nContent-Type: application/octet-stream\r\n\r\n").encode() + sent)
        time.sleep(0.3)


def _newest_job(stack, after: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = stack.session.get(stack.url + "/get_state", params={"job_id": after + 1})
        if reply.status_code == 200 and reply.json()["state"] == "FAILED":
            return reply.json()
        time.sleep(0.1)
    raise AssertionError(f"job {after + 1} never failed: {reply.text}")


def test_client_gone_mid_body_fails_the_job_and_removes_the_partial(stack):
    last = stack.upload(make_bundle({"before": b"b"}))["job_id"]
    stack.wait(last)
    _raw_post(stack, declared=1_000_000, sent=b"x" * 300_000)
    state = _newest_job(stack, last)
    assert "interrupted" in state["exception"]
    assert "300000 bytes of 1000000" in state["exception"]
    assert not [name for name in stack.volume_files() if name.startswith(f"{last + 1}.")]
    assert requests.get(stack.url + "/", timeout=10).status_code == 200


def test_state_is_served_while_an_upload_streams(stack):
    """A slow upload holds one thread; get_state still answers meanwhile."""
    body = make_bundle({"slow.bin": b"s" * 2_000_000})
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    connection.putrequest("POST", "/upload")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    connection.send(body[:1_000_000])
    for _ in range(5):
        assert requests.get(stack.url + "/", timeout=10).status_code == 200
    connection.send(body[1_000_000:])
    reply = connection.getresponse()
    assert reply.status == 200
    job_id = json.loads(reply.read())["job_id"]
    connection.close()
    assert stack.wait(job_id)["state"] == "OK"
