"""The embedded metadata store: transactions, their key/values and files, queryable by job."""
from __future__ import annotations

import json
from typing import Iterable

import peewee

from .db import BaseModel, LongTextField, bulk_insert, database_proxy, too_wide
from .errors import MetadataSinkError, Problems
from . import protocol
from .jobs import utcnow


class Transaction(BaseModel):
    """One ingested bundle (its job id is the transaction id)."""

    job_id = peewee.BigIntegerField(primary_key=True)
    submitter = peewee.CharField(max_length=255, null=True)
    project = peewee.CharField(max_length=255, null=True)
    instrument = peewee.CharField(max_length=255, null=True)
    user = peewee.CharField(max_length=255, default="")
    created = peewee.DateTimeField(default=utcnow)
    metadata = LongTextField()  # its entries that are not files, as sent on (files: ArchivedFile)

    class Meta:
        table_name = "ingest_transactions"


class TransactionKeyValue(BaseModel):
    """A key/value attached to a transaction."""

    job_id = peewee.BigIntegerField(index=True)
    key = peewee.TextField()
    value = peewee.TextField()

    class Meta:
        table_name = "ingest_transaction_key_values"


class ArchivedFile(BaseModel):
    """A file stored in the archive under its id."""

    file_id = peewee.BigIntegerField(primary_key=True)
    job_id = peewee.BigIntegerField(index=True)
    name = peewee.TextField()
    subdir = peewee.TextField()
    size = peewee.BigIntegerField()
    hashtype = peewee.CharField(max_length=32)
    hashsum = peewee.CharField(max_length=256)
    mimetype = peewee.CharField(max_length=255, null=True)
    ctime = peewee.CharField(max_length=64, null=True)
    mtime = peewee.CharField(max_length=64, null=True)

    class Meta:
        table_name = "ingest_files"

    def as_dict(self) -> dict:
        """The file as the files endpoint shows it."""
        return {"_id": self.file_id, "name": self.name, "subdir": self.subdir, "size": self.size,
                "hashtype": self.hashtype, "hashsum": self.hashsum, "mimetype": self.mimetype,
                "ctime": self.ctime, "mtime": self.mtime}


def _text(value) -> str | None:
    return None if value is None else (value if isinstance(value, str) else json.dumps(value))


FILE_BATCH = 1000  # file rows held and inserted at once


def record(job_id: int, user: str, entries: Iterable[dict]) -> bool:
    """Store one transaction's metadata once; False if it was already recorded.

    ``entries`` is read once, as it comes (a million files are never held): the file rows
    go in batches within one database transaction, which a value too wide for its column
    rolls back, every such value named.
    """
    problems = Problems()
    with database_proxy.atomic():
        if Transaction.get_or_none(Transaction.job_id == job_id) is not None:
            return False
        others, rows = [], []
        for entry in entries:
            if entry.get(protocol.DESTINATION) != protocol.FILES_TABLE:
                others.append(entry)
                continue
            rows.append(_file_row(job_id, entry, problems))
            if len(rows) >= FILE_BATCH:
                if not problems:
                    bulk_insert(ArchivedFile, rows)
                rows = []
        transaction = _transaction_row(job_id, user, others)
        pairs = [{"job_id": job_id, "key": str(e["key"]), "value": _text(e.get("value")) or ""}
                 for e in others if e.get(protocol.DESTINATION) == protocol.KEY_VALUE_TABLE]
        _check(Transaction, transaction, lambda name: protocol.TRANSACTION + name, problems)
        for pair in pairs:
            _check(TransactionKeyValue, pair,
                   lambda name, key=_short(pair["key"]): f"TransactionKeyValue.{name} of {key!r}",
                   problems)
        if problems:
            raise MetadataSinkError("the metadata does not fit the catalog's columns:", problems)
        Transaction.create(**transaction)
        bulk_insert(TransactionKeyValue, pairs)
        bulk_insert(ArchivedFile, rows)
    return True


def _transaction_row(job_id: int, user: str, others: list[dict]) -> dict:
    """The transaction row from the entries that are not files (they are kept in it whole)."""
    fields = {e[protocol.DESTINATION][len(protocol.TRANSACTION):]: e.get("value")
              for e in others
              if str(e.get(protocol.DESTINATION, "")).startswith(protocol.TRANSACTION)}
    return {"job_id": job_id, "submitter": _text(fields.get("submitter")),
            "project": _text(fields.get("project")),
            "instrument": _text(fields.get("instrument")), "user": user,
            "metadata": json.dumps(others)}


def _file_row(job_id: int, entry: dict, problems: Problems) -> dict:
    row = {"file_id": entry["_id"], "job_id": job_id, "name": entry["name"],
           "subdir": entry["subdir"], "size": entry["size"], "hashtype": entry["hashtype"],
           "hashsum": entry["hashsum"], "mimetype": _text(entry.get("mimetype")),
           "ctime": _text(entry.get("ctime")), "mtime": _text(entry.get("mtime"))}
    _check(ArchivedFile, row, lambda name: f"Files.{name} of {_short(_path_of(row))}", problems)
    return row


def forget(job_id: int) -> None:
    """Remove a job's transaction, key/values and files (before it is ingested again)."""
    with database_proxy.atomic():
        for model in (ArchivedFile, TransactionKeyValue, Transaction):
            model.delete().where(model.job_id == job_id).execute()


def _check(model, row: dict, label, problems: Problems) -> None:
    """Note, naming each, values too wide for their columns (only text can be)."""
    fields = model._meta.fields
    for name, value in row.items():
        reason = isinstance(value, str) and too_wide(fields[name], value)
        if reason:
            problems.append(f"{label(name)}: {reason}")


def _path_of(row: dict) -> str:
    """A file's path beneath data/ (a file at the top has an empty subdir)."""
    return f"{row['subdir']}/{row['name']}" if row["subdir"] else row["name"]


def _short(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[:most - 3] + "..."


def files_of(job_id: int, offset: int = 0, limit: int | None = None) -> list[dict]:
    """The files a job ingested, in id order: all, or ``limit`` of them from ``offset``."""
    query = (ArchivedFile.select().where(ArchivedFile.job_id == job_id)
             .order_by(ArchivedFile.file_id))
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return [row.as_dict() for row in query]


def file_count(job_id: int) -> int:
    """How many files a job ingested."""
    return ArchivedFile.select().where(ArchivedFile.job_id == job_id).count()


def transaction_of(job_id: int) -> dict | None:
    """A job's transaction fields and key/values, or None if nothing was recorded."""
    row = Transaction.get_or_none(Transaction.job_id == job_id)
    if row is None:
        return None
    pairs = TransactionKeyValue.select().where(TransactionKeyValue.job_id == job_id)
    return {"job_id": job_id, "submitter": row.submitter, "project": row.project,
            "instrument": row.instrument, "user": row.user,
            "created": row.created.strftime("%Y-%m-%d %H:%M:%S") if row.created else None,
            "key_values": {p.key: p.value for p in pairs}}
