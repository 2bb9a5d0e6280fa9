"""Hostile input against a real frontend and worker: bounded memory and time, words not tracebacks.

Each bomb must end as a FAILED job with a message naming the problem, leave nothing in the
archive, and keep the worker's pool process small (its resident memory is sampled from
/proc while the job runs).  The figures measured are logged (run with ``--log-cli-level=INFO``).
"""
from __future__ import annotations

import gzip
import logging
import re
import tarfile
import threading
import time

import pytest

import processes
from factories import (TRANSACTION, BundleSpec, file_entry, make_bundle, pax_header, pax_record,
                       raw_header)
from faults import wait_until
from harness import Stack, free_port

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

RSS_BOUND_MB = 300  # an idle pool process holds about 60 MB; the bombs reached 400 MB to 1.6 GB
GOOD_FILES = {"a.txt": b"hello"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """One stack, one pool process; /move allowed from a folder of its own."""
    base = tmp_path_factory.mktemp("secure")
    roots = base / "move-roots"
    roots.mkdir()
    running = Stack(str(base / "stack"), concurrency=1,
                    extra_env={"INGEST_MOVE_ALLOWED_ROOTS": str(roots),
                               # room for a highly compressible hostile metadata.txt
                               "INGEST_INGEST_MAX_UNPACK_RATIO": "100000"}).start()
    yield running
    running.stop()


def _memory_mb(pid: int) -> int:
    """The larger of a process's resident and peak resident size (VmRSS, VmHWM), in MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            values = [int(line.split()[1]) for line in handle
                      if line.startswith(("VmRSS:", "VmHWM:"))]
    except OSError:
        return 0
    return max(values, default=0) // 1024


class PeakRss:
    """Samples the worker pool processes' memory from /proc while a job runs."""

    def __init__(self, stack: Stack):
        self.parents = [worker.pid for worker in stack.workers]
        self.peak_mb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            for parent in self.parents:
                for child in processes.children(parent):
                    self.peak_mb = max(self.peak_mb, _memory_mb(child))
            if self._stop.wait(0.05):
                return

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def ingest_hostile(stack: Stack, body: bytes, label: str) -> dict:
    """Upload, wait for the outcome, and log the time and the pool's peak memory."""
    started = time.monotonic()
    with PeakRss(stack) as rss:
        state = stack.ingest(body, timeout=240)
    logger.info("%s: %d-byte upload, job ended %s after %.2f s, worker pool peak %d MB",
                label, len(body), state["state"], time.monotonic() - started, rss.peak_mb)
    state["peak_mb"] = rss.peak_mb
    return state


def assert_refused(stack: Stack, state: dict, words: str) -> None:
    assert state["state"] == "FAILED", state
    assert words in state["exception"], state["exception"]
    for leak in ("Traceback", "File \"", stack.base, stack.archive, stack.volume):
        assert leak not in state["exception"], state["exception"]
    assert stack.archive_files() == []
    assert state["peak_mb"] < RSS_BOUND_MB


def good_tar(**options) -> bytes:
    return make_bundle(GOOD_FILES, tar_format=tarfile.USTAR_FORMAT, **options)


def test_pax_header_bomb(secured):
    """CVE-2024-6232's shape: 40000 records "2 " whose keywords run on to the header's end
    (the unpatched stdlib held 1.6 GB for these 80 KB, quadratic in the size)."""
    body = pax_header(b"2 " * 40000 + b"6 a=\n") + good_tar()
    state = ingest_hostile(secured, body, "pax bomb")
    assert_refused(secured, state, "pax header 'PaxHeader' at byte 0 has a malformed pax record")


def test_negative_member_size(secured):
    """A base-256 negative size walked tarfile back over the same headers a million times."""
    body = (raw_header("data/a", 0) + raw_header("data/b", 0) + raw_header("data/c", -1024)
            + good_tar())
    state = ingest_hostile(secured, body, "negative size")
    assert_refused(secured, state, "'data/c' at byte 1024 has a negative size (-1024)")


@pytest.mark.parametrize("key, value, words", [
    ("mtime", "1e400", "has a pax mtime of '1e400', not a time in seconds"),
    ("size", str(10**15), "claims 1000000000000000 bytes, more than the whole bundle"),
    ("size", str(10**30), "has a pax size of '1000000000000000000000000000000', not a whole"),
])
def test_absurd_pax_numbers(secured, key, value, words):
    """These came out of tarfile as inf or as offsets no file has, and became tracebacks."""
    entry = {k: v for k, v in file_entry("a.txt", GOOD_FILES["a.txt"]).items() if k != "mtime"}
    spec = BundleSpec(files=dict(GOOD_FILES), metadata=TRANSACTION + [entry],
                      tar_format=tarfile.USTAR_FORMAT)
    state = ingest_hostile(secured, pax_header(pax_record(key, value)) + spec.build(),
                           f"pax {key}={value if len(value) < 8 else value[:3] + '...'}")
    assert_refused(secured, state, words)


def test_unterminated_escaped_quotes_in_gzipped_metadata(secured):
    """metadata.txt of ["\\"\\"\\"... (never closed): the old depth regex rescanned it from
    every quote, quadratic (1 MB would have taken an hour)."""
    raw = b'["' + b'\\"' * 500_000
    body = gzip.compress(good_tar(metadata_raw=raw))
    state = ingest_hostile(secured, body, "unterminated \\\" metadata (gzip)")
    assert_refused(secured, state, "metadata.txt is not valid JSON: Unterminated string")


def test_move_document_with_millions_of_problems(secured):
    """A 6 MB /move list of 3 million non-objects: every problem used to be kept in a list."""
    body = b"[" + b"0," * 3_000_000 + b"0]"
    started = time.monotonic()
    with PeakRss(secured) as rss:
        reply = secured.move(body)
        assert reply.status_code in (200, 400), reply.text
        state = secured.wait(reply.json()["job_id"], timeout=240) if reply.status_code == 200 \
            else None
    logger.info("move body: %d bytes, answered %d, ended after %.2f s, pool peak %d MB",
                len(body), reply.status_code, time.monotonic() - started, rss.peak_mb)
    assert rss.peak_mb < RSS_BOUND_MB
    if state is None:  # refused at the door: a JSON message, no traceback
        assert reply.json()["message"] and not reply.json()["traceback"]
        return
    state["peak_mb"] = rss.peak_mb
    assert_refused(secured, state, "entry 0: is a int, not an object")
    assert state["exception"].endswith("... and 2999951 more")


def test_value_too_wide_for_its_column_leaves_nothing_archived(secured):
    """Found only when the metadata is recorded, after the files are stored: they come out."""
    metadata = [*TRANSACTION[:2],  # submitter and project: the built-in policy requires them
                {"destinationTable": "Transactions.instrument", "value": "i" * 300},
                file_entry("a.txt", GOOD_FILES["a.txt"])]
    state = ingest_hostile(secured, good_tar(metadata=metadata), "too wide")
    assert state["task"] == "ingest metadata"
    assert_refused(secured, state, "Transactions.instrument: 300 characters, at most 255")


@pytest.mark.parametrize("job_id", ["99999999999999999999", "0", "-1", "9" * 5000, "1e3"])
def test_out_of_range_job_ids_are_a_json_400(secured, job_id):
    for path in ("/get_state", "/get_files"):
        reply = secured.session.get(f"{secured.url}{path}", params={"job_id": job_id},
                                    timeout=30)
        assert reply.status_code == 400, reply.text
        assert reply.headers["Content-Type"].startswith("application/json")
        body = reply.json()
        assert "job_id must be an integer from 1 to 9223372036854775807" in body["message"]
        assert not body["traceback"] and "Traceback" not in reply.text


def test_admin_refuses_out_of_range_job_ids(secured):
    result = secured.admin("job", "--job-id", "99999999999999999999", "--state", "FAILED",
                           check=False)
    assert result.returncode == 2
    assert "job_id must be an integer from 1 to 9223372036854775807" in result.stderr
    assert "Traceback" not in result.stderr


def test_error_pages_carry_no_traceback(secured):
    reply = secured.session.get(f"{secured.url}/no/such/page", timeout=30)
    assert reply.status_code == 404
    assert reply.json()["traceback"] == ""


def test_service_url_credentials_never_reach_the_job(make_stack):
    """A service URL's user and password stay out of the job's message (and no server path)."""
    closed = free_port()
    stack = make_stack(extra_env={
        "ARCHIVEINTERFACE_URL": f"http://archiver:secret@127.0.0.1:{closed}/",
        "INGEST_HTTP_RETRIES": "0", "INGEST_HTTP_BACKOFF": "0"}).start()
    state = stack.ingest(good_tar())
    assert state["state"] == "FAILED", state
    assert f"the Archive Interface at http://127.0.0.1:{closed} could not be reached" in \
        state["exception"], state["exception"]
    assert "secret" not in state["exception"] and "archiver" not in state["exception"]
    assert stack.base not in state["exception"]


def test_unexpected_worker_error_is_words_and_the_traceback_is_logged(make_stack, tmp_path):
    """A fault no check foresaw (here: the archive path is a file) reads as words for a person;
    the traceback goes to the worker's log under the incident id the message gives."""
    not_a_folder = tmp_path / "archive-is-a-file"
    not_a_folder.write_bytes(b"")
    stack = make_stack(extra_env={"ARCHIVE_PATH": str(not_a_folder)}).start()
    state = stack.ingest(good_tar())
    assert state["state"] == "FAILED", state
    found = re.fullmatch(r"internal error while \S.* \(logged as ([0-9a-f]{32})\); the job's "
                         r"files were not ingested", state["exception"])
    assert found, state["exception"]
    assert str(not_a_folder) not in state["exception"]
    log = stack.log("worker0")
    assert f"incident {found.group(1)}" in log and "FileExistsError" in log


def test_user_too_wide_for_its_column_is_a_json_400(secured):
    reply = secured.session.post(f"{secured.url}/upload", data=good_tar(), timeout=60,
                                 headers={"Content-Type": "application/octet-stream",
                                          "X-Http-Authed-User": "u" * 300})
    assert reply.status_code == 400, reply.text
    # refused where the identity is read, before any job is made
    assert "names a user of 300 characters; at most 255" in reply.json()["message"]


def test_a_pool_process_past_max_memory_per_child_is_replaced(make_stack):
    """[celery] max_memory_per_child reaches Celery: a pool process above it (here every one:
    1 Mb) is replaced after its job, so no job can leave a worker bloated."""
    stack = make_stack(concurrency=1,
                       extra_env={"INGEST_CELERY_MAX_MEMORY_PER_CHILD": "1 Mb"}).start()
    before = wait_until(lambda: processes.children(stack.workers[0].pid), 60,
                        "the pool process")
    assert stack.ingest(good_tar())["state"] == "OK"
    wait_until(lambda: (now := processes.children(stack.workers[0].pid)) and now != before, 60,
               "the pool process to be replaced")
