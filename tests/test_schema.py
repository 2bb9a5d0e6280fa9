"""dbsync upgrades every older schema to this code's version (in-process, temp SQLite)."""
from __future__ import annotations

import base64
import hashlib
import json

import peewee
import pytest
from cryptography.hazmat.primitives import serialization

from faults import answers
from harness import MARIADB, Database
from pacifica.ingest import db, receipts, schema
from pacifica.ingest.config import DatabaseSettings


@pytest.fixture
def database(tmp_path):
    """A fresh SQLite database bound to the models."""
    bound = db.bind(DatabaseSettings(url=f"sqlite:///{tmp_path / 'jobs.sqlite3'}"))
    yield bound
    bound.close()


def _create_at(version: tuple[int, int], models) -> None:
    db.database_proxy.create_tables((schema.SchemaVersion, *models))
    for part, value in zip(("major", "minor"), version):
        schema.SchemaVersion.create(part=part, value=value)


def test_every_migration_reaches_this_version_with_every_table(database):
    first = min(schema.MIGRATIONS)
    added_later = set()
    for _, (_, step) in schema.MIGRATIONS.items():
        added_later.update(getattr(step, "models", ()))
    _create_at(first, [model for model in schema.MODELS if model not in added_later])
    assert schema.sync() == (schema.SCHEMA_MAJOR, schema.SCHEMA_MINOR)
    assert schema.is_equal()
    for model in schema.MODELS:
        assert database.table_exists(model._meta.table_name), model


def test_a_fresh_database_gets_the_current_version(database):
    assert schema.current_version() == (0, 0)
    assert schema.sync() == (schema.SCHEMA_MAJOR, schema.SCHEMA_MINOR)
    schema.require_compatible()


class _ReceiptAt11(db.BaseModel):
    """``ingest_receipts`` as schema 1.1 made it: the whole envelope in one row."""

    job_id = peewee.BigIntegerField(primary_key=True)
    document = db.LongTextField()

    class Meta:
        table_name = "ingest_receipts"


def _v1_envelope(job_id: int, key) -> str:
    """A receipt as the 1.1 code signed and stored it (its signature over the document)."""
    document = {"schema": "pacifica-ingest-receipt/1", "job_id": job_id,
                "transaction_id": job_id, "kind": "upload", "user": "ünï",
                "created": "2026-12-01T00:00:00Z", "completed": "2026-12-01T00:00:01Z",
                "file_count": 40, "total_bytes": 40,
                "files": [{"path": f"d/f{n}", "size": 1, "hashtype": "sha1",
                           "hashsum": f"{n:040x}", "archive_id": n + 1} for n in range(40)],
                "manifests": {"manifest-sha1.txt": "".join(
                    f"{n:040x}  data/d/f{n}\n" for n in range(40))}}
    signed = receipts.canonical(document)
    private = serialization.load_pem_private_key(key.private_pem.encode(), None)
    rest = json.dumps({"signature": base64.b64encode(private.sign(signed)).decode(),
                       "algorithm": "Ed25519", "key_id": key.key_id,
                       "sha256": hashlib.sha256(signed).hexdigest()})
    return '{"receipt": ' + signed.decode() + ", " + rest[1:]


@pytest.fixture(params=["sqlite", "mariadb"])
def any_database(request, tmp_path):
    """A fresh SQLite file or MariaDB schema, bound to the models."""
    if request.param == "mariadb" and not answers(MARIADB["port"]):
        pytest.skip("MariaDB does not answer on 127.0.0.1")
    made = Database(request.param, str(tmp_path))
    bound = db.bind(DatabaseSettings(url=made.url))
    yield bound
    bound.close()
    made.drop()


def test_receipts_of_schema_1_1_are_kept_in_parts_and_still_served_and_verified(
        any_database, monkeypatch):
    monkeypatch.setattr(receipts, "PART_BYTES", 1000)  # each spans several parts
    later = {receipts.Receipt, receipts.ReceiptPart}
    _create_at((1, 1), [model for model in schema.MODELS if model not in later] + [_ReceiptAt11])
    key = receipts.create_key()
    old = {job_id: _v1_envelope(job_id, key) for job_id in (3, 4)}
    for job_id, text in old.items():
        _ReceiptAt11.create(job_id=job_id, document=text)

    assert schema.sync() == (schema.SCHEMA_MAJOR, schema.SCHEMA_MINOR)
    columns = {column.name for column in any_database.get_columns("ingest_receipts")}
    assert "document" not in columns and {"sha256", "signature", "key_id"} <= columns
    for job_id, text in old.items():
        row = receipts.stored(job_id)
        assert row is not None, list(receipts.Receipt.select().dicts())
        assert row.schema == "pacifica-ingest-receipt/1"
        served = b"".join(receipts.envelope_pieces(row))
        assert json.loads(served) == json.loads(text)
        assert served == text.encode()  # the stored bytes, as 1.1 kept them
        assert receipts.ReceiptPart.select().where(
            receipts.ReceiptPart.job_id == job_id).count() > 3
        document = receipts.verify(json.loads(served), key.public_pem)
        assert document["file_count"] == 40
        manifest = b"".join(receipts.manifest_pieces(row)).decode()
        assert manifest == document["manifests"]["manifest-sha1.txt"]
    assert schema.sync() == (schema.SCHEMA_MAJOR, schema.SCHEMA_MINOR)  # again: nothing to do
