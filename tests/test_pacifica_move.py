"""``POST /move`` on the embedded defaults: files already in the local archive taken under new ids,
bad requests answered with JSON errors, and ``pacifica-ingest-cmd retry --move``."""
from __future__ import annotations

import os

import pytest

from factories import TRANSACTION, file_entry

pytestmark = pytest.mark.e2e


def place(stack, relative: str, data: bytes) -> str:
    """Put a file inside the stack's local archive (where a move may take it from)."""
    path = os.path.join(stack.archive, relative)
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


def test_move_links_archived_files_under_new_ids(stack):
    relative = place(stack, "incoming/run-1/a.bin", os.urandom(20_000))
    absolute = place(stack, "incoming/run-1/b.txt", b"bee")
    entries = TRANSACTION + [
        file_entry("run/a.bin", open(relative, "rb").read(), source="incoming/run-1/a.bin"),
        file_entry("run/b.txt", b"bee", source=absolute),
    ]

    state = move(stack, entries)

    assert state["state"] == "OK", state
    assert (state["task"], state["task_percent"], state["complete"]) == ("ingest metadata",
                                                                         "100.0", True)
    listing = stack.files(state["job_id"])["files"]
    assert [(f["subdir"], f["name"]) for f in listing] == [("run", "a.bin"), ("run", "b.txt")]
    for entry, source in zip(listing, (relative, absolute)):
        with open(stack.archive_path(entry["_id"]), "rb") as stored, open(source, "rb") as old:
            assert stored.read() == old.read()


def test_move_takes_nothing_from_outside_the_archive(stack, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    entries = TRANSACTION + [file_entry("s.txt", b"secret", source=str(outside)),
                             file_entry("t.txt", b"t", source="../../etc/passwd")]
    state = move(stack, entries)

    assert state["state"] == "FAILED", state
    assert state["task"] == "move files"
    assert f"{outside} is not in the local archive" in state["exception"]


def test_move_entry_without_source_fails_at_load_metadata(stack):
    state = move(stack, TRANSACTION + [file_entry("a.txt", b"a")])

    assert state["state"] == "FAILED", state
    assert state["task"] == "load metadata"
    assert "missing source" in state["exception"]


@pytest.mark.parametrize("body, words", [
    (b'[{"destinationTable": "Files", ', "Invalid JSON document"),
    (b'{"destinationTable": "Transactions.submitter", "value": 10}', "a JSON list"),
])
def test_bad_move_request_is_a_json_400(stack, body, words):
    reply = stack.move(body)

    assert reply.status_code == 400, reply.text
    answer = reply.json()
    assert answer["status"].startswith("400")
    assert words in answer["message"]


def test_admin_retry_move_after_the_file_arrives(stack):
    entries = TRANSACTION + [file_entry("late.bin", b"late", source="incoming/late.bin")]
    failed = move(stack, entries)
    assert failed["state"] == "FAILED", failed
    assert failed["task"] == "move files"

    place(stack, "incoming/late.bin", b"late")
    stack.admin("retry", "--job_id", str(failed["job_id"]), "--move")
    state = stack.wait(failed["job_id"])

    assert state["state"] == "OK", state
    listing = stack.files(failed["job_id"])["files"]
    assert [f["name"] for f in listing] == ["late.bin"]
    with open(stack.archive_path(listing[0]["_id"]), "rb") as stored:
        assert stored.read() == b"late"
