"""Hostile upload clients against real frontends: they cannot stall it, fill it or confuse it.

Slow bodies are cut off at the rate floor while get_state keeps answering (CherryPy and the
image's gunicorn), upload slots are capped per process and per user, a huge chunk is read in
bounded pieces, framing is strict at the socket level, form content types are refused, and the
507 answer tells no figures or paths.
"""
from __future__ import annotations

import json
import re
import select
import socket
import threading
import time

import pytest
import requests

import processes
from factories import make_bundle
from images import image_command
from test_deploy import peak_memory

pytestmark = pytest.mark.e2e

WINDOW = 3  # seconds of INGEST_INGEST_UPLOAD_RATE_WINDOW in these stacks
TRICKLERS = 48
TRICKLE_LIMIT = 40.0  # seconds a trickling client goes on at most
SLOW_ENV = {"INGEST_INGEST_UPLOAD_RATE_WINDOW": str(WINDOW)}
USER_HEADER = "X-Http-Authed-User"
ADMIN = "operator"  # sees every user's jobs (jobs_of)


def start(make_stack, gunicorn: bool = False, workers: int = 0, **env) -> object:
    """A frontend (CherryPy, or gunicorn as the image runs it) with these settings."""
    options = {"frontend_command": image_command("Dockerfile.frontend")} if gunicorn else {}
    stack = make_stack(workers=workers, extra_env={**SLOW_ENV, "INGEST_AUTH_ADMINS": ADMIN,
                                                   **env}, **options)
    stack.admin("dbsync")
    stack.start_frontend()
    return stack


def read_answer(sock: socket.socket, limit: float = 15.0) -> bytes:
    """Everything the server sends until it closes (or ``limit`` seconds pass)."""
    sock.settimeout(limit)
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except (socket.timeout, ConnectionError):
            break
        if not piece:
            break
        data += piece
    return data


def raw(stack, data: bytes) -> bytes:
    """Send bytes on a fresh connection; return the whole answer."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=15) as sock:
        sock.sendall(data)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return read_answer(sock)


def upload_head(length: int | None, user: str, extra: str = "") -> bytes:
    """The head of a POST /upload."""
    framing = f"Content-Length: {length}\r\n" if length is not None else ""
    return (f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}{extra}"
            f"Content-Type: application/octet-stream\r\n{USER_HEADER}: {user}\r\n\r\n"
            ).encode("latin-1")


def status_of(answer: bytes) -> int | None:
    """The status code of the first response in ``answer``."""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return int(match.group(1)) if match else None


def json_body(answer: bytes) -> dict:
    """The JSON body of a single (Content-Length framed) response."""
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    return json.loads(body[:int(length.group(1))] if length else body)


def trickle(port: int, head: bytes, feed: bytes, answers: list) -> None:
    """Send ``head``, then ``feed`` one byte a second until the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head)
        deadline = time.monotonic() + TRICKLE_LIMIT
        for byte in feed:
            if time.monotonic() > deadline:
                break
            readable, _, _ = select.select([sock], [], [], 1.0)
            if readable:
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
        in_time = time.monotonic() < deadline
        answer = read_answer(sock, 5.0)
    answers.append((answer, in_time))


def trickle_while_polling(stack, heads_and_feeds) -> tuple[list, list]:
    """Run a trickling client per (head, feed) while polling get_state; return polls, answers."""
    answers: list = []
    threads = [threading.Thread(target=trickle, args=(stack.port, head, feed, answers))
               for head, feed in heads_and_feeds]
    for thread in threads:
        thread.start()
    polls = []
    while any(thread.is_alive() for thread in threads):
        try:
            reply = requests.get(f"{stack.url}/get_state", params={"job_id": 1}, timeout=10)
            polls.append(reply.status_code)
        except requests.RequestException as err:
            polls.append(repr(err))
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    assert len(polls) >= 10 and set(polls) <= {200, 404}, polls
    assert len(answers) == len(threads)
    assert all(in_time for _, in_time in answers), "a trickling client was never cut off"
    return polls, [answer for answer, _ in answers]


def jobs_of(stack, highest: int = TRICKLERS + 20) -> list[dict]:
    """Every job the stack has (ids are handed out from 1)."""
    found = []
    for job_id in range(1, highest):
        reply = requests.get(f"{stack.url}/get_state", params={"job_id": job_id}, timeout=10,
                             headers={USER_HEADER: ADMIN})
        if reply.status_code == 200:
            found.append(reply.json())
    return found


