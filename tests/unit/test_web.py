"""The frontend as servers host it (``create_app``'s WSGI application, ``GET /get_state``
answered by its middleware), driven in-process: routes, identity, errors."""
from __future__ import annotations

import json
import logging
import os

import pytest

from factories import make_bundle
from pacifica.ingest import auth, db, heartbeats, jobs
from rejections import GOOD

from .wsgi_client import WsgiClient

TAR = "application/octet-stream"
USER = "X-Http-Authed-User"  # [ingest] auth_header, believed from loopback (trusted_proxies)


def upload(client, user: str | None = None) -> dict:
    """POST a good bundle (as ``user``); the job state it answers."""
    answer = client.post("/upload", make_bundle(GOOD), content_type=TAR,
                         headers={USER: user} if user else None)
    assert answer.status == 200, answer.body
    return answer.json()


def assert_error(answer, status: int, words: str = "") -> dict:
    """An error answered as the JSON error object, with no traceback in it."""
    assert answer.status == status, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["status"].startswith(str(status)) and body["traceback"] == ""
    assert words in body["message"], body["message"]
    assert b"Traceback" not in answer.body and b'File "' not in answer.body
    return body


def test_root_says_it_runs(client):
    assert client.get("/").json() == {"message": "Pacifica Ingest Up and Running"}


def test_health_answers_alive(client):
    answer = client.get("/health")
    assert (answer.status, answer.json()) == (200, {"alive": True})


def test_upload_records_the_job_and_hands_it_to_the_broker(client, recorder):
    state = upload(client)
    assert (state["state"], state["task"], state["task_percent"], state["complete"]) == (
        "OK", "UPLOADING", "100.0", False)
    assert recorder.jobs == [(state["job_id"], "upload")]
    job = jobs.get(state["job_id"])
    assert (job.user, job.queue_state, job.bytes_received) == (
        "root", jobs.QUEUED, job.bytes_expected)
    with open(job.path, "rb") as landed:
        assert landed.read() == make_bundle(GOOD)


def test_ingest_is_upload_under_its_other_name(client, recorder):
    answer = client.post("/ingest", make_bundle(GOOD), content_type="application/x-tar")
    assert answer.status == 200 and recorder.ids == [answer.json()["job_id"]]


def test_uploaded_job_runs_to_complete_and_get_state_says_so(client, run_recorded):
    job_id = upload(client)["job_id"]
    assert run_recorded() == [job_id]
    state = client.get(f"/get_state?job_id={job_id}").json()
    assert (state["state"], state["task"], state["task_percent"], state["complete"]) == (
        "OK", "ingest metadata", "100.0", True)


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded", "text/plain"])
def test_a_form_or_text_body_is_refused_with_415(client, recorder, content_type):
    answer = client.post("/upload", b"--x\r\nContent-Disposition: form-data\r\n\r\n--x--\r\n",
                         content_type=content_type)
    assert_error(answer, 415, "application/octet-stream")
    assert recorder.jobs == []
    assert client.get("/get_state?job_id=1").status == 404  # no job was made


def test_an_empty_body_is_refused(client, recorder):
    assert_error(client.post("/upload", b"", content_type=TAR), 400, "empty")
    assert recorder.jobs == []


@pytest.mark.parametrize("query, words", [
    ("", "job_id is required"),
    ("?job_id=", "job_id must be an integer"),
    ("?job_id=abc", "job_id must be an integer"),
    ("?job_id=1.5", "job_id must be an integer"),
    ("?job_id=-1", "job_id must be an integer"),
    ("?job_id=0", "job_id must be an integer"),
    ("?job_id=99999999999999999999", "job_id must be an integer"),
    ("?job_id=1&job_id=2", "job_id must be an integer"),
])
@pytest.mark.parametrize("path", ["/get_state", "/get_files"])
def test_a_missing_or_malformed_job_id_is_400(client, path, query, words):
    upload(client)
    assert_error(client.get(path + query), 400, words)


@pytest.mark.parametrize("path", ["/get_state", "/get_files"])
def test_an_unknown_job_is_404(client, path):
    upload(client)
    assert_error(client.get(f"{path}?job_id=2"), 404, "job ID 2 does not exist.")


