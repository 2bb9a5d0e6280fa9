"""tus uploads and the volume cannot be used to fill the service (real frontend and worker).

Declared lengths are reserved against the free space and a per-user quota, Upload-Metadata is
capped, Location never comes from the request, HEAD never writes, and failed bundles leave the
volume after ``keep_failed``.
"""
from __future__ import annotations

import base64
import http.server
import io
import json
import os
import shutil
import socket
import threading
import time

import pytest
import requests

from factories import TRANSACTION, file_entry, make_bundle
from harness import Stack
from pacifica.ingest.client.upload import IngestClient, UploadFailed

pytestmark = pytest.mark.e2e

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}
USER = "X-Http-Authed-User"
GB = 10**9
QUOTA = 100_000
ADMIN = {"INGEST_AUTH_ADMINS": "root"}  # the harness follows every user's jobs as root


def as_admin(stack: Stack) -> Stack:
    """Let the harness's own requests (get_state while waiting) come from the admin root."""
    stack.session.headers[USER] = "root"
    return stack


def create(stack, length: int, user: str = "alice", **headers) -> requests.Response:
    """POST /files/ as ``user``."""
    return requests.post(stack.url + "/files/", timeout=30,
                         headers={**TUS, USER: user, "Upload-Length": str(length), **headers})


def url_of(stack, reply: requests.Response) -> str:
    """The upload's URL from a 201 (its Location is relative to the server)."""
    assert reply.status_code == 201, reply.text
    return stack.url + reply.headers["Location"]


def delete(url: str, user: str = "alice") -> int:
    """DELETE an upload as ``user``; the status."""
    return requests.delete(url, headers={**TUS, USER: user}, timeout=30).status_code


def assert_refused(reply: requests.Response, status: int, words: str) -> None:
    """A JSON error naming the problem, with no free-space figures and no volume path."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    message = reply.json()["message"]
    assert words in message and "/" not in message, message


def job_rows(stack) -> list[dict]:
    """Every job row, as ``pacifica-ingest-cmd jobs`` prints it."""
    return json.loads(stack.admin("jobs", "--json", "--limit", "100000").stdout)


def snapshot(folder: str) -> dict:
    """Every file below ``folder`` with its size and modification time."""
    found = {}
    for where, _, names in os.walk(folder):
        for name in names:
            status = os.stat(os.path.join(where, name))
            found[os.path.join(where, name)] = (status.st_size, status.st_mtime_ns)
    return found


def wait_for(predicate, what: str, timeout: float = 60.0):
    """Poll ``predicate`` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def quota_stack(tmp_path_factory):
    """A frontend and worker with a small per-user tus quota."""
    running = Stack(str(tmp_path_factory.mktemp("quota")), extra_env={
        "INGEST_INGEST_TUS_USER_QUOTA": str(QUOTA), **ADMIN}).start()
    as_admin(running)
    yield running
    running.stop()


def test_a_hundred_huge_creations_are_refused_by_the_quota(quota_stack):
    before = snapshot(os.path.join(quota_stack.volume, "tus"))
    replies = [create(quota_stack, 70 * GB, user="mallory") for _ in range(100)]
    for reply in replies:
        assert_refused(reply, 413, "quota")
    created = set(snapshot(os.path.join(quota_stack.volume, "tus"))) - set(before)
    assert not [name for name in created if not name.endswith("reservations.lock")], created


def test_the_quota_is_per_user_and_released_by_delete(quota_stack):
    first = url_of(quota_stack, create(quota_stack, 60_000, user="alice"))
    assert_refused(create(quota_stack, 60_000, user="alice"), 413, "quota")
    other = url_of(quota_stack, create(quota_stack, 60_000, user="bob"))  # bob has his own
    assert delete(first, "alice") == 204
    url_of(quota_stack, create(quota_stack, 60_000, user="alice"))
    assert delete(other, "bob") == 204


