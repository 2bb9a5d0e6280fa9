"""Signed ingest receipts: proof of what the archive accepted, checkable without our database.

When a job completes the worker records a receipt: a JSON document (schema below, versioned)
naming the job, its transaction, the user, the times and, for every file, its path, size,
hash type, verified hash and archive id, plus a BagIt-style manifest per hash type.  Its
canonical bytes (sorted keys, no spaces, UTF-8) are written in a stream, hashed as they go and
kept in parts of at most ``PART_BYTES``; the service's Ed25519 key signs a short statement
naming the schema and that SHA-256 (``statement``), so no step holds the whole document.
Receipts of schema /1 (signed over the whole document) still verify.  ``verify`` needs only
the receipt and the public key (``GET /receipt-key``).
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
import tempfile
from typing import Callable, Iterable, Iterator

import ijson
import peewee
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

from .db import BaseModel, LongBlobField, database_proxy, retrying
from .errors import ArchiveError
from . import protocol
from .jobs import utcnow

SCHEMA = "pacifica-ingest-receipt/2"
SCHEMA_V1 = "pacifica-ingest-receipt/1"  # signed over the whole document; still verified
ALGORITHM = "Ed25519"
# The most bytes of a receipt document in one row (256 KiB): far below MariaDB's default
# max_allowed_packet (16 MiB), and about what a writer or a reader holds at once (1 MiB
# parts cost the worker 3 MiB more at its peak; 720 rows hold a million files' receipt).
PART_BYTES = 1 << 18


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
    """One completed job's signed receipt: its signature; the document is in its parts.

    The columns are null only while a receipt is being written (in one transaction) and in
    a schema 1.1 database before dbsync."""

    job_id = peewee.BigIntegerField(primary_key=True)
    schema = peewee.CharField(max_length=64, null=True)
    sha256 = peewee.CharField(max_length=64, null=True)  # of the document's canonical bytes
    signature = peewee.CharField(max_length=128, null=True)  # base64
    key_id = peewee.CharField(max_length=64, null=True)
    size = peewee.BigIntegerField(null=True)  # the document's bytes

    class Meta:
        table_name = "ingest_receipts"


class ReceiptPart(BaseModel):
    """A piece of a receipt document's canonical bytes, in order of ``part_no`` from 0."""

    job_id = peewee.BigIntegerField()
    part_no = peewee.IntegerField()
    data = LongBlobField()

    class Meta:
        table_name = "ingest_receipt_parts"
        primary_key = peewee.CompositeKey("job_id", "part_no")


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
    """A document's canonical bytes (what /1 signs, what /2's sha256 is of)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def statement(schema: str, sha256_hex: str) -> bytes:
    """What a /2 signature covers: the schema and the SHA-256 of the document's canonical
    bytes, e.g. ``b"pacifica-ingest-receipt/2\\nsha256:<64 hex>"`` (never a JSON document, so
    it cannot be taken for a /1 one)."""
    return f"{schema}\nsha256:{sha256_hex}".encode("ascii")


def manifest_name(hashtype: str) -> str:
    """The key of a hash type's manifest in ``manifests``."""
    return f"manifest-{hashtype}.txt"


def manifest_line(item: dict) -> str:
    """A file's line in its hash type's BagIt manifest."""
    return f"{item['hashsum']}  {protocol.DATA_ROOT}/{item['path']}\n"


def _item(entry) -> dict | None:
    """A Files entry of the recorded metadata as the receipt lists it (None for the rest)."""
    if not (isinstance(entry, dict) and entry.get(protocol.DESTINATION) == protocol.FILES_TABLE):
        return None
    subdir = str(entry.get("subdir") or "").strip("/")
    path = f"{subdir}/{entry['name']}" if subdir else str(entry["name"])
    return {"path": path, "size": int(entry["size"]), "hashtype": str(entry["hashtype"]).lower(),
            "hashsum": str(entry["hashsum"]).lower(), "archive_id": entry["_id"]}


