"""Resumable uploads in-process: a real SQLite job table and volume, the queue recorded at its seam.

What the end-to-end tests cannot time: a crash between the last byte and the queue, a
second request while one holds the upload, and expiry measured by the sweeper's clock.
"""
from __future__ import annotations

import io
import json
import os
import threading
import time

import pytest

from pacifica.ingest import db, jobs, schema
from pacifica.ingest.auth import Identity
from pacifica.ingest.config import DatabaseSettings
from pacifica.ingest.errors import UploadError
from pacifica.ingest.services.ids import CounterIdSource
from pacifica.ingest.intake.intake import Intake
from pacifica.ingest.intake.staging import Staging
from pacifica.ingest.intake.resumable import ResumableUploads
from pacifica.ingest.intake.tus_store import TusStore


def acting(user: str) -> Identity:
    """The identity of a request from ``user``."""
    return Identity(user, authenticated=True)


@pytest.fixture
def uploads(tmp_path):
    """ResumableUploads over a fresh volume and SQLite database; ``.queued`` lists what was sent."""
    db.bind(DatabaseSettings(url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}"))
    db.database_proxy.connect()
    schema.sync()
    queued = []
    volume = str(tmp_path / "volume")
    intake = Intake(CounterIdSource(), Staging(volume, 4096),
                    lambda job_id, kind: queued.append((job_id, kind)))
    made = ResumableUploads(TusStore(volume, expiry=60, transfer_size=4096), intake)
    made.queued = queued
    yield made
    db.database_proxy.close()


def test_a_crash_before_the_queue_is_finished_by_the_sweep(uploads):
    body = os.urandom(10_000)
    info = uploads.create(len(body), "alice")
    assert uploads.store.append(info, io.BytesIO(body), 0, len(body)) == len(body)
    # the frontend died right after making the job, before the bundle moved or was queued
    info.job_id = uploads.intake.new_job("alice", jobs.KIND_UPLOAD, len(body))
    uploads.store.save(info)
    assert uploads.queued == []

    assert uploads.sweep() == 0
    assert uploads.queued == [(info.job_id, jobs.KIND_UPLOAD)]
    job = jobs.get(info.job_id)
    assert job.queue_state == jobs.QUEUED and job.user == "alice"
    with open(job.path, "rb") as handle:
        assert handle.read() == body
    uploads.sweep()
    assert len(uploads.queued) == 1  # landing is idempotent: queued once
    landed, offset = uploads.status(info.upload_id, acting("alice"))
    assert (landed.job_id, uploads.landed(landed), offset) == (info.job_id, True, len(body))


def test_an_interrupted_chunk_keeps_its_bytes_unless_checksummed(uploads):
    class Broken(io.BytesIO):
        def read(self, size=-1):
            data = super().read(min(size, 1000))
            if not data:
                raise ConnectionResetError("peer went away")
            return data

    info = uploads.create(5000, "bob")
    with pytest.raises(UploadError, match="interrupted: 3000 bytes of 4000 arrived"):
        uploads.append(info.upload_id, acting("bob"), 0, Broken(b"a" * 3000), 4000, None)
    assert uploads.status(info.upload_id, acting("bob"))[1] == 3000
    with pytest.raises(UploadError, match="interrupted"):
        uploads.append(info.upload_id, acting("bob"), 3000, Broken(b"b" * 1000), 2000,
                       ("sha1", b"\0" * 20))
    assert uploads.status(info.upload_id, acting("bob"))[1] == 3000


def test_a_second_request_waits_for_the_first_then_gets_423(uploads):
    info = uploads.create(100, "carol")
    holding = threading.Event()
    release = threading.Event()

    def hold():
        with uploads.store.locked(info.upload_id):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        with pytest.raises(UploadError) as caught:
            with uploads.store.locked(info.upload_id, wait=0.3):
                pass
        assert caught.value.status == 423
        assert uploads.sweep() == 0  # in use, so not abandoned, whatever its age
        assert uploads.status(info.upload_id, acting("carol"))[1] == 0  # HEAD answers all the same
    finally:
        release.set()
        thread.join(10)
    assert uploads.status(info.upload_id, acting("carol"))[1] == 0


def test_expiry_removes_idle_partial_uploads_only(uploads):
    idle = uploads.create(100, "dave")
    uploads.store.append(idle, io.BytesIO(b"x" * 10), 0, 10)
    later = time.time() + 61
    assert uploads.store.is_expired(idle.upload_id, later)
    assert not uploads.store.is_expired(idle.upload_id)
    with pytest.raises(UploadError) as caught:
        uploads.status("f" * 32, acting("dave"))
    assert caught.value.status == 404
    assert uploads.sweep(now=time.time()) == 0
    assert uploads.sweep(now=later) == 1
    assert not [name for name in os.listdir(uploads.store.root)
                if name.startswith(idle.upload_id)]
    assert uploads.queued == []


def test_a_description_written_with_a_landed_flag_still_loads(uploads):
    info = uploads.create(100, "erin")
    path = os.path.join(uploads.store.root, info.upload_id + ".json")
    with open(path, encoding="utf-8") as handle:
        stored = json.load(handle)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({**stored, "landed": False}, handle)  # as versions before the job row said so
    assert uploads.store.load(info.upload_id) == info
    assert uploads.status(info.upload_id, acting("erin"))[1] == 0
