"""Every rejection end to end: FAILED with a message naming the file and reason, archive untouched."""
from __future__ import annotations

import json

import pytest

from factories import TRANSACTION, file_entry, make_bundle
from rejections import CASES

pytestmark = pytest.mark.e2e

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
