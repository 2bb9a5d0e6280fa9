"""End to end over HTTP: a real frontend and a real Celery worker on the chosen backends."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from factories import TRANSACTION, file_entry, make_bundle

pytestmark = pytest.mark.e2e


def assert_archived(stack, job_id: int, files: dict[str, bytes]) -> None:
    """Every file is in the archive byte for byte, under the id the catalog gives it."""
    listing = stack.files(job_id)["files"]
    assert len(listing) == len(files)
    for entry in listing:
        path = f"{entry['subdir']}/{entry['name']}" if entry["subdir"] else entry["name"]
        with open(stack.archive_path(entry["_id"]), "rb") as handle:
            assert handle.read() == files[path], path
        assert entry["size"] == len(files[path])


def test_good_bundle_is_archived_and_recorded(stack):
    files = {
        "a/b/foo.txt": b"foo\n",
        "a/c/bar.txt": b"bar" * 1000,
        "日本語/スペース と & 😀.dat": os.urandom(70_000),
        "empty.bin": b"",
        "/".join(f"level{n}" for n in range(30)) + "/deep.txt": b"deep",
    }
    state = stack.ingest(make_bundle(files))
    assert state["state"] == "OK", state
    assert (state["task"], state["task_percent"], state["complete"]) == ("ingest metadata",
                                                                         "100.0", True)
    assert_archived(stack, state["job_id"], files)
    listing = stack.files(state["job_id"])
    assert listing["transaction"]["project"] == "1234a"
    assert listing["transaction"]["key_values"] == {"Tag": "foo"}
    assert not [name for name in stack.volume_files() if name.startswith(f"{state['job_id']}.")]


@pytest.mark.parametrize("hashtype", ["sha1", "sha256", "md5", "sha512", "blake2b"])
def test_hash_algorithms(stack, hashtype):
    files = {"x/file.bin": os.urandom(5000)}
    state = stack.ingest(make_bundle(files, hashtype=hashtype))
    assert state["state"] == "OK", state
    assert_archived(stack, state["job_id"], files)


def test_metadata_first_or_last(stack):
    files = {"a.txt": b"first"}
    for last in (True, False):
        state = stack.ingest(make_bundle(files, metadata_last=last))
        assert state["state"] == "OK", state


@pytest.mark.parametrize("subdir", ["data/a/b/", "a/b", "data//a//b", "/a/b/", "./a/b"])
def test_subdir_spellings(stack, subdir):
    data = b"spelling"
    metadata = TRANSACTION + [file_entry("a/b/f.txt", data, subdir=subdir)]
    state = stack.ingest(make_bundle({"a/b/f.txt": data}, metadata=metadata))
    assert state["state"] == "OK", state
    assert stack.files(state["job_id"])["files"][0]["subdir"] == "a/b"


def test_directory_literally_named_data(stack):
    """pacifica-cli stores a folder named data as data/data/x with subdir 'data'."""
    data = b"inside a folder named data"
    metadata = TRANSACTION + [file_entry("data/x", data, subdir="data")]
    state = stack.ingest(make_bundle({"data/x": data}, metadata=metadata))
    assert state["state"] == "OK", state
    assert stack.files(state["job_id"])["files"][0]["subdir"] == "data"
    assert_archived(stack, state["job_id"], {"data/x": data})


def test_ingest_path_is_the_same_as_upload(stack):
    state = stack.wait(stack.upload(make_bundle({"z.txt": b"z"}), path="/ingest")["job_id"])
    assert state["state"] == "OK", state


def test_post_answer_is_the_job_state(stack):
    answer = stack.upload(make_bundle({"q.txt": b"q"}))
    assert set(answer) == {"job_id", "state", "task", "task_percent", "complete", "updated",
                           "created", "exception"}
    assert isinstance(answer["job_id"], int) and isinstance(answer["task_percent"], str)
    assert answer["state"] == "OK" and answer["task"] == "UPLOADING"
    float(answer["task_percent"])
    stack.wait(answer["job_id"])


def test_auth_header_user_is_recorded(stack):
    stack.session.headers["X-Http-Authed-User"] = "alice"  # her jobs are hers alone to see
    try:
        state = stack.ingest(make_bundle({"u.txt": b"u"}))
        assert stack.files(state["job_id"])["transaction"]["user"] == "alice"
    finally:
        del stack.session.headers["X-Http-Authed-User"]
    state = stack.ingest(make_bundle({"v.txt": b"v"}))
    assert stack.files(state["job_id"])["transaction"]["user"] == "root"


def test_file_ids_are_unique_across_jobs(stack):
    ids = []
    for n in range(3):
        state = stack.ingest(make_bundle({f"f{n}/a": b"a", f"f{n}/b": b"b"}))
        ids += [entry["_id"] for entry in stack.files(state["job_id"])["files"]]
    assert len(ids) == len(set(ids)) == 6


def test_larger_bundle_bytes_survive(stack):
    files = {f"big/part{n}.bin": os.urandom(3 * 1024 * 1024 + n) for n in range(3)}
    state = stack.ingest(make_bundle(files))
    assert state["state"] == "OK", state
    for entry in stack.files(state["job_id"])["files"]:
        with open(stack.archive_path(entry["_id"]), "rb") as handle:
            assert hashlib.sha1(handle.read()).hexdigest() == entry["hashsum"]


def test_get_files_pages(stack):
    files = {f"p/{n:02d}.txt": b"%d" % n for n in range(25)}
    job_id = stack.ingest(make_bundle(files))["job_id"]
    whole = stack.files(job_id)["files"]

    def page(**params):
        reply = stack.session.get(stack.url + "/get_files", params={"job_id": job_id, **params},
                                  timeout=30)
        return reply.status_code, reply.json()

    status, first = page(limit=10)
    assert status == 200 and (first["offset"], first["limit"], first["total"]) == (0, 10, 25)
    assert first["files"] == whole[:10]
    assert page(offset=20, limit=10)[1]["files"] == whole[20:]
    assert page(offset=25)[1]["files"] == []
    assert page()[1]["limit"] == 1000
    assert [entry["_id"] for entry in whole] == sorted(entry["_id"] for entry in whole)
    for bad in ({"offset": "-1"}, {"offset": "x"}, {"limit": "0"}, {"limit": "10001"},
                {"limit": "1e3"}, {"offset": "9" * 40}):
        status, body = page(**bad)
        assert status == 400, (bad, body)
        assert body["traceback"] == "" and next(iter(bad)) in body["message"]


@pytest.mark.timeout(1200)
def test_a_hundred_thousand_files_ingest_byte_identical(stack, tmp_path):
    """The streaming worker end to end: every one of 100,000 tiny files (0 or 1 byte) is in
    the archive as sent, under the id the catalog gives it (its memory: bench/, not here)."""
    count = 100_000

    def body(number: int) -> bytes:
        return b"" if number % 7 == 0 else bytes([number % 251])

    digests = {data: hashlib.sha1(data).hexdigest() for data in map(body, range(251 * 7))}
    path = tmp_path / "many.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for number in range(count):
            info = tarfile.TarInfo(f"data/d{number // 1000:03d}/f{number:06d}")
            info.size = len(body(number))
            tar.addfile(info, io.BytesIO(body(number)))
        listing = json.dumps(TRANSACTION + [
            {"destinationTable": "Files", "name": f"f{number:06d}",
             "subdir": f"data/d{number // 1000:03d}", "size": len(body(number)),
             "hashtype": "sha1", "hashsum": digests[body(number)]}
            for number in range(count)]).encode()
        info = tarfile.TarInfo("metadata.txt")
        info.size = len(listing)
        tar.addfile(info, io.BytesIO(listing))
    del listing
    with open(path, "rb") as handle:
        job_id = stack.upload(handle)["job_id"]
    state = stack.wait(job_id, timeout=1100)
    assert (state["state"], state["complete"]) == ("OK", True), state
    page = stack.session.get(f"{stack.url}/jobs/{job_id}", timeout=60)
    assert page.status_code == 200 and f"and {count - 1000} more" in page.text
    receipt = stack.session.get(f"{stack.url}/receipt", params={"job_id": job_id}, timeout=300)
    assert receipt.status_code == 200, receipt.text[:500]  # ~19 MB, in parts of 256 KiB
    assert receipt.json()["receipt"]["file_count"] == count
    files = stack.files(job_id)["files"]
    assert len(files) == count
    for entry in files:
        number = int(entry["name"][1:])
        assert entry["subdir"] == f"d{number // 1000:03d}"
        with open(stack.archive_path(entry["_id"]), "rb") as stored:
            assert stored.read() == body(number), entry