class _Document:
    """A job's receipt document, from one pass over the metadata list it recorded (``final``,
    its Files entries in archive-id order, as both pipelines give them): the file list and
    each manifest go to temporary files, and ``pieces`` gives the canonical bytes in order."""

    def __init__(self, job, final: Iterable[dict], completed: datetime.datetime):
        self._files = tempfile.TemporaryFile()
        self._manifests: dict[str, object] = {}
        try:
            count, total = self._write(final)
        except BaseException:
            self.close()
            raise
        self.head = {"schema": SCHEMA, "job_id": job.job_id, "transaction_id": job.job_id,
                     "kind": job.kind, "user": job.user, "created": _stamp(job.created),
                     "completed": _stamp(completed), "file_count": count, "total_bytes": total,
                     "files": None, "manifests": None}  # placeholders, for the order of the keys

    def _write(self, final: Iterable[dict]) -> tuple[int, int]:
        count = total = 0
        last_id = None
        for entry in final:
            item = _item(entry)
            if item is None:
                continue
            if last_id is not None and item["archive_id"] <= last_id:
                raise ValueError("a receipt lists files in archive-id order")
            last_id = item["archive_id"]
            self._files.write((b"," if count else b"") + canonical(item))
            manifest = self._manifests.get(item["hashtype"])
            if manifest is None:
                manifest = self._manifests[item["hashtype"]] = tempfile.TemporaryFile()
            manifest.write(_json(manifest_line(item))[1:-1])
            count += 1
            total += item["size"]
        return count, total

    def pieces(self) -> Iterator[bytes]:
        """The document's canonical bytes, in pieces (again each time it is called)."""
        yield b"{"
        for number, key in enumerate(sorted(self.head)):
            yield (b"," if number else b"") + _json(key) + b":"
            if key == "files":
                yield b"["
                yield from _read_back(self._files)
                yield b"]"
            elif key == "manifests":
                yield b"{"
                for position, alg in enumerate(sorted(self._manifests,
                                                      key=manifest_name)):
                    yield (b"," if position else b"") + _json(manifest_name(alg)) + b':"'
                    yield from _read_back(self._manifests[alg])
                    yield b'"'
                yield b"}"
            else:
                yield _json(self.head[key])
        yield b"}"

    def close(self) -> None:
        """Drop the temporary files."""
        for handle in (self._files, *self._manifests.values()):
            handle.close()


READ_BYTES = 1 << 16  # what is read back from a temporary file at a time


def _read_back(handle) -> Iterator[bytes]:
    handle.flush()
    handle.seek(0)
    yield from iter(lambda: handle.read(READ_BYTES), b"")