@pytest.mark.parametrize("path", ["/get_state", "/get_files"])
def test_another_users_job_is_404_word_for_word_as_an_unknown_one(client, path):
    job_id = upload(client, user="alice")["job_id"]
    assert client.get(f"{path}?job_id={job_id}", headers={USER: "alice"}).status == 200
    hidden = client.get(f"{path}?job_id={job_id}", headers={USER: "bob"})
    assert_error(hidden, 404, f"job ID {job_id} does not exist.")
    never = client.get(f"{path}?job_id={job_id + 1}", headers={USER: "bob"})
    assert hidden.json() == dict(never.json(), message=f"job ID {job_id} does not exist.")


def test_the_owner_sees_the_job_state(client):
    state = upload(client, user="alice")
    seen = client.get(f"/get_state?job_id={state['job_id']}", headers={USER: "alice"})
    assert seen.status == 200 and seen.json()["job_id"] == state["job_id"]
    assert set(seen.json()) >= {"job_id", "state", "task", "task_percent", "complete",
                                "updated", "created", "exception"}


@pytest.mark.parametrize("setting_overrides", [{"AUTH_ADMINS": "boss"}])
def test_an_admin_sees_every_job(client):
    job_id = upload(client, user="alice")["job_id"]
    for path in ("/get_state", "/get_files"):
        assert client.get(f"{path}?job_id={job_id}", headers={USER: "boss"}).status == 200
        assert client.get(f"{path}?job_id={job_id}", headers={USER: "eve"}).status == 404


def test_the_identity_header_from_an_untrusted_peer_is_refused(app):
    outsider = WsgiClient(app, remote_addr="203.0.113.9")
    assert_error(outsider.get("/get_state?job_id=1", headers={USER: "alice"}), 400,
                 "trusted proxy")
    assert_error(outsider.post("/upload", make_bundle(GOOD), content_type=TAR,
                               headers={USER: "alice"}), 400, "trusted proxy")


def test_get_files_lists_the_transaction_and_files_once_ingested(client, run_recorded):
    job_id = upload(client)["job_id"]
    before = client.get(f"/get_files?job_id={job_id}").json()
    assert before["files"] == [] and before["transaction"] is None
    assert before["job"]["job_id"] == job_id
    run_recorded()
    after = client.get(f"/get_files?job_id={job_id}").json()
    assert after["job"]["complete"] is True
    assert after["transaction"]["key_values"] == {"Tag": "foo"}
    assert sorted((f["subdir"], f["name"], f["size"]) for f in after["files"]) == sorted(
        (path.rpartition("/")[0], path.rpartition("/")[2], len(data))
        for path, data in GOOD.items())
    assert all(isinstance(f["_id"], int) for f in after["files"])


@pytest.mark.parametrize("method, path, words", [
    ("GET", "/no/such/thing", "the endpoints are"),
    ("POST", "/nothing-here", "the endpoints are"),
    ("GET", "/get_state/7", "GET /get_state?job_id=N"),
    ("POST", "/upload/extra", "POST bundles to /upload"),
    ("GET", "/get_files/1/2", "GET /get_files?job_id=N"),
])
def test_an_unknown_path_is_a_404_naming_the_right_one(client, method, path, words):
    assert_error(client.request(method, path), 404, words)


def test_a_wrong_method_is_405_json(client):
    assert_error(client.request("DELETE", "/get_files?job_id=1"), 405)


def corrupt(job_id: int) -> None:
    """Make a job row unreadable (a value no code writes), so reading it raises."""
    db.database_proxy.execute_sql("UPDATE ingest_jobs SET task_percent = 'garbage' WHERE id = ?",
                                  (job_id,))


@pytest.mark.parametrize("path", ["/get_state", "/get_files"])
def test_an_internal_error_is_a_500_without_traceback(client, path):
    job_id = upload(client)["job_id"]
    corrupt(job_id)
    body = assert_error(client.get(f"{path}?job_id={job_id}"), 500)
    assert "garbage" not in json.dumps(body) and "ValueError" not in json.dumps(body)


