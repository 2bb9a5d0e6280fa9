"""Every rejection end to end: FAILED with a message naming the file and reason, archive untouched."""
from __future__ import annotations

import hashlib
import json
import tarfile

import pytest

from factories import TRANSACTION, file_entry, make_bundle, member

pytestmark = pytest.mark.e2e

GOOD = {"a/b/foo.txt": b"foo\n", "a/c/bar.txt": b"bar\n" * 100}


def entries(**changes) -> list:
    """GOOD's metadata with the foo.txt entry changed."""
    result = [file_entry(path, data) for path, data in GOOD.items()]
    result[0].update(changes)
    return TRANSACTION + result


def without(key: str) -> list:
    """GOOD's metadata with a key removed from the foo.txt entry."""
    result = entries()
    del result[len(TRANSACTION)][key]
    return result


def truncated(body: bytes) -> bytes:
    """Cut the bundle inside the bytes of its first data member."""
    return body[:512 + 2]


def cut_after_last_member(body: bytes) -> bytes:
    """Drop the end-of-archive blocks (a tar cut exactly at a member boundary)."""
    stripped = body.rstrip(b"\0")
    return stripped + b"\0" * (-len(stripped) % 512)


CASES = {
    "not a tar": (b"this is not a tar file at all" * 40, "open tar", "not a tar"),
    "truncated in a member": (truncated(make_bundle(GOOD, metadata_last=False)), "open tar",
                              "truncated"),
    "truncated at a member boundary": (cut_after_last_member(make_bundle(GOOD)), "open tar",
                                       "truncated"),
    "no metadata.txt": (make_bundle(GOOD, include_metadata=False), "load metadata",
                        "no metadata.txt"),
    "metadata not JSON": (make_bundle(GOOD, metadata_raw=b"{not json"), "load metadata",
                          "not valid JSON"),
    "metadata not a list": (make_bundle(GOOD, metadata_raw=b'{"a": 1}'), "load metadata",
                            "JSON list"),
    "Files entry missing name": (make_bundle(GOOD, metadata=without("name")), "load metadata",
                                 "missing name"),
    "Files entry missing subdir": (make_bundle(GOOD, metadata=without("subdir")),
                                   "load metadata", "missing subdir"),
    "Files entry missing size": (make_bundle(GOOD, metadata=without("size")), "load metadata",
                                 "missing size"),
    "Files entry missing hashtype": (make_bundle(GOOD, metadata=without("hashtype")),
                                     "load metadata", "missing hashtype"),
    "Files entry missing hashsum": (make_bundle(GOOD, metadata=without("hashsum")),
                                    "load metadata", "missing hashsum"),
    "unknown hashtype": (make_bundle(GOOD, metadata=entries(hashtype="crc99")), "load metadata",
                         "unknown hashtype 'crc99'"),
    "listed file with no member": (
        make_bundle(GOOD, metadata=entries() + [file_entry("a/ghost.txt", b"boo")]),
        "load metadata", "data/a/ghost.txt"),
    "member not listed": (make_bundle({**GOOD, "a/stowaway.bin": b"x"},
                                      metadata=entries()), "load metadata",
                          "data/a/stowaway.bin: in the bundle but not listed"),
    "absolute member": (make_bundle(GOOD, extras=[member("/etc/evil", b"x")]), "open tar",
                        "/etc/evil: absolute path"),
    "dot-dot member": (make_bundle(GOOD, extras=[member("data/../../evil", b"x")]), "open tar",
                       "data/../../evil: contains '..'"),
    "symlink member": (make_bundle(GOOD, extras=[member("data/link", kind=tarfile.SYMTYPE,
                                                        linkname="/etc/passwd")]),
                       "open tar", "data/link: is a symbolic link"),
    "hard link member": (make_bundle(GOOD, extras=[member("data/hard", kind=tarfile.LNKTYPE,
                                                          linkname="data/a/b/foo.txt")]),
                         "open tar", "data/hard: is a hard link"),
    "device member": (make_bundle(GOOD, extras=[member("data/dev", kind=tarfile.CHRTYPE)]),
                      "open tar", "data/dev: is a device"),
    "fifo member": (make_bundle(GOOD, extras=[member("data/fifo", kind=tarfile.FIFOTYPE)]),
                    "open tar", "data/fifo: is a FIFO"),
    "duplicate member": (make_bundle(GOOD, extras=[member("data/a/b/foo.txt", b"foo\n")]),
                         "open tar", "data/a/b/foo.txt: appears more than once"),
    "sha1 mismatch": (make_bundle(GOOD, metadata=entries(hashsum="0" * 40)), "ingest files",
                      "data/a/b/foo.txt: sha1 mismatch, expected " + "0" * 40 + " got "
                      + hashlib.sha1(b"foo\n").hexdigest()),
    "size mismatch": (make_bundle(GOOD, metadata=entries(size=3)), "load metadata",
                      "data/a/b/foo.txt: size mismatch, metadata says 3 bytes, bundle has 4"),
    "unexpected top-level member": (make_bundle(GOOD, extras=[member("notes.txt", b"hi")]),
                                    "open tar", "notes.txt: unexpected member"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rejected_bundle_fails_cleanly(stack, case):
    body, task, message = CASES[case]
    archive_before = stack.archive_files()
    state = stack.ingest(body)
    assert state["state"] == "FAILED", state
    assert state["complete"] is True
    assert state["task"] == task, state
    assert message in state["exception"], state["exception"]
    assert stack.archive_files() == archive_before
    assert stack.files(state["job_id"])["files"] == []
    assert stack.session.get(stack.url + "/").status_code == 200


def test_hash_mismatch_late_in_bundle_rolls_back_earlier_files(stack):
    """Files stored before the bad one are removed again: nothing half-ingested remains."""
    files = {f"many/f{n:03d}.bin": bytes([n]) * 2000 for n in range(20)}
    metadata = TRANSACTION + [file_entry(path, data) for path, data in files.items()]
    metadata[-1]["hashsum"] = "f" * 40
    archive_before = stack.archive_files()
    state = stack.ingest(make_bundle(files, metadata=metadata))
    assert state["state"] == "FAILED" and "many/f019.bin: sha1 mismatch" in state["exception"]
    assert stack.archive_files() == archive_before


def test_every_problem_is_listed_at_once(stack):
    metadata = TRANSACTION + [
        {"destinationTable": "Files", "name": "a.txt", "subdir": "data/"},
        {"destinationTable": "Files", "name": "b.txt", "subdir": "data/", "size": 1,
         "hashtype": "nope", "hashsum": "00"},
    ]
    state = stack.ingest(make_bundle({"a.txt": b"a", "b.txt": b"b"}, metadata=metadata))
    assert state["state"] == "FAILED"
    assert "missing size, hashtype, hashsum" in state["exception"]
    assert "unknown hashtype 'nope'" in state["exception"]


def test_same_file_listed_twice(stack):
    data = b"twice"
    metadata = TRANSACTION + [file_entry("t.txt", data), file_entry("t.txt", data)]
    state = stack.ingest(make_bundle({"t.txt": data}, metadata=metadata))
    assert state["state"] == "FAILED" and "listed twice" in state["exception"]


def test_metadata_with_wrong_entry_types(stack):
    raw = json.dumps([1, {"no": "table"}, {"destinationTable": "Transactions.project"}]).encode()
    state = stack.ingest(make_bundle({"x": b"x"}, metadata_raw=raw))
    assert state["state"] == "FAILED"
    for expected in ("entry 0: is a int", "entry 1: has no destinationTable",
                     "entry 2: Transactions.project has no 'value'"):
        assert expected in state["exception"]
