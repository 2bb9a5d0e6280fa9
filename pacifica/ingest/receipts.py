"""Signed ingest receipts: proof of what the archive accepted, checkable without our database.

When a job completes the worker records a receipt: a JSON document (schema below, versioned)
naming the job, its transaction, the user, the times and, for every file, its path, size,
hash type, verified hash and archive id, plus a BagIt-style manifest per hash type.  It is
signed with the service's Ed25519 key over its canonical bytes (sorted keys, no spaces,
UTF-8).  ``verify`` needs only the receipt and the public key (``GET /receipt-key``).
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
from typing import Iterable

import peewee
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

from .db import BaseModel, LongTextField, retrying
from .errors import ArchiveError
from . import protocol
from .jobs import utcnow

SCHEMA = "pacifica-ingest-receipt/1"
ALGORITHM = "Ed25519"


class ReceiptError(ValueError):
    """A receipt that does not verify, or cannot be read."""


class SigningKey(BaseModel):
    """The service's receipt keys; the newest signs, every one still verifies."""

    key_id = peewee.CharField(max_length=64, primary_key=True)
    private_pem = peewee.TextField()
    public_pem = peewee.TextField()
    created = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "ingest_receipt_keys"


class Receipt(BaseModel):
    """One completed job's signed receipt."""

    job_id = peewee.BigIntegerField(primary_key=True)
    document = LongTextField()  # the signed envelope, as served

    class Meta:
        table_name = "ingest_receipts"


def key_id_of(public_pem: str) -> str:
    """A short stable name of a public key."""
    return hashlib.sha256(public_pem.encode("ascii")).hexdigest()[:16]


def create_key() -> SigningKey:
    """Make a new signing key; it signs every receipt from now on."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode("ascii")
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    return SigningKey.create(key_id=key_id_of(public_pem), private_pem=private_pem,
                             public_pem=public_pem)


def current_key() -> SigningKey:
    """The newest key, made on first use."""
    key = SigningKey.select().order_by(SigningKey.created.desc(),
                                       SigningKey.key_id).first()
    return key or create_key()


def public_keys() -> list[dict]:
    """Every key a receipt may be signed with, newest first."""
    return [{"key_id": key.key_id, "algorithm": ALGORITHM, "public_key": key.public_pem,
             "created": key.created.strftime("%Y-%m-%d %H:%M:%S")}
            for key in SigningKey.select().order_by(SigningKey.created.desc())]


def canonical(document: dict) -> bytes:
    """The bytes a signature covers."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def document_bytes(job, final: Iterable[dict], completed: datetime.datetime) -> bytearray:
    """The canonical bytes (see ``canonical``) of a job's receipt document, from the metadata
    list it recorded (``final``, its Files entries in archive-id order, as both pipelines
    give them).  Written a file at a time: no object per file is kept, only the bytes."""
    files, manifests = bytearray(), {}
    count = total = 0
    last_id = None
    for entry in final:
        if not (isinstance(entry, dict) and entry.get(protocol.DESTINATION) == protocol.FILES_TABLE):
            continue
        subdir = str(entry.get("subdir") or "").strip("/")
        path = f"{subdir}/{entry['name']}" if subdir else str(entry["name"])
        item = {"path": path, "size": int(entry["size"]),
                "hashtype": str(entry["hashtype"]).lower(),
                "hashsum": str(entry["hashsum"]).lower(), "archive_id": entry["_id"]}
        if last_id is not None and item["archive_id"] <= last_id:
            raise ValueError("a receipt lists files in archive-id order")
        last_id = item["archive_id"]
        files += (b"," if count else b"") + canonical(item)
        manifest = manifests.setdefault(item["hashtype"], bytearray())
        manifest += _json(f"{item['hashsum']}  {protocol.DATA_ROOT}/{path}\n")[1:-1]
        count += 1
        total += item["size"]
    head = {"schema": SCHEMA, "job_id": job.job_id, "transaction_id": job.job_id,
            "kind": job.kind, "user": job.user, "created": _stamp(job.created),
            "completed": _stamp(completed), "file_count": count, "total_bytes": total}
    head["files"] = head["manifests"] = None  # placeholders, for the order of the keys
    document = bytearray(b"{")
    for number, key in enumerate(sorted(head)):
        document += (b"," if number else b"") + _json(key) + b":"
        if key == "files":  # each part is copied once, and let go of before the next
            document += b"["
            document += files
            files = bytearray()
            document += b"]"
        elif key == "manifests":
            document += b"{"
            for position, alg in enumerate(sorted(manifests)):
                document += (b"," if position else b"") + _json(f"manifest-{alg}.txt") + b':"'
                document += manifests.pop(alg)
                document += b'"'
            document += b"}"
        else:
            document += _json(head[key])
    document += b"}"
    return document


