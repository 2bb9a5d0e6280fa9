"""recovery.sweep on crafted job rows and volume files: what a dead process left behind."""
from __future__ import annotations

import datetime
import os

import pytest

from pacifica.ingest import idempotency, jobs, recovery

from .conftest import dead_owner_here, live_owner_here

HOUR = datetime.timedelta(hours=1)


def quiet_for(job_id: int, delta: datetime.timedelta) -> None:
    """Make a job look as if nothing touched it for ``delta``."""
    jobs.Job.update(updated=jobs.utcnow() - delta).where(jobs.Job.job_id == job_id).execute()


def receiving(settings, job_id: int, expected: int, owner: str, volume_bytes: int | None,
              suffix: str = ".tar.part") -> str:
    """A job still receiving its body, with ``volume_bytes`` of it on the volume."""
    path = os.path.join(settings.ingest.volume_path, f"{job_id}{suffix}")
    os.makedirs(settings.ingest.volume_path, exist_ok=True)
    if volume_bytes is not None:
        with open(path, "wb") as handle:
            handle.write(b"x" * volume_bytes)
    jobs.create(job_id, "alice", bytes_expected=expected, owner=owner)
    jobs.set_fields(job_id, bytes_received=min(volume_bytes or 0, expected))
    return path


def test_an_upload_cut_short_by_a_dead_frontend_fails_and_its_part_file_goes(
        settings, database, recorder):
    part = receiving(settings, 1, expected=1000, owner=dead_owner_here(), volume_bytes=400)
    done = recovery.sweep(recorder, settings.ingest)
    assert done["failed_uploads"] == [1]
    job = jobs.get(1)
    assert (job.state, job.task, job.complete) == ("FAILED", "UPLOADING", True)
    assert "interrupted: 400 bytes of 1000 arrived" in job.exception
    assert not os.path.exists(part)
    assert recorder.jobs == []


def test_a_frontend_on_another_host_counts_as_dead_only_after_stale_after(
        settings, database, recorder):
    receiving(settings, 1, expected=1000, owner="elsewhere:123", volume_bytes=10)
    assert recovery.sweep(recorder, settings.ingest)["failed_uploads"] == []
    assert jobs.get(1).state == "OK"
    quiet_for(1, 2 * HOUR)  # stale_after is an hour by default
    assert recovery.sweep(recorder, settings.ingest)["failed_uploads"] == [1]
    assert jobs.get(1).state == "FAILED"


def test_an_upload_whose_frontend_lives_is_left_alone(settings, database, recorder):
    part = receiving(settings, 1, expected=1000, owner=live_owner_here(), volume_bytes=10)
    assert recovery.sweep(recorder, settings.ingest)["failed_uploads"] == []
    assert jobs.get(1).state == "OK" and os.path.exists(part)


@pytest.mark.parametrize("suffix", [".tar", ".tar.part"])
def test_an_upload_whose_whole_body_landed_is_queued(settings, database, recorder, suffix):
    """The frontend died after the last byte (``.tar``), or before renaming a whole ``.part``:
    the next sweep queues the job rather than failing it."""
    receiving(settings, 1, expected=1000, owner=dead_owner_here(), volume_bytes=1000,
              suffix=suffix)
    done = recovery.sweep(recorder, settings.ingest)
    assert done["failed_uploads"] == []
    job = jobs.get(1)
    bundle = os.path.join(settings.ingest.volume_path, "1.tar")
    assert (job.state, job.queue_state, job.path, job.bytes_received) == (
        "OK", jobs.WAITING, bundle, 1000)
    assert os.path.getsize(bundle) == 1000 and not os.path.exists(bundle + ".part")
    # the frontend's janitor hands waiting jobs to the broker after each sweep
    recovery.Janitor(recorder, settings.ingest).run_once()
    assert recorder.jobs == [(1, "upload")] and jobs.get(1).queue_state == jobs.QUEUED


def test_a_queued_job_whose_worker_died_here_is_queued_again(settings, database, recorder):
    jobs.create(1, "alice", path="/volume/1.tar")
    jobs.set_fields(1, queue_state=jobs.QUEUED, owner=dead_owner_here())
    assert recovery.sweep(recorder, settings.ingest)["requeued"] == [1]
    assert recorder.jobs == [(1, "upload")]
    job = jobs.get(1)
    assert (job.queue_state, job.owner, job.state) == (jobs.QUEUED, "", "OK")


def test_a_queued_job_never_claimed_is_queued_again_only_once_stale(
        settings, database, recorder):
    jobs.create(1, "alice", path="/volume/1.tar")
    jobs.set_fields(1, queue_state=jobs.QUEUED, owner="")
    assert recovery.sweep(recorder, settings.ingest)["requeued"] == []  # may be in the broker
    quiet_for(1, 2 * HOUR)
    assert recovery.sweep(recorder, settings.ingest)["requeued"] == [1]
    assert recorder.jobs == [(1, "upload")]


def test_failed_bundles_leave_the_volume_after_keep_failed(settings, database, recorder):
    volume = settings.ingest.volume_path
    os.makedirs(volume, exist_ok=True)
    for job_id in (1, 2):
        path = os.path.join(volume, f"{job_id}.tar")
        with open(path, "wb") as handle:
            handle.write(b"bundle")
        jobs.create(job_id, "alice", path=path)
        jobs.fail(job_id, jobs.Step.LOAD_METADATA, "no metadata.txt")
    quiet_for(1, 25 * HOUR)  # keep_failed is a day by default
    assert recovery.sweep(recorder, settings.ingest)["removed_bundles"] == [1]
    assert not os.path.exists(os.path.join(volume, "1.tar"))
    assert os.path.exists(os.path.join(volume, "2.tar"))
    assert recovery.bundle_removed(jobs.get(1)) and not recovery.bundle_removed(jobs.get(2))


def test_expired_idempotency_keys_are_forgotten(settings, database, recorder):
    ttl = settings.ingest.idempotency_ttl
    old, fresh = (idempotency.Claim(key, "length=10") for key in ("old-key", "fresh-key"))
    for job_id, claim in ((1, old), (2, fresh)):
        jobs.create(job_id, "alice")
        idempotency.bind("alice", claim, ttl, job_id=job_id)
    idempotency.IdempotencyKey.update(
        created=jobs.utcnow() - datetime.timedelta(seconds=ttl + 60)).where(
            idempotency.IdempotencyKey.key == "old-key").execute()

    assert recovery.sweep(recorder, settings.ingest)["forgotten_keys"] == 1

    idempotency.replay_if_known("alice", old, ttl)  # forgotten: a new job may take it
    with pytest.raises(idempotency.Replayed) as replayed:
        idempotency.replay_if_known("alice", fresh, ttl)
    assert replayed.value.job_id == 2


def test_a_sweep_of_a_tidy_database_does_nothing(settings, database, recorder):
    jobs.create(1, "alice")
    jobs.finish(1)
    assert recovery.sweep(recorder, settings.ingest) == {
        "failed_uploads": [], "requeued": [], "removed_bundles": [], "forgotten_keys": 0}
    assert recorder.jobs == []