def test_a_body_cut_short_fails_its_job_and_leaves_nothing_on_the_volume(settings, client,
                                                                         recorder):
    answer = client.post("/upload", b"x" * 100, content_type=TAR,
                         headers={"Content-Length": "5000"})
    assert_error(answer, 400, "interrupted: 100 bytes of 5000 arrived")
    state = client.get("/get_state?job_id=1").json()
    assert (state["state"], state["task"], state["complete"]) == ("FAILED", "UPLOADING", True)
    assert recorder.jobs == []
    assert not any(name.startswith("1.") for name in os.listdir(settings.ingest.volume_path))


@pytest.mark.parametrize("setting_overrides", [{"INGEST_MAX_BUNDLE_SIZE": "1 Kb"}])
def test_a_bundle_over_the_size_cap_is_413_before_any_job(client, recorder):
    assert_error(client.post("/upload", make_bundle(GOOD), content_type=TAR), 413,
                 "over the 1024-byte limit")
    assert recorder.jobs == [] and client.get("/get_state?job_id=1").status == 404


def test_move_is_403_while_no_roots_are_set(client, recorder):
    answer = client.post("/move", b"[]", content_type="application/json")
    assert_error(answer, 403, "allowed_roots")
    assert recorder.jobs == []


def test_the_same_idempotency_key_answers_the_same_job(client, recorder):
    key = {"Idempotency-Key": "run-7"}
    first = client.post("/upload", make_bundle(GOOD), content_type=TAR, headers=key).json()
    again = client.post("/upload", make_bundle(GOOD), content_type=TAR, headers=key).json()
    assert again["job_id"] == first["job_id"]
    assert recorder.jobs == [(first["job_id"], "upload")]
    other = client.post("/upload", make_bundle({"else.bin": bytes(20000)}), content_type=TAR,
                        headers=key)  # another length: another body
    assert_error(other, 422, "already used for another request")
    assert recorder.jobs == [(first["job_id"], "upload")]


@pytest.mark.parametrize("setting_overrides", [{"AUTH_REQUIRE_USER": "true"}])
def test_without_an_identity_it_is_401_with_a_challenge_and_a_token_opens(client):
    for path in ("/get_state?job_id=1", "/get_files?job_id=1"):
        refused = client.get(path)
        assert_error(refused, 401, "needs to know who you are")
        assert "Bearer" in refused.headers["www-authenticate"]
    _, secret = auth.create_token("alice")
    bearer = {"Authorization": f"Bearer {secret}"}
    job_id = client.post("/upload", make_bundle(GOOD), content_type=TAR,
                         headers=bearer).json()["job_id"]
    assert client.get(f"/get_state?job_id={job_id}", headers=bearer).status == 200
    assert client.get(f"/get_files?job_id={job_id}", headers=bearer).status == 200
    assert_error(client.get(f"/get_state?job_id={job_id}",
                            headers={"Authorization": "Bearer pi_not-a-token"}), 401)


def test_ready_is_503_naming_the_missing_worker(client):
    answer = client.get("/ready")
    assert answer.status == 503 and answer.json()["failing"] == ["workers"]
    assert answer.json()["checks"]["database"]["ok"] is True


def test_ready_is_200_once_a_worker_of_its_queue_beats(settings, client):
    heartbeats.beat("worker@unit:1", settings.celery.queue_name)
    answer = client.get("/ready")
    assert answer.status == 200 and answer.json()["ready"] is True


def test_get_state_access_line_escapes_what_the_client_sent(app, client):
    """One access line per poll; the client's quotes and line breaks cannot forge another."""
    state = upload(client)
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    app.log.access_log.addHandler(handler)
    try:
        answer = client.get(f"/get_state?job_id={state['job_id']}",
                            headers={"User-Agent": 'evil"\n1.2.3.4 - - [x] "GET / HTTP/1.1" 200',
                                     "Referer": "a\"b"})
    finally:
        app.log.access_log.removeHandler(handler)
    assert answer.status == 200
    (line,) = lines
    assert "\n" not in line and line.startswith("127.0.0.1 - - [")
    assert f'"GET /get_state?job_id={state["job_id"]} HTTP/1.1" 200 {len(answer.body)} ' in line
    assert line.endswith('"a\\"b" "evil\\"\\n1.2.3.4 - - [x] \\"GET / HTTP/1.1\\" 200"'), line
