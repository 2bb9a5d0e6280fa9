"""pacifica-ingest-cmd within the job state machine, and bundle files written without
following planted links: real admin processes against a real frontend and worker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from factories import TRANSACTION, file_entry, make_bundle
from faults import admin_jobs, archive_names, job_expecting, partial_upload, wait_until
from harness import Database, Stack
from pacifica.ingest import db, jobs, recovery, schema
from pacifica.ingest.config import DatabaseSettings
from test_e2e_ingest import assert_archived

pytestmark = pytest.mark.e2e

GONE = "is no longer on the volume (failed bundles are kept for [ingest] keep_failed seconds)"


def failed_job(stack, name: str = "r.txt", data: bytes = b"retry me") -> int:
    """A job FAILED by a wrong checksum; its bundle stays on the volume."""
    broken = TRANSACTION + [file_entry(name, data, hashsum="0" * 40)]
    state = stack.ingest(make_bundle({name: data}, metadata=broken))
    assert state["state"] == "FAILED", state
    return state["job_id"]


def job_row(stack, job_id: int) -> dict:
    return [job for job in admin_jobs(stack) if job["job_id"] == job_id][0]


@pytest.fixture(scope="module")
def idle(tmp_path_factory):
    """A frontend without workers: every job it accepts stays queued, unclaimed."""
    running = Stack(str(tmp_path_factory.mktemp("idle")), workers=0).start()
    yield running
    running.stop()


# -- 1. the lost-job sweep -------------------------------------------------------------------

def test_sweep_leaves_an_unclaimed_job_for_stale_after(idle):
    job_id = idle.upload(make_bundle({"wait.txt": b"w"}))["job_id"]
    swept = json.loads(idle.admin("recover").stdout)
    assert job_id not in swept["requeued"]  # its message is still in the broker
    job = job_row(idle, job_id)
    assert (job["state"], job["queue_state"], job["owner"], job["attempts"]) == (
        "OK", "queued", "", 0), job


@pytest.fixture
def job_table(tmp_path):
    """A real SQLite job table bound in this process."""
    made = Database("sqlite", str(tmp_path))
    db.bind(DatabaseSettings(url=made.url))
    schema.sync()
    yield
    db.database_proxy.close()
    made.drop()


def test_lost_jobs_are_those_of_dead_local_workers_or_stale_ones(job_table):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, timeout=60, check=True)
    dead = f"{recovery.HOST}:{int(finished.stdout)}"
    owners = {1: dead, 2: "", 3: "elsewhere.example:4242", 4: recovery.this_process()}
    for job_id, owner in owners.items():
        jobs.create(job_id, "user")
        jobs.set_fields(job_id, queue_state=jobs.QUEUED, owner=owner)
    assert [job.job_id for job in recovery.lost_jobs(3600)] == [1]

    # nothing moved for two hours (but job 4's owner, this process, is younger than that: a
    # process started after a job's last update is never its owner, so it keeps its own time)
    jobs.Job.update(updated=recovery.cutoff(7200)).where(jobs.Job.job_id != 4).execute()
    assert sorted(job.job_id for job in recovery.lost_jobs(3600)) == [1, 2, 3]


# -- 2. retry --------------------------------------------------------------------------------

def test_retry_copies_the_file_into_the_volume_and_leaves_it(stack, tmp_path):
    job_id = failed_job(stack)
    fixed = tmp_path / "fixed.tar"
    body = make_bundle({"r.txt": b"retry me"})
    fixed.write_bytes(body)

    result = stack.admin("retry", "--job-id", str(job_id), "--path", str(fixed))
    assert json.loads(result.stdout)["state"] == "OK"
    assert "No hostname was supplied" not in result.stderr
    copy = job_row(stack, job_id)["path"]
    assert os.path.dirname(copy) == stack.volume, copy
    state = stack.wait(job_id)

    assert state["state"] == "OK" and state["complete"], state
    assert_archived(stack, job_id, {"r.txt": b"retry me"})
    assert fixed.read_bytes() == body  # the operator's file is never removed
    assert not os.path.exists(copy)  # the volume's copy goes once ingested


def test_retry_refuses_a_finished_job_and_force_leaves_no_orphans(stack, tmp_path):
    old = {"f/a.txt": b"a" * 10, "f/b.txt": b"b" * 20, "f/c.txt": b"c" * 30}
    job_id = stack.ingest(make_bundle(old))["job_id"]
    before = {entry["_id"] for entry in stack.files(job_id)["files"]}
    others = set(archive_names(stack)) - {os.path.relpath(stack.archive_path(i), stack.archive)
                                          for i in before}
    new = {"f/a.txt": b"A" * 11, "f/d.txt": b"d" * 5}
    bundle = tmp_path / "again.tar"
    bundle.write_bytes(make_bundle(new))

    refused = stack.admin("retry", "--job-id", str(job_id), "--path", str(bundle), check=False)
    assert refused.returncode != 0
    assert f"job {job_id} already finished OK; pass --force" in refused.stderr
    assert stack.state(job_id)["complete"]

    stack.admin("retry", "--job-id", str(job_id), "--path", str(bundle), "--force")
    state = stack.wait(job_id)
    assert state["state"] == "OK" and state["complete"], state
    assert_archived(stack, job_id, new)
    ours = {os.path.relpath(stack.archive_path(entry["_id"]), stack.archive)
            for entry in stack.files(job_id)["files"]}
    assert set(archive_names(stack)) - others == ours  # the three old copies are gone
    assert len(ours) == 2


def test_retry_refuses_a_job_not_finished(idle):
    job_id = idle.upload(make_bundle({"queued.txt": b"q"}))["job_id"]
    refused = idle.admin("retry", "--job-id", str(job_id), check=False)
    assert refused.returncode != 0
    assert f"job {job_id} has not finished" in refused.stderr and "--force" in refused.stderr
    assert job_row(idle, job_id)["attempts"] == 0


def test_retry_says_when_the_bundle_file_is_gone(stack):
    job_id = failed_job(stack, "gone.txt", b"gone")
    os.unlink(os.path.join(stack.volume, f"{job_id}.tar"))  # what keep_failed does
    result = stack.admin("retry", "--job-id", str(job_id), check=False)
    assert result.returncode != 0
    assert f"the bundle of job {job_id} {GONE}; upload it again or pass --path FILE" \
        in result.stderr
    assert stack.state(job_id)["state"] == "FAILED"


def test_retry_says_when_the_job_has_no_bundle_path(idle):
    length = 1_000_003
    sock = partial_upload(idle.port, length, 1000)
    try:
        job = wait_until(lambda: job_expecting(idle, length), 60, "the job to be recorded")
    finally:
        sock.close()  # the upload breaks off: FAILED, no bundle path
    job = wait_until(lambda: [j for j in admin_jobs(idle) if j["job_id"] == job["job_id"]
                              and j["state"] == "FAILED"], 60, "the upload to fail")[0]
    assert job["path"] is None, job
    result = idle.admin("retry", "--job-id", str(job["job_id"]), check=False)
    assert result.returncode != 0
    assert f"the bundle of job {job['job_id']} {GONE}" in result.stderr


# -- 3. --bundle-only ------------------------------------------------------------------------

def bundle_only(target: str, source: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pacifica.ingest.client", "--bundle-only",
                           target, source], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"bundle me")
    return str(folder)


def test_bundle_only_writes_into_a_fifo_and_keeps_it(tmp_path, source):
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    received = bytearray()

    def drain() -> None:
        with open(fifo, "rb") as reader:
            received.extend(reader.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    result = bundle_only(fifo, source)
    reader.join(timeout=60)
    assert result.returncode == 0, result.stderr
    assert not reader.is_alive()
    assert os.path.exists(fifo) and not os.path.isfile(fifo)  # still the FIFO
    assert bytes(received[257:262]) == b"ustar" and b"bundle me" in received
    assert not os.path.exists(fifo + ".part")


def test_bundle_only_refuses_a_symlink_target(tmp_path, source):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "out.tar"
    link.symlink_to(victim)
    result = bundle_only(str(link), source)
    assert result.returncode != 0 and "is a symbolic link" in result.stderr
    assert link.is_symlink() and victim.read_bytes() == b"keep"


def test_bundle_only_never_writes_through_a_planted_part_link(tmp_path, source):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    target = tmp_path / "out.tar"
    (tmp_path / "out.tar.part").symlink_to(victim)
    result = bundle_only(str(target), source)
    assert result.returncode == 0, result.stderr
    assert victim.read_bytes() == b"keep"
    assert target.is_file() and not target.is_symlink() and b"bundle me" in target.read_bytes()
    assert not os.path.lexists(tmp_path / "out.tar.part")


# -- 4. listing and state changes ------------------------------------------------------------

def test_jobs_lists_newest_first_as_a_table_or_json(stack):
    first = stack.ingest(make_bundle({"one.txt": b"1"}))["job_id"]
    second = stack.ingest(make_bundle({"two.txt": b"2"}))["job_id"]
    listed = admin_jobs(stack, "--limit", "2")
    assert [job["job_id"] for job in listed] == [second, first]
    assert all(job["queue_state"] == "done" for job in listed), listed

    table = stack.admin("jobs", "--limit", "2").stdout.splitlines()
    assert table[0].split()[:4] == ["JOB", "STATE", "DONE", "TASK"]
    assert [line.split()[:3] for line in table[1:]] == [[str(second), "OK", "yes"],
                                                         [str(first), "OK", "yes"]]


def test_requeue_and_fail_of_finished_jobs_are_refused(stack):
    done = stack.ingest(make_bundle({"done.txt": b"d"}))["job_id"]
    failed = failed_job(stack, "fail.txt", b"f")
    for command, job_id, words in (("requeue", done, "finished OK; not queueing it again"),
                                   ("fail", done, "has already finished (OK)"),
                                   ("fail", failed, "has already finished (FAILED)")):
        result = stack.admin(command, "--job-id", str(job_id), check=False)
        assert result.returncode != 0, (command, job_id)
        assert words in result.stderr and json.loads(result.stdout) == []
    assert job_row(stack, failed)["queue_state"] == "done"
    assert stack.state(done)["state"] == "OK" and stack.state(failed)["state"] == "FAILED"


def test_job_state_follows_the_state_machine(stack):
    failed = failed_job(stack, "sm.txt", b"s")
    before = stack.state(failed)
    result = stack.admin("job", "--job-id", str(failed), "--state", "OK", check=False)
    assert result.returncode != 0 and f"job {failed} is FAILED" in result.stderr
    assert stack.state(failed) == before

    renamed = json.loads(stack.admin("job", "--job-id", str(failed), "--exception",
                                     "resend it").stdout)
    assert (renamed["state"], renamed["complete"], renamed["exception"]) == (
        "FAILED", True, "resend it")

    done = stack.ingest(make_bundle({"sm-ok.txt": b"o"}))["job_id"]
    result = stack.admin("job", "--job-id", str(done), "--state", "FAILED", check=False)
    assert result.returncode != 0 and f"job {done} finished OK" in result.stderr
    assert stack.state(done)["state"] == "OK"
