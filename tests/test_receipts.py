"""Signed ingest receipts on real processes: fetched, verified offline, audited against the archive."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization

from factories import TRANSACTION, file_entry, make_bundle
from faults import answers
from harness import MARIADB
from test_protocol_doc import indented_blocks, section

pytestmark = pytest.mark.e2e

FILES = {"run1/a.dat": b"alpha" * 1000, "run1/deeper/b.dat": os.urandom(4096), "c.txt": b""}


def receipt_of(stack, job_id: int, **headers):
    return stack.session.get(stack.url + "/receipt", params={"job_id": job_id}, timeout=30,
                             headers=headers)


def canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def test_receipt_is_signed_and_lists_exactly_what_was_archived(stack):
    job_id = stack.ingest(make_bundle(FILES))["job_id"]
    reply = receipt_of(stack, job_id)
    assert reply.status_code == 200, reply.text
    envelope = reply.json()
    keys = stack.session.get(stack.url + "/receipt-key", timeout=30).json()["keys"]
    key = next(key for key in keys if key["key_id"] == envelope["key_id"])
    digest = hashlib.sha256(canonical(envelope["receipt"])).hexdigest()
    assert envelope["sha256"] == digest
    public = serialization.load_pem_public_key(key["public_key"].encode())
    public.verify(base64.b64decode(envelope["signature"]),  # what docs/PROTOCOL.md says
                  b"pacifica-ingest-receipt/2\nsha256:" + digest.encode("ascii"))

    document = envelope["receipt"]
    assert document["schema"] == "pacifica-ingest-receipt/2"
    assert (document["job_id"], document["transaction_id"], document["user"]) == (
        job_id, job_id, "root")
    listed = {item["path"]: item for item in document["files"]}
    assert set(listed) == set(FILES)
    archived = {f"{row['subdir']}/{row['name']}".lstrip("/"): row
                for row in stack.files(job_id)["files"]}
    for path, data in FILES.items():
        item = listed[path]
        assert item["size"] == len(data)
        assert item["archive_id"] == archived[path]["_id"]
        assert item["hashsum"] == file_entry(path, data)["hashsum"]
    manifest = stack.session.get(stack.url + "/receipt", timeout=30,
                                 params={"job_id": job_id, "format": "manifest"}).text
    assert f"{listed['c.txt']['hashsum']}  data/c.txt\n" in manifest
    assert len(manifest.splitlines()) == len(FILES)


def verified_as_documented(stack, saved, tmp_path) -> str:
    """What docs/PROTOCOL.md's verification snippet prints for a saved receipt ("valid"),
    given only the public key; its error otherwise."""
    [snippet] = [block for block in indented_blocks(section(
        "docs/PROTOCOL.md", "### `GET /receipt?job_id=N`")) if "key.verify(" in block]
    key = tmp_path / "key.pem"
    key.write_text(stack.session.get(stack.url + "/receipt-key", timeout=30).json()
                   ["keys"][0]["public_key"])
    run = subprocess.run([sys.executable, "-c", snippet, str(saved), str(key)],
                         capture_output=True, text=True, timeout=120, check=False)
    return run.stdout.strip() or run.stderr.strip().splitlines()[-1]


def test_receipt_only_for_its_owner_and_only_when_complete(stack):
    stack.session.headers["X-Http-Authed-User"] = "alice"  # the session polls as alice
    try:
        job_id = stack.ingest(make_bundle({"mine.txt": b"mine"}))["job_id"]
        assert receipt_of(stack, job_id).status_code == 200
    finally:
        del stack.session.headers["X-Http-Authed-User"]
    assert receipt_of(stack, job_id, **{"X-Http-Authed-User": "mallory"}).status_code == 404
    bad = make_bundle({"x.txt": b"12345"}, metadata=TRANSACTION + [file_entry("x.txt", b"54321")])
    failed = stack.ingest(bad)["job_id"]
    reply = receipt_of(stack, failed)
    assert reply.status_code == 404 and "has no receipt" in reply.json()["message"]


def test_verify_receipt_finds_a_changed_receipt_and_a_changed_archive(stack, tmp_path):
    job_id = stack.ingest(make_bundle(FILES))["job_id"]
    envelope = receipt_of(stack, job_id).json()
    saved = tmp_path / "receipt.json"
    saved.write_text(json.dumps(envelope))
    key = tmp_path / "key.pem"
    key.write_text(stack.session.get(stack.url + "/receipt-key", timeout=30).json()
                   ["keys"][0]["public_key"])

    result = stack.admin("verify-receipt", str(saved), "--public-key", str(key))
    assert "signature valid" in result.stdout
    result = stack.admin("verify-receipt", str(saved), "--against-archive")
    assert f"{len(FILES)} of {len(FILES)} archived files match" in result.stdout

    changed = json.loads(json.dumps(envelope))
    changed["receipt"]["files"][0]["size"] += 1
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    result = stack.admin("verify-receipt", str(tmp_path / "changed.json"), check=False)
    assert result.returncode == 1 and "NOT VALID" in result.stdout, result.stdout
    assert verified_as_documented(stack, saved, tmp_path) == "valid"
    assert "the receipt was changed" in verified_as_documented(
        stack, tmp_path / "changed.json", tmp_path)

    item = next(item for item in envelope["receipt"]["files"] if item["path"] == "run1/a.dat")
    stored = stack.archive_path(item["archive_id"])
    with open(stored, "r+b") as handle:  # one flipped byte in the archive
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 1]))
    result = stack.admin("verify-receipt", str(saved), "--against-archive", check=False)
    assert result.returncode == 1
    assert "DIFFERS: run1/a.dat" in result.stdout, result.stdout
    assert f"{len(FILES) - 1} of {len(FILES)} archived files match" in result.stdout


def test_a_receipt_of_many_parts_is_served_whole(stack, tmp_path):
    """~6,000 files make a document of ~1.5 MiB: several stored parts (``PART_BYTES``),
    joined on the way out."""
    files = {f"d{number // 100:02d}/f{number:05d}": bytes([number % 251])
             for number in range(6000)}
    job_id = stack.ingest(make_bundle(files))["job_id"]
    reply = receipt_of(stack, job_id)
    assert reply.status_code == 200, reply.text
    envelope = reply.json()
    document = canonical(envelope["receipt"])
    assert len(document) > 1 << 20
    assert reply.content.startswith(b'{"receipt": ' + document + b', "signature": ')
    assert {item["path"] for item in envelope["receipt"]["files"]} == set(files)
    saved = tmp_path / "receipt.json"
    saved.write_bytes(reply.content)
    result = stack.admin("verify-receipt", str(saved))
    assert "signature valid" in result.stdout
    assert verified_as_documented(stack, saved, tmp_path) == "valid"
    manifest = stack.session.get(stack.url + "/receipt", timeout=60,
                                 params={"job_id": job_id, "format": "manifest"})
    assert manifest.text == envelope["receipt"]["manifests"]["manifest-sha1.txt"]


def _content(envelope: dict) -> dict:
    """What must not depend on the database: everything but ids and times."""
    document = dict(envelope["receipt"])
    for field in ("job_id", "transaction_id", "created", "completed"):
        document.pop(field)
    document["files"] = [{k: v for k, v in item.items() if k != "archive_id"}
                         for item in document["files"]]
    return document


def test_receipts_on_sqlite_and_mariadb_have_the_same_content(make_stack):
    if not answers(MARIADB["port"]):
        pytest.skip("MariaDB does not answer on 127.0.0.1")
    body = make_bundle(FILES)
    contents = []
    for database in ("sqlite", "mariadb"):
        stack = make_stack(database=database).start()
        job_id = stack.ingest(body)["job_id"]
        contents.append(_content(receipt_of(stack, job_id).json()))
        stack.stop()
    assert contents[0] == contents[1]