@pytest.mark.parametrize("gunicorn", [False, True], ids=["cherrypy", "gunicorn"])
def test_trickling_uploads_neither_stall_get_state_nor_stay(make_stack, gunicorn):
    stack = start(make_stack, gunicorn)
    body = b"x" * 1024 * 1024
    _, answers = trickle_while_polling(
        stack, [(upload_head(len(body), f"slow{index}"), body) for index in range(TRICKLERS)])
    statuses = [status_of(answer) for answer in answers]
    assert set(statuses) <= {400, 503, None}, statuses
    for answer in answers:
        if status_of(answer) == 503:
            assert re.search(rb"(?i)\r\nretry-after: *\d+\r\n", answer), answer
    jobs = jobs_of(stack)
    assert jobs, "no trickling upload was admitted"
    for job in jobs:
        assert job["state"] == "FAILED", job
        assert "interrupted" in job["exception"] and "bytes/s" in job["exception"], job
    assert not stack.volume_files(), stack.volume_files()


@pytest.mark.parametrize("gunicorn", [False, True], ids=["cherrypy", "gunicorn"])
def test_trickling_request_heads_do_not_stall_get_state(make_stack, gunicorn):
    stack = start(make_stack, gunicorn)
    _, answers = trickle_while_polling(
        stack, [(b"", upload_head(1024, f"slow{index}")) for index in range(TRICKLERS)])
    assert {status_of(answer) for answer in answers} <= {400, None}, answers
    assert not jobs_of(stack, 5)


@pytest.mark.parametrize("gunicorn", [False, True], ids=["cherrypy", "gunicorn"])
def test_trickling_move_bodies_do_not_stall_get_state(make_stack, gunicorn):
    stack = start(make_stack, gunicorn)
    document = json.dumps([{"destinationTable": "Files", "name": "x" * 2000}]).encode()
    head = (f"POST /move HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(document)}\r\n\r\n").encode()
    _, answers = trickle_while_polling(stack, [(head, document)] * TRICKLERS)
    assert {status_of(answer) for answer in answers} <= {400, None}, answers
    assert any(b"interrupted" in answer for answer in answers), answers
    assert not jobs_of(stack, 5)


def test_silent_body_ends_at_the_read_timeout(make_stack):
    stack = start(make_stack)
    with socket.create_connection(("127.0.0.1", stack.port), timeout=15) as sock:
        sock.sendall(upload_head(4096, "silent") + b"x" * 10)
        answer = read_answer(sock, 8 * WINDOW)
    assert status_of(answer) == 400, answer
    assert "interrupted" in json_body(answer)["message"]
    (job,) = jobs_of(stack, 5)
    assert job["state"] == "FAILED" and "interrupted" in job["exception"], job
    assert not stack.volume_files()


class Holder:
    """An upload that took a slot and waits (sending nothing) until closed."""

    def __init__(self, stack, user: str):
        self.sock = socket.create_connection(("127.0.0.1", stack.port), timeout=15)
        self.sock.sendall(upload_head(1024 * 1024, user) + b"x" * 100)

    def close(self) -> None:
        """Stop the upload."""
        self.sock.close()


