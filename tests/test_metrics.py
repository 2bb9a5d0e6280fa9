"""GET /metrics, scraped with prometheus_client's own parser during and after real ingests."""
from __future__ import annotations

import os

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from factories import TRANSACTION, file_entry, make_bundle
from faults import wait_until

pytestmark = pytest.mark.e2e

TUS = {"Tus-Resumable": "1.0.0"}


def scrape(stack) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape."""
    reply = stack.session.get(stack.url + "/metrics", timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def moved(before: dict, after: dict, name: str, **labels) -> float:
    """How much one sample grew between two scrapes."""
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def tus_upload(stack, body: bytes) -> int:
    """Create, PATCH in one piece; the job id."""
    created = requests.post(stack.url + "/files/", timeout=30,
                            headers={**TUS, "Upload-Length": str(len(body))})
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    url = location if location.startswith("http") else stack.url + location
    reply = requests.patch(url, data=body, timeout=60, headers={
        **TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert reply.status_code == 204, reply.text
    return int(reply.headers["Ingest-Job-Id"])


def test_counters_move_exactly_as_the_jobs_did(stack):
    before = scrape(stack)
    good = [{f"m{n}/f{k}.bin": os.urandom(1000 * (n + 1) + k) for k in range(n + 1)}
            for n in range(3)]
    bundles = [make_bundle(files) for files in good]
    jobs = [stack.upload(body)["job_id"] for body in bundles[:2]]
    jobs.append(tus_upload(stack, bundles[2]))
    bad = make_bundle({"bad.bin": b"these bytes"}, metadata=TRANSACTION + [
        file_entry("bad.bin", b"other bytes")])  # same size, another hash
    jobs.append(stack.upload(bad)["job_id"])
    during = scrape(stack)  # taken while the jobs run: every gauge is there
    for name in ("pacifica_ingest_queued_jobs", "pacifica_ingest_uploads_in_flight",
                 "pacifica_ingest_workers_live", "pacifica_ingest_tus_reserved_bytes"):
        assert (name, ()) in during, name
    outcomes = [stack.wait(job_id)["state"] for job_id in jobs]
    assert outcomes == ["OK", "OK", "OK", "FAILED"], outcomes

    after = wait_until(lambda: (lambda s: s if moved(before, s, "pacifica_ingest_jobs_failed_total",
                                                     step="ingest files", reason="checksum") == 1
                                else None)(scrape(stack)), 30, "the failure to be counted")
    assert moved(before, after, "pacifica_ingest_jobs_accepted_total", via="POST") == 3
    assert moved(before, after, "pacifica_ingest_jobs_accepted_total", via="tus") == 1
    assert moved(before, after, "pacifica_ingest_jobs_completed_total") == 3
    sizes = [len(data) for files in good for data in files.values()]
    assert moved(before, after, "pacifica_ingest_files_ingested_total") == len(sizes)
    assert moved(before, after, "pacifica_ingest_ingested_bytes_total") == sum(sizes)
    assert moved(before, after, "pacifica_ingest_bundle_size_bytes_count") == 4
    assert moved(before, after, "pacifica_ingest_bundle_size_bytes_sum") == sum(
        map(len, bundles + [bad]))
    assert moved(before, after, "pacifica_ingest_step_duration_seconds_count",
                 step="ingest metadata") == 3
    assert moved(before, after, "pacifica_ingest_get_state_duration_seconds_count") >= len(jobs)
    assert after[("pacifica_ingest_queued_jobs", ())] == 0
    assert after[("pacifica_ingest_workers_live", ())] >= 1
    assert moved(before, after, "pacifica_ingest_tus_uploads_open") == 0  # ours landed


def test_open_tus_upload_is_reported_with_its_reservation(stack):
    created = requests.post(stack.url + "/files/", timeout=30,
                            headers={**TUS, "Upload-Length": "123456"})
    assert created.status_code == 201, created.text
    try:
        samples = scrape(stack)
        assert samples[("pacifica_ingest_tus_uploads_open", ())] >= 1
        assert samples[("pacifica_ingest_tus_reserved_bytes", ())] >= 123456
    finally:
        location = created.headers["Location"]
        url = location if location.startswith("http") else stack.url + location
        requests.delete(url, headers=TUS, timeout=30)
