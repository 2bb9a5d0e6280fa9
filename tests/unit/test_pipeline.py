"""The worker's pipeline on bundles landed on a temp volume, run in this process."""
from __future__ import annotations

import bz2
import gzip
import lzma
import os

import pytest

from factories import TRANSACTION, file_entry, make_bundle, member
from pacifica.ingest import archive, catalog, jobs, receipts, timeline
from rejections import CASES, GOOD

from .conftest import archive_listing

FILES = {
    "top.txt": b"at the top of data/\n",
    "a/b/c/deep.csv": b"x,y\n" + b"1,2\n" * 1000,
    "a/empty": b"",
    "bin/random.bin": os.urandom(300 * 1024),  # large enough for the archive's bulk copy
    "names/spaces and ünïcode.txt": "ünïcode\n".encode("utf-8"),
}


def stored_bytes(settings, file_id: int) -> bytes:
    """A file as the configured archive gives it back."""
    with archive.from_settings(settings).read(file_id) as handle:
        return handle.read()


def relative_path(row: dict) -> str:
    """A catalogued file's path beneath data/."""
    return f"{row['subdir']}/{row['name']}" if row["subdir"] else row["name"]


def test_a_good_bundle_is_archived_byte_for_byte_and_catalogued(settings, landed, run_job):
    job_id = landed(make_bundle(FILES))
    bundle = jobs.get(job_id).path

    job = run_job(job_id)

    assert (job.state, job.task, job.task_percent, job.complete) == (
        "OK", "ingest metadata", 100.0, True), job.exception
    assert job.queue_state == jobs.DONE
    rows = catalog.files_of(job_id)  # subdirs relative to data/, as the Metadata service keeps
    assert sorted(relative_path(row) for row in rows) == sorted(FILES)
    for row in rows:
        data = FILES[relative_path(row)]
        assert row["size"] == len(data)
        assert row["hashsum"] == file_entry("x", data)["hashsum"]
        assert stored_bytes(settings, row["_id"]) == data
    assert len(archive_listing(settings)) == len(FILES)
    assert len({row["_id"] for row in rows}) == len(FILES)
    transaction = catalog.transaction_of(job_id)
    assert (transaction["submitter"], transaction["project"], transaction["instrument"],
            transaction["user"]) == ("10", "1234a", "54", "root")
    assert transaction["key_values"] == {"Tag": "foo"}
    assert not os.path.exists(bundle), "a finished bundle leaves the volume"


def test_a_finished_job_has_a_signed_receipt_that_matches_the_archive(settings, landed,
                                                                     run_job):
    job_id = landed(make_bundle(FILES))
    run_job(job_id)
    [key] = receipts.public_keys()
    document = receipts.verify(receipts.of_job(job_id), key["public_key"])
    assert sorted(item["path"] for item in document["files"]) == sorted(FILES)
    assert receipts.audit(document, archive.from_settings(settings)) == []


def test_every_step_of_a_job_is_timed_in_order(landed, run_job):
    job_id = landed(make_bundle(GOOD))
    run_job(job_id)
    steps = timeline.of_job(job_id)
    assert [step["step"] for step in steps] == [
        "open tar", "load metadata", "Policy Validation", "ingest files", "ingest metadata"]
    assert all(step["ended"] is not None for step in steps)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress],
                         ids=["gzip", "bzip2", "xz"])
def test_a_compressed_bundle_is_ingested_and_leaves_no_copy_behind(settings, landed, run_job,
                                                                   compress):
    job_id = landed(compress(make_bundle(FILES)))
    job = run_job(job_id)
    assert (job.state, job.complete) == ("OK", True), job.exception
    assert sorted(relative_path(row) for row in catalog.files_of(job_id)) == sorted(FILES)
    assert not [name for name in os.listdir(settings.ingest.volume_path)
                if name.startswith(f"{job_id}.")]


def test_running_a_finished_job_again_changes_nothing(settings, landed, run_job):
    """A duplicate delivery of a done job (broker redelivery) is dropped."""
    job_id = landed(make_bundle(GOOD))
    first = run_job(job_id)
    listing = archive_listing(settings)
    again = run_job(job_id)
    assert (again.state, again.complete, again.attempts) == ("OK", True, first.attempts)
    assert archive_listing(settings) == listing
    assert len(catalog.files_of(job_id)) == len(GOOD)