def _json(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _stamp(value) -> str:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def sign(document: bytearray, key: SigningKey) -> str:
    """The envelope, as JSON text: the document (its canonical bytes), its signature and the
    key that made it.  ``document`` becomes the envelope in place (a big one is not copied
    twice)."""
    private = serialization.load_pem_private_key(key.private_pem.encode("ascii"), None)
    signature = base64.b64encode(private.sign(document)).decode("ascii")
    rest = json.dumps({"signature": signature, "algorithm": ALGORITHM, "key_id": key.key_id,
                       "sha256": hashlib.sha256(document).hexdigest()})
    document[0:0] = b'{"receipt": '
    document += b", " + rest[1:].encode("ascii")
    return document.decode("utf-8")


def record(job, final: Iterable[dict]) -> None:
    """Sign and keep a completed job's receipt (a redelivered job keeps its first one)."""
    if Receipt.get_or_none(Receipt.job_id == job.job_id) is not None:
        return
    envelope = sign(document_bytes(job, final, utcnow()), current_key())
    retrying(Receipt.insert(job_id=job.job_id, document=envelope).on_conflict_ignore().execute)


def of_job(job_id: int) -> dict | None:
    """A job's signed receipt, or None if it has none (not complete, or failed)."""
    row = Receipt.get_or_none(Receipt.job_id == job_id)
    return None if row is None else json.loads(row.document)


def verify(envelope: dict, public_pem: str) -> dict:
    """The receipt document if the signature holds for ``public_pem``; ReceiptError otherwise."""
    try:
        document = envelope["receipt"]
        signature = base64.b64decode(envelope["signature"], validate=True)
        public = serialization.load_pem_public_key(public_pem.encode("ascii"))
    except (KeyError, TypeError, ValueError) as err:
        raise ReceiptError(f"not a receipt this service signs ({err})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ReceiptError("the public key is not an Ed25519 key")
    try:
        public.verify(signature, canonical(document))
    except InvalidSignature:
        raise ReceiptError("the signature does not match the receipt: it was changed after "
                           "signing, or signed by another key") from None
    if document.get("schema") != SCHEMA:
        raise ReceiptError(f"unknown receipt schema {document.get('schema')!r}")
    return document


def audit(document: dict, archive) -> list[str]:
    """Re-hash every archived file a receipt names; one line per file that differs or is gone."""
    problems = []
    for item in document["files"]:
        digest = hashlib.new(item["hashtype"])
        size = 0
        try:
            with archive.read(item["archive_id"]) as stored:
                for piece in iter(lambda handle=stored: handle.read(1 << 20), b""):
                    digest.update(piece)
                    size += len(piece)
        except (OSError, ArchiveError) as err:
            problems.append(f"{item['path']} (archive id {item['archive_id']}): cannot be read "
                            f"({getattr(err, 'strerror', None) or err})")
            continue
        if size != item["size"] or digest.hexdigest() != item["hashsum"]:
            problems.append(f"{item['path']} (archive id {item['archive_id']}): the archive holds "
                            f"{size} bytes with {item['hashtype']} {digest.hexdigest()}, the "
                            f"receipt says {item['size']} bytes with {item['hashsum']}")
    return problems