def wait_for_parts(stack, count: int, timeout: float = 30) -> None:
    """Wait until ``count`` uploads are streaming to the volume."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(name.endswith(".part") for name in stack.volume_files()) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{count} uploads did not start: {stack.volume_files()}")


def assert_busy(stack, user: str, words: str) -> None:
    reply = requests.post(f"{stack.url}/upload", data=make_bundle({"a.txt": b"a"}),
                          headers={USER_HEADER: user,
                                   "Content-Type": "application/octet-stream"}, timeout=30)
    assert reply.status_code == 503, reply.text
    assert int(reply.headers["Retry-After"]) >= 1
    assert words in reply.json()["message"]


def test_upload_caps_per_server_and_per_user(make_stack):
    stack = start(make_stack, INGEST_INGEST_UPLOAD_RATE_WINDOW="60",
                  INGEST_INGEST_MAX_UPLOADS="2", INGEST_INGEST_MAX_UPLOADS_PER_USER="1")
    holders = [Holder(stack, "alice")]
    try:
        wait_for_parts(stack, 1)
        assert_busy(stack, "alice", "the most one user may run")
        holders.append(Holder(stack, "bob"))
        wait_for_parts(stack, 2)
        assert_busy(stack, "carol", "its maximum of 2 uploads")
        assert requests.get(stack.url + "/", timeout=10).status_code == 200
    finally:
        for holder in holders:
            holder.close()
    deadline = time.monotonic() + 30
    while stack.volume_files() and time.monotonic() < deadline:
        time.sleep(0.1)
    reply = requests.post(f"{stack.url}/upload", data=make_bundle({"a.txt": b"a"}),
                          headers={USER_HEADER: "alice",
                                   "Content-Type": "application/octet-stream"}, timeout=30)
    assert reply.status_code == 200, reply.text


def test_tus_patch_takes_an_upload_slot(make_stack):
    stack = start(make_stack, INGEST_INGEST_UPLOAD_RATE_WINDOW="60",
                  INGEST_INGEST_MAX_UPLOADS_PER_USER="1")
    holder = Holder(stack, "alice")
    try:
        wait_for_parts(stack, 1)
        tus = {"Tus-Resumable": "1.0.0", USER_HEADER: "alice"}
        created = requests.post(f"{stack.url}/files/", timeout=10,
                                headers={**tus, "Upload-Length": "10"})
        assert created.status_code == 201, created.text
        reply = requests.patch(requests.compat.urljoin(stack.url + "/files/",
                                                       created.headers["Location"]),
                               data=b"0123456789", timeout=10,
                               headers={**tus, "Upload-Offset": "0",
                                        "Content-Type": "application/offset+octet-stream"})
        assert reply.status_code == 503 and int(reply.headers["Retry-After"]) >= 1, reply.text
    finally:
        holder.close()


@pytest.mark.parametrize("gunicorn", [False, True], ids=["cherrypy", "gunicorn"])
def test_one_huge_chunk_is_read_in_bounded_pieces(make_stack, gunicorn):
    stack = start(make_stack, gunicorn)
    pids = processes.children(stack.frontend.pid) if gunicorn else [stack.frontend.pid]
    before = {pid: peak_memory(pid) for pid in pids}
    size = 200 * 1024 * 1024
    piece = b"\0" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", stack.port), timeout=60) as sock:
        sock.sendall(upload_head(None, "big", "Transfer-Encoding: chunked\r\n")
                     + f"{size:x}\r\n".encode())
        for _ in range(size // len(piece)):
            sock.sendall(piece)
        sock.sendall(b"\r\n0\r\n\r\n")
        answer = read_answer(sock, 60)
    assert status_of(answer) == 200, answer
    growth = max(peak_memory(pid) - before[pid] for pid in pids)
    assert growth < size // 8, f"the frontend grew by {growth} bytes for one {size}-byte chunk"
    assert json_body(answer)["state"] == "OK"


# The body of each framing case: a whole request, which a server that reads the framing
# differently from the sender would answer as the next one (404 for /smuggled).
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
SIZE = len(SMUGGLED)
FRAMINGS = {
    "plus sign": f"Content-Length: +{SIZE}\r\n",
    "underscore": f"Content-Length: {str(SIZE)[0]}_{str(SIZE)[1:]}\r\n",
    "length and chunked": f"Content-Length: {SIZE}\r\nTransfer-Encoding: chunked\r\n",
    "duplicate length": f"Content-Length: {SIZE}\r\nContent-Length: {SIZE}\r\n",
    "conflicting lengths": f"Content-Length: {SIZE}\r\nContent-Length: 0\r\n",
    "20 digits": f"Content-Length: {SIZE:020d}\r\n",
}


@pytest.mark.parametrize("gunicorn", [False, True], ids=["cherrypy", "gunicorn"])
def test_ambiguous_framing_is_refused_and_the_connection_stays_in_step(make_stack, gunicorn):
    stack = start(make_stack, gunicorn)
    for case, framing in FRAMINGS.items():
        answer = raw(stack, upload_head(None, "framing", framing) + SMUGGLED
                     + b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert status_of(answer) == 400, (case, answer)
        assert answer.count(b"HTTP/1.1 ") <= 2 and b"404" not in answer, (case, answer)
    assert not jobs_of(stack, 5)


@pytest.mark.parametrize("content_type, hint", [
    ("text/plain", "application/octet-stream"),
    ("multipart/form-data; boundary=x", "curl -F sends a form; use --data-binary @bundle.tar "
                                        "-H 'Content-Type: application/octet-stream'"),
    ("application/x-www-form-urlencoded", "application/x-tar"),
])
def test_form_content_types_are_refused(stack, content_type, hint):
    reply = requests.post(f"{stack.url}/upload", data=make_bundle({"a.txt": b"a"}),
                          headers={"Content-Type": content_type}, timeout=30)
    assert reply.status_code == 415, reply.text
    assert hint in reply.json()["message"]


def test_full_volume_answer_tells_no_figures_or_paths(make_stack):
    stack = start(make_stack, INGEST_INGEST_MIN_FREE_SPACE="1000 Tb")
    reply = requests.post(f"{stack.url}/upload", data=make_bundle({"a.txt": b"a"}),
                          headers={"Content-Type": "application/octet-stream"}, timeout=30)
    assert reply.status_code == 507, reply.text
    message = reply.json()["message"]
    assert not re.search(r"\d", message) and stack.volume not in message, message
