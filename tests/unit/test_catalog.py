"""The embedded metadata store's public functions on a temp SQLite database."""
from __future__ import annotations

import json

import pytest

from factories import TRANSACTION, file_entry
from pacifica.ingest import catalog
from pacifica.ingest.errors import MetadataSinkError


def final_entries(first_id: int, files: dict[str, bytes], extra=()) -> list:
    """Metadata as the pipeline sends it on: file ``_id``s, subdirs relative to data/."""
    entries = list(TRANSACTION) + list(extra)
    for offset, (path, data) in enumerate(files.items()):
        entry = file_entry(path, data, _id=first_id + offset)
        entry["subdir"] = path.rpartition("/")[0]
        entries.append(entry)
    return entries


FILES = {"a/b/one.txt": b"one", "two.txt": b"two!", "a/three.bin": b"\x00" * 3}


def test_a_recorded_transaction_reads_back(database):
    entries = final_entries(100, FILES)
    assert catalog.record(5, "alice", entries)
    transaction = catalog.transaction_of(5)
    assert {key: transaction[key] for key in ("job_id", "submitter", "project", "instrument",
                                              "user", "key_values")} == {
        "job_id": 5, "submitter": "10", "project": "1234a", "instrument": "54",
        "user": "alice", "key_values": {"Tag": "foo"}}
    files = catalog.files_of(5)
    assert [f["_id"] for f in files] == [100, 101, 102]
    assert [(f["subdir"], f["name"], f["size"]) for f in files] == [
        ("a/b", "one.txt", 3), ("", "two.txt", 4), ("a", "three.bin", 3)]
    assert files[0]["hashsum"] == file_entry("x", b"one")["hashsum"]
    assert files[0]["hashtype"] == "sha1" and files[0]["mimetype"] == "application/octet-stream"


def test_a_transaction_is_recorded_once(database):
    assert catalog.record(5, "alice", final_entries(100, FILES))
    assert not catalog.record(5, "alice", final_entries(200, {"other.txt": b"x"}))
    assert [f["_id"] for f in catalog.files_of(5)] == [100, 101, 102]


def test_jobs_do_not_see_each_others_files(database):
    catalog.record(1, "alice", final_entries(10, {"x.txt": b"x"}))
    catalog.record(2, "bob", final_entries(20, {"y.txt": b"y"}))
    assert [f["name"] for f in catalog.files_of(1)] == ["x.txt"]
    assert [f["name"] for f in catalog.files_of(2)] == ["y.txt"]
    assert catalog.transaction_of(3) is None and catalog.files_of(3) == []


def test_forget_removes_a_jobs_transaction_pairs_and_files(database):
    catalog.record(1, "alice", final_entries(10, FILES))
    catalog.record(2, "alice", final_entries(20, {"kept.txt": b"k"}))
    catalog.forget(1)
    assert catalog.transaction_of(1) is None and catalog.files_of(1) == []
    assert catalog.transaction_of(2) is not None and len(catalog.files_of(2)) == 1
    assert catalog.record(1, "alice", final_entries(30, FILES))  # it may be ingested again


def test_values_that_are_not_text_are_kept_as_json(database):
    extra = [{"destinationTable": "TransactionKeyValue", "key": "count", "value": 3},
             {"destinationTable": "TransactionKeyValue", "key": "nested", "value": {"a": [1]}}]
    catalog.record(1, "alice", final_entries(10, {"x": b"x"}, extra))
    assert catalog.transaction_of(1)["key_values"] == {
        "Tag": "foo", "count": "3", "nested": json.dumps({"a": [1]})}


def test_values_too_wide_for_their_columns_are_refused_by_name_and_nothing_is_written(database):
    entries = final_entries(10, {"x.txt": b"x"}, [
        {"destinationTable": "Transactions.project", "value": "p" * 300}])
    entries[-1]["mimetype"] = "m" * 300
    with pytest.raises(MetadataSinkError) as refused:
        catalog.record(1, "alice", entries)
    message = str(refused.value)
    assert "Transactions.project: 300 characters, at most 255" in message
    assert "Files.mimetype of x.txt: 300 characters, at most 255" in message
    assert catalog.transaction_of(1) is None and catalog.files_of(1) == []
