"""Resumable uploads (tus 1.0.0 at /files/) against a real frontend and worker."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import signal
import time

import pytest
import requests
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

from factories import TRANSACTION, file_entry, make_bundle
from netcut import CuttingRelay

pytestmark = pytest.mark.e2e

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}
KIB = 1024


def create(stack, length: int, headers: dict | None = None) -> str:
    """POST /files/; return the upload's URL (its Location is relative to the server)."""
    reply = requests.post(stack.url + "/files/", timeout=30,
                          headers={**TUS, "Upload-Length": str(length), **(headers or {})})
    assert reply.status_code == 201, reply.text
    assert reply.headers["Location"].startswith("/files/"), reply.headers
    return stack.url + reply.headers["Location"]


def patch(url: str, offset: int, data: bytes, **headers) -> requests.Response:
    """One PATCH at an offset."""
    return requests.patch(url, data=data, timeout=30,
                          headers={**PATCH, "Upload-Offset": str(offset), **headers})


def offset_of(url: str) -> int:
    """The server's offset for an upload."""
    reply = requests.head(url, headers=TUS, timeout=30)
    assert reply.status_code == 200, reply.status_code
    return int(reply.headers["Upload-Offset"])


def assert_json_error(reply: requests.Response, status: int, words: str) -> None:
    """Errors are JSON with a message a person can act on, as for the plain POST."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    body = reply.json()
    assert body["status"].startswith(str(status)) and words in body["message"], body


def test_tuspy_upload_cut_midway_resumes_after_restart(stack):
    """tuspy sends chunks, the link breaks inside a chunk, the frontend restarts, tuspy resumes."""
    files = {"a/b/first.bin": os.urandom(600 * KIB), "日本語/スペース と & 😀.dat": os.urandom(900 * KIB),
             "a/c/small.txt": b"small\n", "empty.bin": b""}
    body = make_bundle(files)
    chunk = 256 * KIB
    relay = CuttingRelay(stack.port)
    try:
        uploader = TusClient(relay.url + "/files/").uploader(
            file_stream=io.BytesIO(body), chunk_size=chunk, metadata={"filename": "bundle.tar"})
        uploader.upload_chunk()
        uploader.upload_chunk()
        assert uploader.offset == 2 * chunk
        relay.cut_after(100 * KIB)  # the link dies a hundred KiB into the third chunk
        with pytest.raises((TusUploadFailed, TusCommunicationError)):
            uploader.upload_chunk()
        assert relay.cuts == 1
        # the server keeps the bytes that arrived before the break (once its thread has read
        # them: the relay delivered them all before closing)
        deadline = time.monotonic() + 30
        while (kept := offset_of(uploader.url)) == 2 * chunk and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 2 * chunk < kept < 2 * chunk + 100 * KIB

        stack.kill(stack.frontend, signal.SIGKILL)
        stack.start_frontend()

        resumed = TusClient(relay.url + "/files/").uploader(
            file_stream=io.BytesIO(body), url=uploader.url, chunk_size=chunk)
        assert resumed.offset == kept  # tuspy asked HEAD for the offset
        resumed.upload()
    finally:
        relay.close()
    job_id = int(resumed.request.response_headers["ingest-job-id"])
    state = stack.wait(job_id)
    assert state["state"] == "OK" and state["complete"], state
    assert stack.archived(job_id) == files
    head = requests.head(uploader.url, headers=TUS, timeout=30)
    assert head.headers["Ingest-Job-Id"] == str(job_id)
    assert head.headers["Upload-Offset"] == str(len(body))


def test_options_advertise_the_extensions(stack):
    reply = requests.options(stack.url + "/files/", timeout=30)
    assert reply.status_code == 204
    assert reply.headers["Tus-Version"] == "1.0.0"
    assert set(reply.headers["Tus-Extension"].split(",")) >= {"creation", "termination",
                                                              "checksum", "expiration"}
    assert "sha1" in reply.headers["Tus-Checksum-Algorithm"].split(",")


def test_chunks_checksums_and_job_id(stack):
    body = make_bundle({"x/y.txt": b"checked " * 5000})
    url = create(stack, len(body), {"Upload-Metadata": "filename " +
                                    base64.b64encode("bündle.tar".encode()).decode()})
    head = requests.head(url, headers=TUS, timeout=30)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("0", str(len(body)))
    assert head.headers["Upload-Metadata"].startswith("filename ")
    assert "Upload-Expires" in head.headers and head.headers["Cache-Control"] == "no-store"

    first, rest = body[:10_000], body[10_000:]
    wrong = base64.b64encode(hashlib.sha1(b"not this").digest()).decode()
    assert_json_error(patch(url, 0, first, **{"Upload-Checksum": f"sha1 {wrong}"}), 460,
                      "does not match its Upload-Checksum")
    assert offset_of(url) == 0  # the bad chunk was dropped
    good = base64.b64encode(hashlib.sha256(first).digest()).decode()
    reply = patch(url, 0, first, **{"Upload-Checksum": f"sha256 {good}"})
    assert reply.status_code == 204 and reply.headers["Upload-Offset"] == "10000"
    assert "Ingest-Job-Id" not in reply.headers

    assert_json_error(patch(url, 0, rest), 409, "has 10000 bytes")
    assert_json_error(patch(url, 10_000, rest + b"x"), 413, "runs past")
    reply = patch(url, 10_000, rest)
    assert reply.status_code == 204 and reply.headers["Upload-Offset"] == str(len(body))
    job_id = int(reply.headers["Ingest-Job-Id"])
    assert stack.wait(job_id)["state"] == "OK"
    assert stack.archived(job_id) == {"x/y.txt": b"checked " * 5000}


def test_protocol_errors_are_json(stack):
    url = create(stack, 100)
    reply = requests.post(stack.url + "/files/", headers={"Upload-Length": "5"}, timeout=30)
    assert_json_error(reply, 412, "Tus-Resumable: 1.0.0")
    assert reply.headers["Tus-Version"] == "1.0.0"
    assert_json_error(requests.post(stack.url + "/files/", headers=TUS, timeout=30), 400,
                      "Upload-Length header is required")
    assert_json_error(requests.post(stack.url + "/files/", timeout=30,
                                    headers={**TUS, "Upload-Length": "0"}), 400, "positive")
    assert_json_error(requests.patch(url, data=b"abc", timeout=30, headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/octet-stream"}), 415,
        "application/offset+octet-stream")
    assert_json_error(patch(url, 0, b"abc", **{"Upload-Checksum": "crc99 AAAA"}), 400,
                      "not supported")
    assert_json_error(patch(url, 0, b"abc", **{"X-Http-Authed-User": "mallory"}), 404,
                      "does not exist")
    missing = stack.url + "/files/" + "0" * 32
    assert_json_error(patch(missing, 0, b"abc"), 404, "does not exist")
    assert_json_error(requests.delete(stack.url + "/files/..%2Fetc", headers=TUS, timeout=30),
                      404, "does not exist")
    assert offset_of(url) == 0


def test_termination(stack):
    url = create(stack, 1000)
    assert patch(url, 0, b"z" * 400).status_code == 204
    upload_id = url.rsplit("/", 1)[1]
    assert any(name.startswith(upload_id) for name in os.listdir(os.path.join(stack.volume,
                                                                              "tus")))
    assert requests.delete(url, headers=TUS, timeout=30).status_code == 204
    assert requests.head(url, headers=TUS, timeout=30).status_code == 404
    assert not any(name.startswith(upload_id)
                   for name in os.listdir(os.path.join(stack.volume, "tus")))


def test_failing_bundle_fails_as_a_posted_one(stack):
    data = b"the real bytes"
    metadata = TRANSACTION + [file_entry("bad.txt", data, hashsum="0" * 40)]
    body = make_bundle({"bad.txt": data}, metadata=metadata)
    url = create(stack, len(body))
    reply = patch(url, 0, body)
    state = stack.wait(int(reply.headers["Ingest-Job-Id"]))
    assert state["state"] == "FAILED" and "sha1 mismatch" in state["exception"], state


def test_size_limit_and_expiry(make_stack):
    stack = make_stack(workers=0, extra_env={"INGEST_INGEST_MAX_BUNDLE_SIZE": "64 KiB",
                                             "INGEST_INGEST_TUS_EXPIRY": "2"}).start()
    options = requests.options(stack.url + "/files/", timeout=30)
    assert options.headers["Tus-Max-Size"] == str(64 * KIB)
    assert_json_error(requests.post(stack.url + "/files/", timeout=30, headers={
        **TUS, "Upload-Length": str(64 * KIB + 1)}), 413, "limit of this service")

    url = create(stack, 10_000)
    assert patch(url, 0, b"p" * 3000).status_code == 204
    upload_id = url.rsplit("/", 1)[1]
    tus_folder = os.path.join(stack.volume, "tus")
    deadline = time.monotonic() + 60
    while any(name.startswith(upload_id) for name in os.listdir(tus_folder)):
        assert time.monotonic() < deadline, os.listdir(tus_folder)
        time.sleep(0.2)
    assert requests.head(url, headers=TUS, timeout=30).status_code in (404, 410)