def test_received_bytes_and_landing_release_the_quota(quota_stack):
    body = make_bundle({"data.bin": os.urandom(50_000)})
    assert 50_000 < len(body) < QUOTA - 30_000
    url = url_of(quota_stack, create(quota_stack, len(body), user="carol"))
    later = QUOTA - len(body) + 20_000  # fits once 20 000 bytes have arrived
    assert_refused(create(quota_stack, later, user="carol"), 413, "quota")
    reply = requests.patch(url, data=body[:30_000], timeout=30,
                           headers={**PATCH, USER: "carol", "Upload-Offset": "0"})
    assert reply.status_code == 204, reply.text
    waiting = url_of(quota_stack, create(quota_stack, later, user="carol"))
    assert_refused(create(quota_stack, QUOTA - later, user="carol"), 413, "quota")
    reply = requests.patch(url, data=body[30_000:], timeout=30,
                           headers={**PATCH, USER: "carol", "Upload-Offset": "30000"})
    assert reply.status_code == 204 and reply.headers.get("Ingest-Job-Id"), reply.headers
    state = quota_stack.wait(int(reply.headers["Ingest-Job-Id"]))
    assert state["state"] == "OK" and state["complete"], state
    url_of(quota_stack, create(quota_stack, QUOTA - later, user="carol"))  # landed: released
    assert delete(waiting, "carol") == 204


def test_expiry_releases_the_quota(quota_stack):
    url = url_of(quota_stack, create(quota_stack, 60_000, user="dave"))
    upload_id = url.rsplit("/", 1)[1]
    idle_since = time.time() - 8 * 24 * 3600  # longer ago than the default tus_expiry (7 days)
    for name in os.listdir(os.path.join(quota_stack.volume, "tus")):
        if name.startswith(upload_id):
            os.utime(os.path.join(quota_stack.volume, "tus", name), (idle_since, idle_since))
    assert requests.head(url, headers={**TUS, USER: "dave"}, timeout=30).status_code == 410
    later = url_of(quota_stack, create(quota_stack, 60_000, user="dave"))  # the expired one: 0
    assert_refused(create(quota_stack, 60_000, user="dave"), 413, "quota")  # this one counts
    assert delete(later, "dave") == 204


def test_upload_metadata_is_capped_and_validated(quota_stack):
    name = base64.b64encode("données.tar".encode("utf-8")).decode("ascii")
    url = url_of(quota_stack, create(quota_stack, 10, **{"Upload-Metadata": f"filename {name}"}))
    head = requests.head(url, headers={**TUS, USER: "alice"}, timeout=30)
    assert head.headers["Upload-Metadata"] == f"filename {name}"
    huge = "x " + base64.b64encode(b"y" * 300_000).decode("ascii")
    assert_refused(create(quota_stack, 10, **{"Upload-Metadata": huge}), 400, "Upload-Metadata")
    for bad in ("k\u00e9y " + name, "a:b " + name, f"filename {name},filename {name}",
                "filename not*base64"):
        assert_refused(create(quota_stack, 10, **{"Upload-Metadata": bad.encode("latin-1")}),
                       400, "Upload-Metadata")


