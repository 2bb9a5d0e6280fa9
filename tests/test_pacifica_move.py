"""``POST /move`` on the embedded defaults with ``[move] allowed_roots`` set: files beneath a
root copied into the local archive under new ids, bad requests answered with JSON errors, and
``pacifica-ingest-cmd retry --move``.  (What a move refuses: tests/test_security_move.py.)"""
from __future__ import annotations

import os

import pytest

from factories import TRANSACTION, file_entry

pytestmark = pytest.mark.e2e


def place(stack, relative: str, data: bytes) -> str:
    """Put a file beneath the stack's allowed root (where a move may take it from)."""
    path = os.path.join(stack.base, "incoming", relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def move(stack, entries: list) -> dict:
    """POST /move and wait for the job's outcome."""
    reply = stack.move(entries)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert (answer["state"], answer["task"]) == ("OK", "UPLOADING"), answer
    return stack.wait(answer["job_id"])


def test_move_copies_files_under_new_ids(move_stack):
    first = place(move_stack, "run-1/a.bin", os.urandom(20_000))
    second = place(move_stack, "run-1/b.txt", b"bee")
    entries = TRANSACTION + [
        file_entry("run/a.bin", open(first, "rb").read(), source=first),
        file_entry("run/b.txt", b"bee", source=second),
    ]

    state = move(move_stack, entries)

    assert state["state"] == "OK", state
    assert (state["task"], state["task_percent"], state["complete"]) == ("ingest metadata",
                                                                         "100.0", True)
    listing = move_stack.files(state["job_id"])["files"]
    assert [(f["subdir"], f["name"]) for f in listing] == [("run", "a.bin"), ("run", "b.txt")]
    for entry, source in zip(listing, (first, second)):
        with open(move_stack.archive_path(entry["_id"]), "rb") as stored, \
                open(source, "rb") as old:
            assert stored.read() == old.read()


def test_move_takes_nothing_from_outside_the_allowed_roots(move_stack, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    entries = TRANSACTION + [file_entry("s.txt", b"secret", source=str(outside)),
                             file_entry("t.txt", b"t", source="../../etc/passwd")]
    before = move_stack.archive_files()
    state = move(move_stack, entries)

    assert state["state"] == "FAILED", state
    assert state["task"] == "load metadata"
    assert f"'{outside}': not beneath a directory [move] allowed_roots lists" in state["exception"]
    assert "'../../etc/passwd': a source must be an absolute path" in state["exception"]
    assert move_stack.archive_files() == before


def test_move_entry_without_source_fails_at_load_metadata(move_stack):
    state = move(move_stack, TRANSACTION + [file_entry("a.txt", b"a")])

    assert state["state"] == "FAILED", state
    assert state["task"] == "load metadata"
    assert "missing source" in state["exception"]


@pytest.mark.parametrize("body, words", [
    (b'[{"destinationTable": "Files", ', "Invalid JSON document"),
    (b'{"destinationTable": "Transactions.submitter", "value": 10}', "a JSON list"),
])
def test_bad_move_request_is_a_json_400(move_stack, body, words):
    reply = move_stack.move(body)

    assert reply.status_code == 400, reply.text
    answer = reply.json()
    assert answer["status"].startswith("400")
    assert words in answer["message"]


def test_admin_retry_move_after_the_file_arrives(move_stack):
    late = os.path.join(move_stack.base, "incoming", "late.bin")
    entries = TRANSACTION + [file_entry("late.bin", b"late", source=late)]
    failed = move(move_stack, entries)
    assert failed["state"] == "FAILED", failed
    assert failed["task"] == "move files"
    assert f"'{late}': does not exist" in failed["exception"]

    place(move_stack, "late.bin", b"late")
    move_stack.admin("retry", "--job_id", str(failed["job_id"]), "--move")
    state = move_stack.wait(failed["job_id"])

    assert state["state"] == "OK", state
    listing = move_stack.files(failed["job_id"])["files"]
    assert [f["name"] for f in listing] == ["late.bin"]
    with open(move_stack.archive_path(listing[0]["_id"]), "rb") as stored:
        assert stored.read() == b"late"
