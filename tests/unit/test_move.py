"""``POST /move`` and the move pipeline in this process: files named by path beneath
[move] allowed_roots are copied into the archive, checked as bundle members are."""
from __future__ import annotations

import json
import os

import pytest

from factories import TRANSACTION, file_entry
from pacifica.ingest import archive, catalog, jobs

from .conftest import archive_listing

pytestmark = pytest.mark.parametrize("setting_overrides", [{"MOVE_ALLOWED_ROOTS": "/"}])


@pytest.fixture
def instrument(tmp_path):
    """Where an instrument left its files (beneath the allowed root)."""
    folder = tmp_path / "instrument"
    folder.mkdir()
    return folder


def request_move(client, recorder, entries: list) -> int:
    """POST the move request; it is queued as a move.  Returns the job id."""
    answer = client.post("/move", json.dumps(entries).encode(), content_type="application/json")
    assert answer.status == 200, answer.body
    job_id = answer.json()["job_id"]
    assert recorder.jobs[-1] == (job_id, "move")
    return job_id


def test_named_files_are_copied_into_the_archive(settings, client, recorder, run_recorded,
                                                 instrument):
    data = {"run/a.bin": os.urandom(5000), "run/b.txt": b"bee\n"}
    entries = list(TRANSACTION)
    for path, content in data.items():
        source = instrument / path.replace("/", "_")
        source.write_bytes(content)
        entries.append(file_entry(path, content, source=str(source)))
    job_id = request_move(client, recorder, entries)
    run_recorded()
    job = jobs.get(job_id)
    assert (job.state, job.task, job.complete) == ("OK", "ingest metadata", True), job.exception
    backend = archive.from_settings(settings)
    rows = catalog.files_of(job_id)
    assert len(rows) == len(data)
    for row in rows:
        with backend.read(row["_id"]) as stored:
            assert stored.read() == data[f"{row['subdir']}/{row['name']}"]
    assert all((instrument / path.replace("/", "_")).exists() for path in data)  # copied


def test_bytes_that_differ_from_the_metadata_take_the_whole_move_back(settings, client, recorder,
                                                                      run_recorded, instrument):
    good, bad = instrument / "good.bin", instrument / "bad.bin"
    good.write_bytes(b"g" * 3000)
    bad.write_bytes(b"changed after the metadata was written")
    entries = TRANSACTION + [file_entry("good.bin", b"g" * 3000, source=str(good)),
                             file_entry("bad.bin", b"what the instrument wrote first",
                                        source=str(bad))]
    job_id = request_move(client, recorder, entries)
    run_recorded()
    job = jobs.get(job_id)
    assert (job.state, job.task) == ("FAILED", "move files"), job.exception
    assert "bad.bin" in job.exception
    assert archive_listing(settings) == [] and catalog.files_of(job_id) == []


@pytest.mark.parametrize("source, task, words", [
    ("relative/path", "load metadata", "a source must be an absolute path"),
    ("/srv/../etc/passwd", "load metadata", "'.' and '..' are not allowed"),
    ("/no/such/file/anywhere", "move files", "does not exist"),
])
def test_a_source_it_may_not_take_fails_the_job(settings, client, recorder, run_recorded,
                                                source, task, words):
    job_id = request_move(client, recorder, TRANSACTION + [file_entry("x", b"x", source=source)])
    run_recorded()
    job = jobs.get(job_id)
    assert (job.state, job.task) == ("FAILED", task) and words in job.exception, job.exception
    assert archive_listing(settings) == []


def test_the_services_own_files_are_never_taken(settings, client, recorder, run_recorded):
    database = settings.database.url.split(":///", 1)[1]
    with open(database, "rb") as handle:
        content = handle.read()
    job_id = request_move(client, recorder,
                          TRANSACTION + [file_entry("db", content, source=database)])
    run_recorded()
    job = jobs.get(job_id)
    assert job.state == "FAILED" and "lies among the service's own files" in job.exception
    assert archive_listing(settings) == []
