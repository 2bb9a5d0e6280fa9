"""Log lines of real frontend and worker processes: one format, the job id on each job's lines."""
from __future__ import annotations

import json
import os

import pytest
import requests

from factories import TRANSACTION, file_entry, make_bundle
from faults import wait_until

pytestmark = pytest.mark.e2e

TUS = {"Tus-Resumable": "1.0.0"}
FORGED = "2026-01-01 00:00:00,000 ERROR pacifica.ingest.worker [job 1]: forged"


def _tus_job(stack, body: bytes) -> int:
    created = requests.post(stack.url + "/files/", timeout=30,
                            headers={**TUS, "Upload-Length": str(len(body))})
    location = created.headers["Location"]
    url = location if location.startswith("http") else stack.url + location
    reply = requests.patch(url, data=body, timeout=60, headers={
        **TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert reply.status_code == 204, reply.text
    return int(reply.headers["Ingest-Job-Id"])


def _run_jobs(stack) -> tuple[int, int, int]:
    """A POSTed job, a tus job and a failing one whose file name tries to forge a line."""
    posted = stack.upload(make_bundle({"a/one.txt": b"one"}))["job_id"]
    resumable = _tus_job(stack, make_bundle({"b/two.txt": b"two"}))
    name = f"evil\n{FORGED}.txt"
    bad = make_bundle({name: b"12345"}, metadata=TRANSACTION + [file_entry(name, b"54321")])
    failed = stack.upload(bad)["job_id"]
    for job_id in (posted, resumable, failed):
        stack.wait(job_id)
    return posted, resumable, failed


def _logs(stack) -> str:
    """The whole frontend and worker logs (Stack.log keeps only their tails)."""
    text = ""
    for name in ("frontend", "worker0"):
        with open(os.path.join(stack.base, f"{name}.log"), "rb") as handle:
            text += handle.read().decode("utf-8", "replace")
    return text


def test_text_lines_carry_the_job_id_and_cannot_be_forged(make_stack):
    stack = make_stack().start()
    posted, resumable, failed = _run_jobs(stack)
    wait_until(lambda: f"job {failed} failed at" in stack.log("worker0"), 30, "the failure line")
    logs = _logs(stack)
    lines = logs.splitlines()
    assert any(f"[job {posted}]: job {posted} received: " in line and line.endswith("via POST")
               for line in lines), logs
    assert any(f"[job {resumable}]: job {resumable} received: " in line
               and line.endswith("via tus") for line in lines), logs
    for job_id in (posted, resumable):
        assert f"[job {job_id}]: job {job_id} started attempt 1" in logs
        assert f"[job {job_id}]: job {job_id}: ingest files took " in logs
        assert f"[job {job_id}]: job {job_id} ok: 1 files, 3 bytes in " in logs
    assert f"[job {failed}]: job {failed} failed at ingest files: " in logs
    assert not any(line.startswith(FORGED[:19]) for line in lines), "a member name forged a line"
    assert "\\n" + FORGED[:19] in logs  # the name is there, escaped
    assert "Task pacifica.ingest" not in logs  # Celery's "succeeded" lines, said of failures too


def test_json_lines_parse_and_carry_the_job_id(make_stack):
    stack = make_stack(extra_env={"INGEST_LOGGING_FORMAT": "json"}).start()
    posted, resumable, failed = _run_jobs(stack)
    wait_until(lambda: f"job {failed} failed at" in stack.log("worker0"), 30, "the failure line")
    records = [json.loads(line) for line in _logs(stack).splitlines() if line.startswith("{")]
    assert records, _logs(stack)
    for job_id in (posted, resumable, failed):
        about = [record for record in records if f"job {job_id} " in record["message"]]
        assert about, job_id
        assert all(record.get("job_id") == job_id for record in about), about
    messages = [record["message"] for record in records]
    assert f"job {posted} received: " in "\n".join(messages)
    assert any(record["logger"].startswith("cherrypy.access") and record.get("job_id") == posted
               and '"GET /get_state?job_id=' in record["message"]
               for record in records), "get_state is in the access log, with its job id"
    assert {"time", "level", "logger", "message"} <= set(records[0])


def _access_lines(stack, needle: str) -> list[str]:
    return [line for line in _logs(stack).splitlines() if "cherrypy.access" in line
            and needle in line]


def test_get_state_writes_an_access_line_like_every_other_request(make_stack):
    """The fast get_state path logs in CherryPy's access format, one line per request."""
    stack = make_stack().start()
    job_id = stack.upload(make_bundle({"a/one.txt": b"one"}))["job_id"]
    agent = {"User-Agent": "access-log-test/1"}
    for _ in range(3):
        assert requests.get(f"{stack.url}/get_state", params={"job_id": job_id}, headers=agent,
                            timeout=30).status_code == 200
    assert requests.get(f"{stack.url}/get_state", params={"job_id": "x"}, headers=agent,
                        timeout=30).status_code == 400
    assert requests.get(f"{stack.url}/jobs", headers=agent, timeout=30).status_code == 200
    wait_until(lambda: _access_lines(stack, '"GET /jobs HTTP/1.1" 200'), 30, "the /jobs line")
    ours = _access_lines(stack, f'"GET /get_state?job_id={job_id} HTTP/1.1" 200 ')
    assert len(ours) == 3, _logs(stack)
    (bad,) = _access_lines(stack, '"GET /get_state?job_id=x HTTP/1.1" 400 ')
    (other,) = _access_lines(stack, '"GET /jobs HTTP/1.1" 200 ')
    for line in (ours[0], bad, other):  # host - - [time] "request" status bytes "" "agent"
        assert line.endswith('"" "access-log-test/1"'), line
        assert " 127.0.0.1 - - [" in line, line
    assert f"[job {job_id}]" in ours[0]


def test_get_state_access_lines_can_be_sampled_away(make_stack):
    stack = make_stack(extra_env={"INGEST_LOGGING_ACCESS_LOG_SAMPLE": "0"}).start()
    job_id = stack.upload(make_bundle({"a/one.txt": b"one"}))["job_id"]
    for _ in range(3):
        requests.get(f"{stack.url}/get_state", params={"job_id": job_id}, timeout=30)
    assert requests.get(f"{stack.url}/get_state", params={"job_id": "x"},
                        timeout=30).status_code == 400
    wait_until(lambda: _access_lines(stack, "/get_state?job_id=x"), 30, "the error's line")
    assert not _access_lines(stack, f"/get_state?job_id={job_id} "), "sample 0 logs no success"