def test_file_ids_do_not_overlap_between_jobs(settings, landed, run_job):
    first, second = landed(make_bundle(GOOD)), landed(make_bundle(FILES))
    run_job(first)
    run_job(second)
    ids = [row["_id"] for job_id in (first, second) for row in catalog.files_of(job_id)]
    assert len(ids) == len(set(ids)) == len(GOOD) + len(FILES)
    assert len(archive_listing(settings)) == len(ids)


def assert_failed_cleanly(settings, job: jobs.Job, task: str, words: str) -> None:
    """FAILED at ``task`` with ``words`` in its message, and nothing of it kept anywhere."""
    assert (job.state, job.complete, job.task) == ("FAILED", True, task), job.exception
    assert words in job.exception
    assert job.queue_state == jobs.DONE
    assert archive_listing(settings) == []
    assert catalog.files_of(job.job_id) == []
    assert catalog.transaction_of(job.job_id) is None
    assert receipts.of_job(job.job_id) is None


@pytest.mark.parametrize("case", list(CASES))
def test_a_rejected_bundle_fails_with_its_step_and_reason(settings, landed, run_job, case):
    body, task, words = CASES[case]
    assert_failed_cleanly(settings, run_job(landed(body)), task, words)


def with_entry(path: str, data: bytes, **changes) -> list:
    """GOOD's metadata plus an entry for ``path`` with ``changes``."""
    return TRANSACTION + [file_entry(p, d) for p, d in GOOD.items()] + [
        file_entry(path, data, **changes)]


MORE_CASES = {
    "subdir climbing out of data/": (
        make_bundle({**GOOD, "x.txt": b"x"}, metadata=with_entry("x.txt", b"x",
                                                                 subdir="data/../../etc")),
        "load metadata", "climbs out of the bundle with '..'"),
    "name with a slash": (
        make_bundle({**GOOD, "x.txt": b"x"}, metadata=with_entry("x.txt", b"x",
                                                                 name="../x.txt")),
        "load metadata", "name must be a plain file name"),
    "member beside data/ climbing out": (
        make_bundle(GOOD, extras=[member("data/a/../../../x", b"x")]), "open tar",
        "contains '..'"),
    "a value too wide for the catalog": (
        make_bundle({**GOOD, "x.txt": b"x"}, metadata=with_entry("x.txt", b"x",
                                                                 mimetype="m" * 300)),
        "ingest metadata", "Files.mimetype of x.txt: 300 characters, at most 255"),
    "policy: no instrument": (
        make_bundle(GOOD, metadata=[entry for entry in TRANSACTION
                                    if entry["destinationTable"] != "Transactions.instrument"]
                    + [file_entry(p, d) for p, d in GOOD.items()]),
        "Policy Validation", "instrument"),
}


@pytest.mark.parametrize("case", list(MORE_CASES))
def test_metadata_and_policy_refusals(settings, landed, run_job, case):
    body, task, words = MORE_CASES[case]
    assert_failed_cleanly(settings, run_job(landed(body)), task, words)


def test_a_bad_hash_late_in_a_bundle_takes_the_stored_files_back_out(settings, landed, run_job):
    files = {f"many/f{n:03d}.bin": bytes([n]) * 5000 for n in range(40)}
    metadata = TRANSACTION + [file_entry(path, data) for path, data in files.items()]
    metadata[-1]["hashsum"] = "f" * 40
    assert_failed_cleanly(settings, run_job(landed(make_bundle(files, metadata=metadata))),
                          "ingest files", "data/many/f039.bin: sha1 mismatch")


def test_a_failed_jobs_bundle_stays_on_the_volume_for_keep_failed(landed, run_job):
    """recovery removes it later; until then an operator can look at it or retry."""
    job_id = landed(make_bundle(GOOD, include_metadata=False))
    job = run_job(job_id)
    assert job.state == "FAILED" and os.path.exists(job.path)
