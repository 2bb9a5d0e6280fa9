"""Signed receipts in-process: schema /2 (a signed statement of the document's SHA-256, the
document stored in parts), tampering refused, /1 still verified, several parts served whole."""
from __future__ import annotations

import base64
import copy
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from factories import make_bundle
from pacifica.ingest import jobs, receipts

from .conftest import archive_listing
from .test_pipeline import FILES

USER = "X-Http-Authed-User"


def public_pem() -> str:
    [key] = receipts.public_keys()
    return key["public_key"]


@pytest.fixture
def envelope(landed, run_job) -> dict:
    """The receipt of a completed job of ``FILES``."""
    job_id = landed(make_bundle(FILES))
    run_job(job_id)
    return receipts.of_job(job_id)


def test_a_v2_signature_covers_the_schema_and_the_documents_sha256(envelope):
    document = envelope["receipt"]
    assert document["schema"] == "pacifica-ingest-receipt/2"
    digest = hashlib.sha256(receipts.canonical(document)).hexdigest()
    assert envelope["sha256"] == digest
    public = serialization.load_pem_public_key(public_pem().encode())
    public.verify(base64.b64decode(envelope["signature"]),  # raises if it does not hold
                  b"pacifica-ingest-receipt/2\nsha256:" + digest.encode())
    assert receipts.verify(envelope, public_pem()) == document
    assert document["file_count"] == len(FILES)
    assert document["total_bytes"] == sum(map(len, FILES.values()))


def _changed_document(envelope):
    envelope["receipt"]["files"][0]["size"] += 1


def _changed_document_and_sha256(envelope):
    envelope["receipt"]["files"][0]["size"] += 1
    envelope["sha256"] = hashlib.sha256(receipts.canonical(envelope["receipt"])).hexdigest()


def _changed_sha256(envelope):
    envelope["sha256"] = "0" * 64


def _changed_signature(envelope):
    signature = bytearray(base64.b64decode(envelope["signature"]))
    signature[0] ^= 1
    envelope["signature"] = base64.b64encode(bytes(signature)).decode()


def _as_v1(envelope):  # a /2 signature does not hold over a /1 document
    envelope["receipt"]["schema"] = "pacifica-ingest-receipt/1"


@pytest.mark.parametrize("change", [_changed_document, _changed_document_and_sha256,
                                    _changed_sha256, _changed_signature, _as_v1])
def test_a_changed_receipt_does_not_verify(envelope, change):
    changed = copy.deepcopy(envelope)
    change(changed)
    with pytest.raises(receipts.ReceiptError):
        receipts.verify(changed, public_pem())


def test_a_v1_receipt_signed_over_its_whole_document_still_verifies(envelope):
    document = dict(envelope["receipt"], schema="pacifica-ingest-receipt/1")
    private = serialization.load_pem_private_key(
        receipts.current_key().private_pem.encode(), None)
    old = {"receipt": document, "algorithm": "Ed25519", "key_id": envelope["key_id"],
           "signature": base64.b64encode(private.sign(receipts.canonical(document))).decode(),
           "sha256": hashlib.sha256(receipts.canonical(document)).hexdigest()}
    assert receipts.verify(old, public_pem()) == document
    _changed_document(old)
    with pytest.raises(receipts.ReceiptError):
        receipts.verify(old, public_pem())


def test_a_receipt_of_several_parts_is_served_byte_for_byte(monkeypatch, client, landed,
                                                            run_job):
    monkeypatch.setattr(receipts, "PART_BYTES", 97)  # a prime: parts split tokens and UTF-8
    job_id = landed(make_bundle(FILES))
    run_job(job_id)
    row = receipts.stored(job_id)
    parts = receipts.ReceiptPart.select().where(receipts.ReceiptPart.job_id == job_id)
    assert parts.count() == -(-row.size // 97) > 3
    assert max(len(bytes(part.data)) for part in parts) == 97

    answer = client.get(f"/receipt?job_id={job_id}")
    assert answer.status == 200 and answer.headers["content-type"] == "application/json"
    envelope = answer.json()
    document = receipts.canonical(envelope["receipt"])
    assert answer.body.startswith(b'{"receipt": ' + document + b', "signature": ')
    assert len(document) == row.size and envelope["sha256"] == row.sha256
    assert receipts.verify(envelope, public_pem())["job_id"] == job_id

    manifest = client.get(f"/receipt?job_id={job_id}&format=manifest")
    assert manifest.status == 200
    assert manifest.body.decode() == "".join(envelope["receipt"]["manifests"].values())
    assert "ünïcode" in manifest.body.decode()


def test_a_job_with_a_receipt_keeps_its_first_one(landed, run_job):
    job_id = landed(make_bundle(FILES))
    job = run_job(job_id)
    first = receipts.of_job(job_id)
    receipts.record(job, [])  # a redelivery: nothing changes
    assert receipts.of_job(job_id) == first


def test_a_failure_while_recording_leaves_no_receipt(landed, run_job):
    job_id = landed(make_bundle(FILES))
    job = run_job(job_id)
    receipts.Receipt.delete().execute()
    receipts.ReceiptPart.delete().execute()

    def broken():
        yield {"destinationTable": "Files", "name": "a", "subdir": "", "size": 1,
               "hashtype": "sha1", "hashsum": "0" * 40, "_id": 5}
        yield {"destinationTable": "Files", "name": "b", "subdir": "", "size": 1,
               "hashtype": "sha1", "hashsum": "0" * 40, "_id": 4}

    with pytest.raises(ValueError, match="archive-id order"):
        receipts.record(job, list(broken()))
    assert receipts.stored(job_id) is None
    assert receipts.ReceiptPart.select().count() == 0


def test_a_failure_after_some_parts_are_written_leaves_no_receipt_and_no_files(
        monkeypatch, settings, landed, run_job):
    monkeypatch.setattr(receipts, "PART_BYTES", 97)

    def fails(*_args):  # a fault once every part is written, before the row is signed
        raise OSError("the signing device went away")

    monkeypatch.setattr(receipts, "statement", fails)
    job_id = landed(make_bundle(FILES))
    with pytest.raises(OSError, match="signing device"):  # the task fails, as Celery sees it
        run_job(job_id)
    job = jobs.get(job_id)
    assert job.state == "FAILED" and "ingest metadata" in job.exception, job.exception
    assert receipts.stored(job.job_id) is None
    assert receipts.Receipt.select().count() == receipts.ReceiptPart.select().count() == 0
    assert archive_listing(settings) == []