def test_location_is_relative_whatever_host_says(quota_stack):
    reply = create(quota_stack, 10, Host="evil.example", **{
        "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "gopher"})
    location = reply.headers["Location"]
    assert reply.status_code == 201 and location.startswith("/files/"), reply.headers
    assert reply.json()["location"] == location and "evil" not in location


def test_head_never_lands_an_upload_the_sweeper_does(make_stack):
    stack = as_admin(make_stack(extra_env={"INGEST_INGEST_TUS_EXPIRY": "3600", **ADMIN}).start())
    # (tus_expiry 3600: the sweeper passes every 5 minutes, so only HEAD could land it)
    body = make_bundle({"landed.txt": b"landed by the sweeper\n"})
    url = url_of(stack, create(stack, len(body), user="erin"))
    reply = requests.patch(url, data=body[:-1], timeout=30,
                           headers={**PATCH, USER: "erin", "Upload-Offset": "0"})
    assert reply.status_code == 204 and "Ingest-Job-Id" not in reply.headers
    # the last byte reached the disk, then the frontend died before landing the upload
    with open(os.path.join(stack.volume, "tus", url.rsplit("/", 1)[1] + ".part"), "ab") as part:
        part.write(body[-1:])
    before_jobs, before_volume = job_rows(stack), snapshot(stack.volume)
    for _ in range(2):
        head = requests.head(url, headers={**TUS, USER: "erin"}, timeout=30)
        assert head.status_code == 200 and head.headers["Upload-Offset"] == str(len(body))
        assert "Ingest-Job-Id" not in head.headers
    assert job_rows(stack) == before_jobs and snapshot(stack.volume) == before_volume

    stack.kill(stack.frontend)
    stack.env["INGEST_INGEST_TUS_EXPIRY"] = "40"  # the sweeper now passes every 10 s
    stack.start_frontend()

    def job_named() -> str | None:
        return requests.head(url, headers={**TUS, USER: "erin"},
                             timeout=30).headers.get("Ingest-Job-Id")

    state = stack.wait(int(wait_for(job_named, "the sweeper to land the upload")))
    assert state["state"] == "OK" and state["complete"], state
    assert stack.archived(state["job_id"]) == {"landed.txt": b"landed by the sweeper\n"}


def failing_bundle() -> bytes:
    data = b"the real bytes"
    return make_bundle({"bad.txt": data},
                       metadata=TRANSACTION + [file_entry("bad.txt", data, hashsum="0" * 40)])


def recover(stack, keep_failed: str) -> list[int]:
    """``pacifica-ingest-cmd recover`` with this keep_failed; the jobs whose bundle it removed."""
    stack.env["INGEST_INGEST_KEEP_FAILED"] = keep_failed
    return json.loads(stack.admin("recover").stdout)["removed_bundles"]


def test_failed_bundles_leave_the_volume_after_keep_failed(make_stack):
    stack = make_stack(extra_env={"INGEST_INGEST_KEEP_FAILED": "3600"}).start()
    os.makedirs(stack.volume, exist_ok=True)
    bystander = os.path.join(stack.volume, "9999.tar")  # no failed job owns it: stays
    with open(bystander, "wb") as handle:
        handle.write(b"not failed")
    open_upload = url_of(stack, create(stack, 1000))
    job_id = stack.upload(failing_bundle())["job_id"]
    assert stack.wait(job_id)["state"] == "FAILED"
    bundle = os.path.join(stack.volume, f"{job_id}.tar")
    assert recover(stack, "3600") == [] and os.path.exists(bundle)  # it failed just now
    wait_for(lambda: job_id in recover(stack, "2"), "the job to be 2 s past its failure")
    assert not os.path.exists(bundle) and recover(stack, "0") == []
    row = next(row for row in job_rows(stack) if row["job_id"] == job_id)
    assert row["path"] == "" and row["bundle_removed"] and row["state"] == "FAILED", row
    assert os.path.exists(bystander)
    head = requests.head(open_upload, headers={**TUS, USER: "alice"}, timeout=30)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == "0"


def test_keep_failed_zero_lets_the_janitor_remove_it_at_its_next_pass(make_stack):
    stack = make_stack(extra_env={"INGEST_INGEST_KEEP_FAILED": "0"}).start()
    job_id = stack.upload(failing_bundle())["job_id"]
    assert stack.wait(job_id)["state"] == "FAILED"
    wait_for(lambda: not [name for name in stack.volume_files()
                          if name.startswith(f"{job_id}.")], "the janitor's next pass")
    row = next(row for row in job_rows(stack) if row["job_id"] == job_id)
    assert row["path"] == "" and row["bundle_removed"], row


def test_creations_cannot_promise_more_than_the_free_space(make_stack):
    stack = make_stack(workers=0, extra_env={
        "INGEST_INGEST_MAX_BUNDLE_SIZE": "100 Tb", "INGEST_INGEST_TUS_USER_QUOTA": "0",
        "INGEST_INGEST_PUBLIC_URL": "https://ingest.example.org/base/"}).start()
    replies = [create(stack, 70 * GB) for _ in range(100)]
    accepted = [reply for reply in replies if reply.status_code == 201]
    assert len(accepted) <= 1  # the volume holds 70 GB once at most
    for reply in replies:
        if reply.status_code != 201:
            assert_refused(reply, 507, "not enough space")
    for reply in accepted:
        location = reply.headers["Location"]
        assert location.startswith("https://ingest.example.org/base/files/"), location
        upload = stack.url + location.split("/base", 1)[1]
        assert delete(upload) == 204

    share = int((shutil.disk_usage(stack.volume).free - 2**30) * 0.6)  # min_free_space: 1 GiB
    first = create(stack, share)
    assert first.status_code == 201, first.text
    assert_refused(create(stack, share), 507, "not enough space")
    upload = stack.url + first.headers["Location"].split("/base", 1)[1]
    assert delete(upload) == 204
    second = create(stack, share)
    assert second.status_code == 201, second.text
    upload = stack.url + second.headers["Location"].split("/base", 1)[1]
    assert delete(upload) == 204

    # a POSTed bundle still streaming holds its length too
    with socket.create_connection(("127.0.0.1", stack.port), timeout=30) as post:
        post.sendall(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {share}\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n".encode("ascii")
                     + b"\0" * 1024)
        wait_for(lambda: [row for row in job_rows(stack) if row["queue_state"] == "receiving"],
                 "the POST to start")
        assert_refused(create(stack, share), 507, "not enough space")
    wait_for(lambda: not [row for row in job_rows(stack) if row["queue_state"] == "receiving"
                          and row["state"] == "OK"], "the broken POST to fail")
    broken = [row for row in job_rows(stack) if row["state"] == "FAILED"]
    assert [(row["path"], row["bundle_removed"]) for row in broken] == [(None, False)]
    third = create(stack, share)
    assert third.status_code == 201, third.text


class GivenLocation(http.server.BaseHTTPRequestHandler):
    """A tus server in miniature: creations get ``location``, one PATCH completes the upload."""

    location = "/files/abc"
    requests_seen: list = []

    def do_POST(self):  # pylint: disable=invalid-name
        """Creation: 201 with the chosen Location."""
        self.requests_seen.append(("POST", self.path))
        self.send_response(201)
        self.send_header("Location", self.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PATCH(self):  # pylint: disable=invalid-name
        """Take the chunk, claim the whole upload arrived, name job 7."""
        self.requests_seen.append(("PATCH", self.path))
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.send_header("Upload-Offset", "100")
        self.send_header("Ingest-Job-Id", "7")
        self.end_headers()

    def log_message(self, *_args):
        """Quiet."""


@pytest.fixture
def given_location():
    """A GivenLocation server on a free loopback port; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GivenLocation)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    GivenLocation.requests_seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.mark.parametrize("location", ["http://evil.example/files/abc",
                                      "https://127.0.0.1:{port}/files/abc",
                                      "http://127.0.0.1:99999999/files/abc", "//evil.example/x"])
def test_the_client_refuses_a_foreign_location(given_location, location):
    GivenLocation.location = location.format(port=given_location.rsplit(":", 1)[1])
    client = IngestClient(given_location, retries=0)
    with pytest.raises(UploadFailed, match="refusing to send the bundle there"):
        client.tus_upload(io.BytesIO(b"x" * 100), 100, 100, lambda _offset: None)
    assert GivenLocation.requests_seen == [("POST", "/files/")]


@pytest.mark.parametrize("location", ["/files/abc", "http://127.0.0.1:{port}/files/abc"])
def test_the_client_follows_a_location_on_its_server(given_location, location):
    GivenLocation.location = location.format(port=given_location.rsplit(":", 1)[1])
    client = IngestClient(given_location, retries=0)
    assert client.tus_upload(io.BytesIO(b"x" * 100), 100, 100, lambda _offset: None) == 7
    assert GivenLocation.requests_seen == [("POST", "/files/"), ("PATCH", "/files/abc")]
