"""The upload command against a real frontend and worker; the real uploader's bundles on our server."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest
import requests
from pacifica.uploader.bundler import Bundler
from pacifica.uploader.metadata import MetaData, MetaObj
from pacifica.uploader.uploader import Uploader

from factories import TRANSACTION, file_entry, make_bundle
from netcut import CuttingRelay
from test_upload_cli_bundle import make_tree

pytestmark = pytest.mark.e2e

FIELDS = ("--submitter", "10", "--project", "1234a", "--instrument", "54", "--kv", "Tag=foo")


def upload_command() -> list[str]:
    """The installed console script when there is one (as a user runs it), else the module."""
    script = os.path.join(os.path.dirname(sys.executable), "pacifica-ingest-upload")
    return [script] if os.path.exists(script) else [sys.executable, "-m",
                                                   "pacifica.ingest.client"]


def upload(stack, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    """Run the command against the stack, polling fast, with a bound on the whole run."""
    return subprocess.run([*upload_command(), "--url", url or stack.url, "--poll-interval",
                           "0.2", "--timeout", "120", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def test_directory_is_ingested_with_progress(stack, tmp_path):
    files = make_tree(tmp_path)
    result = upload(stack, "--json", "--progress", *FIELDS, str(tmp_path / "top"))
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert (state["state"], state["task"], state["complete"]) == ("OK", "ingest metadata", True)
    assert stack.archived(state["job_id"]) == files
    listing = stack.files(state["job_id"])
    assert listing["transaction"]["project"] == "1234a"
    assert listing["transaction"]["key_values"] == {"Tag": "foo"}
    for shown in ("hashing", "sending", "100%",
                  f"job {state['job_id']}: step 6/6 ingest metadata 100.0 %", "% of the job"):
        assert shown in result.stderr, result.stderr


def test_resume_mode_rides_out_a_broken_link(stack, tmp_path):
    files = {"big/one.bin": os.urandom(700_000), "big/two.bin": os.urandom(300_000)}
    for relative, data in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(data)
    relay = CuttingRelay(stack.port)
    relay.cut_after(400_000)  # inside the second chunk
    try:
        result = upload(stack, "--resume", "--chunk-size", "256KiB", "--state-file",
                        str(tmp_path / "state.json"), "--no-progress", "--json", *FIELDS,
                        str(tmp_path / "big"), url=relay.url)
    finally:
        relay.close()
    assert result.returncode == 0, result.stderr
    assert relay.cuts == 1
    assert "upload interrupted at byte" in result.stderr
    state = json.loads(result.stdout)
    assert state["state"] == "OK", state
    assert stack.archived(state["job_id"]) == files
    assert json.loads((tmp_path / "state.json").read_text()) == {}  # nothing left to resume


def test_run_again_continues_a_broken_upload(stack, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "payload.bin").write_bytes(os.urandom(600_000))
    common = ("--resume", "--chunk-size", "128KiB", "--state-file", str(tmp_path / "state.json"),
              "--no-progress", "--json", *FIELDS, str(tmp_path / "d"))
    relay = CuttingRelay(stack.port)  # the saved address goes through it: keep it up
    try:
        relay.cut_after(300_000)
        broken = upload(stack, "--retries", "0", *common, url=relay.url)
        assert broken.returncode == 3, broken.stderr
        assert "run the same command again" in broken.stderr, broken.stderr
        saved = json.loads((tmp_path / "state.json").read_text())
        (upload_url,) = saved.values()
        head = requests.head(upload_url, headers={"Tus-Resumable": "1.0.0"}, timeout=30)
        assert 0 < int(head.headers["Upload-Offset"]) < int(head.headers["Upload-Length"])

        again = upload(stack, *common, url=relay.url)
    finally:
        relay.close()
    assert again.returncode == 0, again.stderr
    assert "resuming the upload at byte" in again.stderr, again.stderr  # said, not silent
    state = json.loads(again.stdout)
    head = requests.head(upload_url.replace(f":{relay.port}/", f":{stack.port}/"),
                         headers={"Tus-Resumable": "1.0.0"}, timeout=30)
    assert head.headers["Ingest-Job-Id"] == str(state["job_id"])  # the same upload finished
    assert stack.archived(state["job_id"]) == {
        "d/payload.bin": (tmp_path / "d" / "payload.bin").read_bytes()}


def test_failing_bundle_exits_non_zero_with_the_reason(stack, tmp_path):
    data = b"the real bytes"
    bad = make_bundle({"bad.txt": data},
                      metadata=TRANSACTION + [file_entry("bad.txt", data, hashsum="0" * 40)])
    (tmp_path / "bad.tar").write_bytes(bad)
    for mode in ((), ("--resume", "--state-file", str(tmp_path / "state.json"))):
        result = upload(stack, "--no-progress", *mode, "--bundle", str(tmp_path / "bad.tar"))
        assert result.returncode == 1, result.stderr
        assert "FAILED" in result.stderr and "sha1 mismatch" in result.stderr, result.stderr


def test_refused_upload_exits_with_the_server_message(stack, tmp_path):
    (tmp_path / "empty.tar").write_bytes(b"")
    result = upload(stack, "--no-progress", "--bundle", str(tmp_path / "empty.tar"))
    assert result.returncode == 3, result.stderr
    assert "request body is empty" in result.stderr


def test_bundle_from_pacifica_uploader_is_accepted(stack, tmp_path):
    """The real client library (pacifica-uploader 0.3.1) bundles and posts; our server ingests."""
    files = {"data/inside.txt": b"under a folder named data", "a/b/c.bin": os.urandom(30_000),
             "名前/ファイル.txt": "ユニコード".encode("utf-8")}
    metadata = MetaData([
        MetaObj(destinationTable="Transactions.submitter", value="10", metaID="logon"),
        MetaObj(destinationTable="Transactions.project", value="1234a", metaID="project"),
        MetaObj(destinationTable="Transactions.instrument", value="54", metaID="instrument"),
        MetaObj(destinationTable="TransactionKeyValue", key="Tag", value="foo", metaID="tag"),
    ])
    file_data = [{"name": f"data/{path}", "fileobj": io.BytesIO(data), "size": len(data),
                  "mtime": time.time()} for path, data in files.items()]
    body = io.BytesIO()
    Bundler(metadata, file_data).stream(body)
    client = Uploader(upload_url=stack.url + "/upload", status_url=stack.url + "/get_state")
    job_id = client.upload(io.BytesIO(body.getvalue()), content_length=len(body.getvalue()))
    state = stack.wait(job_id)
    assert state["state"] == "OK", state
    assert stack.archived(job_id) == files


def test_the_same_command_again_never_ingests_twice_and_keeps_a_receipt(stack, tmp_path):
    files = make_tree(tmp_path)
    receipt = tmp_path / "receipt.json"
    first = upload(stack, "--json", "--receipt", str(receipt), *FIELDS, str(tmp_path / "top"))
    assert first.returncode == 0, first.stderr
    job_id = json.loads(first.stdout)["job_id"]
    again = upload(stack, "--json", *FIELDS, str(tmp_path / "top"))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["job_id"] == job_id  # the same bundle: the same job
    fresh = upload(stack, "--json", "--new", *FIELDS, str(tmp_path / "top"))
    assert json.loads(fresh.stdout)["job_id"] != job_id  # --new: a second submission
    assert stack.archived(job_id) == files

    saved = json.loads(receipt.read_text())
    assert saved["receipt"]["job_id"] == job_id
    assert {item["path"] for item in saved["receipt"]["files"]} == set(files)
    checked = stack.admin("verify-receipt", str(receipt), "--against-archive")
    assert "signature valid" in checked.stdout, checked.stdout