def _json(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _stamp(value) -> str:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


class _Parts:
    """Writes a receipt document's bytes as rows of at most ``PART_BYTES``, hashing them."""

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.digest = hashlib.sha256()
        self.size = 0
        self._buffer = bytearray()
        self._number = 0

    def write(self, data: bytes) -> None:
        """Add bytes; full parts are stored at once."""
        self.digest.update(data)
        self.size += len(data)
        self._buffer += data
        while len(self._buffer) >= PART_BYTES:
            with memoryview(self._buffer) as view:
                part = bytes(view[:PART_BYTES])  # one copy
            del self._buffer[:PART_BYTES]
            self._put(part)

    def close(self) -> None:
        """Store the last part."""
        if self._buffer or not self._number:
            self._put(bytes(self._buffer))
            self._buffer = bytearray()

    def _put(self, data: bytes) -> None:
        ReceiptPart.insert(job_id=self.job_id, part_no=self._number, data=data).execute()
        self._number += 1


def _store(job_id: int, pieces: Callable[[], Iterable[bytes]], schema: str,
           signature_of: Callable[[str], tuple[str, str]]) -> None:
    """In one transaction: claim the job's receipt row, write the document's parts, then
    the signature ``signature_of(sha256)`` gives (base64, key id).  A job with a receipt
    already keeps it; a failure leaves none."""
    with database_proxy.atomic():
        claimed = Receipt.insert(job_id=job_id).on_conflict_ignore().as_rowcount().execute()
        if claimed:
            _sign_row(job_id, pieces, schema, signature_of)


def _sign_row(job_id: int, pieces: Callable[[], Iterable[bytes]], schema: str,
              signature_of: Callable[[str], tuple[str, str]]) -> None:
    """Write a claimed receipt row's parts, then its signature."""
    parts = _Parts(job_id)
    for piece in pieces():
        parts.write(piece)
    parts.close()
    digest = parts.digest.hexdigest()
    signature, key_id = signature_of(digest)
    Receipt.update(schema=schema, sha256=digest, signature=signature, key_id=key_id,
                   size=parts.size).where(Receipt.job_id == job_id).execute()


def record(job, final: Iterable[dict]) -> None:
    """Sign and keep a completed job's receipt (a redelivered job keeps its first one)."""
    if Receipt.get_or_none(Receipt.job_id == job.job_id) is not None:
        return
    key = current_key()
    private = serialization.load_pem_private_key(key.private_pem.encode("ascii"), None)

    def signature_of(digest: str) -> tuple[str, str]:
        signed = private.sign(statement(SCHEMA, digest))
        return base64.b64encode(signed).decode("ascii"), key.key_id

    document = _Document(job, final, utcnow())
    try:
        retrying(lambda: _store(job.job_id, document.pieces, SCHEMA, signature_of))
    finally:
        document.close()


def adopt_v1(job_id: int, envelope_text: str) -> None:
    """Keep a schema /1 receipt (its row's stored envelope) as the row's signature and parts: it is served and
    verified as before (its signature covers the whole document)."""
    envelope = json.loads(envelope_text)
    document = canonical(envelope["receipt"])
    ReceiptPart.delete().where(ReceiptPart.job_id == job_id).execute()
    _sign_row(job_id, lambda: (document,), SCHEMA_V1,
              lambda _digest: (envelope["signature"], envelope["key_id"]))


def stored(job_id: int) -> Receipt | None:
    """A job's receipt row (schema, sha256, signature, key): None if it has none (not
    complete, or failed).  Cheap: the document stays in its parts."""
    row = Receipt.get_or_none(Receipt.job_id == job_id)
    return row if row is not None and row.sha256 else None


def document_pieces(job_id: int) -> Iterator[bytes]:
    """A receipt document's canonical bytes, one stored part at a time."""
    numbers = [row.part_no for row in ReceiptPart.select(ReceiptPart.part_no)
               .where(ReceiptPart.job_id == job_id).order_by(ReceiptPart.part_no)]
    for number in numbers:
        yield bytes(retrying(lambda number=number: ReceiptPart.select(ReceiptPart.data).where(
            ReceiptPart.job_id == job_id, ReceiptPart.part_no == number).scalar()))


def envelope_pieces(row: Receipt) -> Iterator[bytes]:
    """The signed envelope as served, ``{"receipt": <document>, "signature", "algorithm",
    "key_id", "sha256"}``, a stored part at a time."""
    yield b'{"receipt": '
    yield from document_pieces(row.job_id)
    rest = json.dumps({"signature": row.signature, "algorithm": ALGORITHM,
                       "key_id": row.key_id, "sha256": row.sha256})
    yield b", " + rest[1:].encode("ascii")


def manifest_pieces(row: Receipt) -> Iterator[bytes]:
    """The receipt's BagIt manifest lines (every hash type's, in the order of
    ``manifests``), from one streamed pass over its file list (spooled per hash type)."""
    spooled: dict[str, object] = {}
    try:
        for item in ijson.items(_file_list_events(row.job_id), "files.item"):
            alg = str(item["hashtype"])
            if alg not in spooled:
                spooled[alg] = tempfile.SpooledTemporaryFile(max_size=PART_BYTES)
            spooled[alg].write(manifest_line(item).encode("utf-8"))
        for alg in sorted(spooled, key=manifest_name):
            yield from _read_back(spooled[alg])
    finally:
        for handle in spooled.values():
            handle.close()


def _file_list_events(job_id: int) -> Iterator[tuple]:
    """ijson's events of a stored document up to the end of its ``files`` (the parser
    never reaches ``manifests``, whose strings it would hold whole)."""
    for prefix, event, value in ijson.parse(_PiecesReader(document_pieces(job_id))):
        yield prefix, event, value
        if prefix == "files" and event == "end_array":
            return


class _PiecesReader:
    """A file-like ``read`` over an iterator of bytes (for ijson)."""

    def __init__(self, pieces: Iterator[bytes]):
        self._pieces = pieces
        self._piece = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (b"" at the end)."""
        if size == 0:
            return b""
        while not self._piece:
            piece = next(self._pieces, None)
            if piece is None:
                return b""
            self._piece = memoryview(piece)
        size = len(self._piece) if size < 0 else size
        out, self._piece = bytes(self._piece[:size]), self._piece[size:]
        return out


def of_job(job_id: int) -> dict | None:
    """A job's whole signed envelope, parsed (admin and tests: not for a big job's path)."""
    row = stored(job_id)
    return None if row is None else json.loads(b"".join(envelope_pieces(row)))


def verify(envelope: dict, public_pem: str) -> dict:
    """The receipt document if the signature holds for ``public_pem``; ReceiptError otherwise.

    /2: the document's canonical bytes must hash to the envelope's ``sha256`` and the
    signature cover ``statement(schema, sha256)``; /1: the signature covers the bytes."""
    try:
        document = envelope["receipt"]
        signature = base64.b64decode(envelope["signature"], validate=True)
        public = serialization.load_pem_public_key(public_pem.encode("ascii"))
        schema = document.get("schema")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ReceiptError(f"not a receipt this service signs ({err})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise ReceiptError("the public key is not an Ed25519 key")
    if schema == SCHEMA_V1:
        signed = canonical(document)
    elif schema == SCHEMA:
        digest = hashlib.sha256(canonical(document)).hexdigest()
        if envelope.get("sha256") != digest:
            raise ReceiptError("the receipt's sha256 is not that of its document: the document "
                               "or the sha256 was changed after signing")
        signed = statement(SCHEMA, digest)
    else:
        raise ReceiptError(f"unknown receipt schema {schema!r}")
    try:
        public.verify(signature, signed)
    except InvalidSignature:
        raise ReceiptError("the signature does not match the receipt: it was changed after "
                           "signing, or signed by another key") from None
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
