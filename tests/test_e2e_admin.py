"""pacifica-ingest-cmd and schema checks against a real database and a real frontend/worker."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from factories import TRANSACTION, file_entry, make_bundle
from pacifica.ingest import schema

pytestmark = pytest.mark.e2e


def test_dbchk_before_and_after_dbsync(make_stack):
    stack = make_stack()
    assert stack.admin("dbchk", check=False).returncode == 1
    stack.admin("dbsync")
    assert stack.admin("dbchk").returncode == 0
    assert stack.admin("dbchk", "--equal").returncode == 0
    stack.admin("dbsync")  # running it again changes nothing


def test_frontend_refuses_a_database_without_schema(make_stack):
    stack = make_stack()
    process = stack.start_frontend(wait=False)
    assert process.wait(timeout=60) == 3
    assert "run `pacifica-ingest-cmd dbsync`" in stack.log("frontend")


def test_frontend_refuses_an_old_schema(make_stack):
    stack = make_stack(database="sqlite")
    stack.admin("dbsync")
    path = stack.database.url.split(":///", 1)[1]
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE ingest_schema_version SET value = 0 WHERE part = 'major'")
        connection.execute("UPDATE ingest_schema_version SET value = 5 WHERE part = 'minor'")
    assert stack.start_frontend(wait=False).wait(timeout=60) == 3
    assert (f"schema is 0.5 but this service needs {schema.SCHEMA_MAJOR}.{schema.SCHEMA_MINOR}"
            in stack.log("frontend"))


def test_job_command_fails_a_stuck_job_by_hand(make_stack):
    stack = make_stack(workers=0).start()  # nobody takes the job: it is stuck in the queue
    job_id = stack.upload(make_bundle({"j.txt": b"j"}))["job_id"]
    result = stack.admin("job", "--job-id", str(job_id), "--state", "FAILED", "--exception",
                         "stuck: failed by the operator")
    assert json.loads(result.stdout)["state"] == "FAILED"
    state = stack.state(job_id)
    assert (state["state"], state["exception"], state["complete"]) == (
        "FAILED", "stuck: failed by the operator", True)


def test_jobs_says_what_a_queued_job_waits_for(make_stack):
    stack = make_stack(workers=0).start()  # no worker has ever been seen
    job_id = stack.upload(make_bundle({"w.txt": b"w"}))["job_id"]
    waiting = stack.state(job_id)["waiting_for"]
    assert waiting.startswith("a worker: none has been seen"), waiting

    table = stack.admin("jobs").stdout.splitlines()
    assert "WAITING FOR" in table[0]
    (row,) = [line for line in table[1:] if line.split()[0] == str(job_id)]
    assert "a worker: none has been seen yet" in row, table
    (listed,) = json.loads(stack.admin("jobs", "--json").stdout)
    assert listed["waiting_for"] == waiting

    stack.start_worker()  # once a worker takes it, nothing is waited for
    assert stack.wait(job_id)["state"] == "OK"
    (done,) = json.loads(stack.admin("jobs", "--json").stdout)
    assert "waiting_for" not in done
    assert "a worker:" not in stack.admin("jobs").stdout


def test_retry_ingests_a_corrected_bundle(stack, tmp_path):
    data = b"retry me"
    broken = TRANSACTION + [file_entry("r.txt", data, hashsum="0" * 40)]
    failed = stack.ingest(make_bundle({"r.txt": data}, metadata=broken))
    assert failed["state"] == "FAILED"
    fixed = tmp_path / "fixed.tar"
    fixed.write_bytes(make_bundle({"r.txt": data}))
    stack.admin("retry", "--job_id", str(failed["job_id"]), "--path", str(fixed))
    state = stack.wait(failed["job_id"])
    assert state["state"] == "OK", state
    listing = json.loads(stack.admin("files", "--job-id", str(failed["job_id"])).stdout)
    assert [entry["name"] for entry in listing["files"]] == ["r.txt"]
    with open(stack.archive_path(listing["files"][0]["_id"]), "rb") as handle:
        assert handle.read() == data


@pytest.mark.parametrize("args, words", [
    (["job"], "--job-id"),
    (["job", "--job-id", "x"], "job_id must be an integer from 1"),
    (["job", "--job-id", "1", "--state", "MAYBE"], "invalid choice"),
    (["job", "--job-id", "987654321", "--state", "FAILED"], "job ID 987654321 does not exist"),
    (["retry", "--job_id", "987654321"], "does not exist"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_get_clear_errors(stack, args, words):
    result = stack.admin(*args, check=False)
    assert result.returncode != 0
    assert words in result.stderr


def test_retry_without_a_bundle_says_so(stack):
    job_id = stack.ingest(make_bundle({"gone.txt": b"g"}))["job_id"]  # the bundle is removed when done
    result = stack.admin("retry", "--job_id", str(job_id), "--force", check=False)
    assert result.returncode != 0
    assert f"the bundle of job {job_id} is no longer on the volume" in result.stderr


def test_console_scripts_have_help():
    for module in ("pacifica.ingest.server", "pacifica.ingest.admin"):
        result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0 and "usage:" in result.stdout
