"""Schema version and migrations: the targets of ``dbsync`` and ``dbchk``."""
from __future__ import annotations

import logging
from contextlib import contextmanager

import peewee
from playhouse.migrate import SchemaMigrator, migrate

from . import auth, catalog, heartbeats, idempotency, jobs, notify, receipts, timeline
from .config import DatabaseSettings
from .db import BaseModel, database_proxy, wait_for_database

logger = logging.getLogger(__name__)

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 2


class IdCounter(BaseModel):
    """The next free id of each kind (the embedded id source, services/ids.py)."""

    mode = peewee.CharField(max_length=64, primary_key=True)
    next_id = peewee.BigIntegerField(default=1)

    class Meta:
        table_name = "ingest_id_counters"


MODELS = (jobs.Job, IdCounter, catalog.Transaction, catalog.TransactionKeyValue,
          catalog.ArchivedFile, auth.ApiToken, heartbeats.WorkerBeat, receipts.SigningKey,
          receipts.Receipt, receipts.ReceiptPart, notify.Delivery,
          idempotency.IdempotencyKey, timeline.JobStep)


def _add_tables(*models):
    """A migration step that creates new tables (``step.models`` names them)."""
    def step():
        database_proxy.create_tables(models, safe=True)
    step.models = models
    return step


def _receipts_in_parts():
    """1.1 -> 1.2: a receipt's document moves from one row (``document``, its whole envelope)
    to parts; the row keeps the signature.  Each /1 receipt is converted a row at a time and
    is served and verified as before."""
    database = database_proxy.obj
    database.create_tables([receipts.ReceiptPart], safe=True)
    table = receipts.Receipt._meta.table_name
    columns = {column.name for column in database.get_columns(table)}
    migrator = SchemaMigrator.from_database(database)
    fields = receipts.Receipt._meta.fields
    added = [migrator.add_column(table, name, fields[name])
             for name in ("schema", "sha256", "signature", "key_id", "size")
             if name not in columns]
    if added:
        migrate(*added)
    if "document" not in columns:
        return
    select = f"SELECT document FROM {table} WHERE job_id = {database.param}"
    for (job_id,) in database.execute_sql(f"SELECT job_id FROM {table}").fetchall():
        receipts.adopt_v1(job_id, database.execute_sql(select, (job_id,)).fetchone()[0])
    migrate(migrator.drop_column(table, "document"))


_receipts_in_parts.models = (receipts.ReceiptPart,)

# (major, minor) -> (the version it leads to, the step that gets there).
MIGRATIONS: dict[tuple[int, int], tuple[tuple[int, int], callable]] = {
    (1, 0): ((1, 1), _add_tables(auth.ApiToken, heartbeats.WorkerBeat,
                                  receipts.SigningKey, receipts.Receipt, notify.Delivery,
                                  idempotency.IdempotencyKey, timeline.JobStep)),
    (1, 1): ((1, 2), _receipts_in_parts),
}


class SchemaError(RuntimeError):
    """The database schema is not one this code can use."""


class SchemaVersion(BaseModel):
    """Parts of the schema version ('major', 'minor')."""

    part = peewee.CharField(max_length=16, primary_key=True)
    value = peewee.IntegerField()

    class Meta:
        table_name = "ingest_schema_version"


def current_version() -> tuple[int, int]:
    """The database's schema version; (0, 0) when it has none yet."""
    if not database_proxy.table_exists(SchemaVersion._meta.table_name):
        return (0, 0)
    parts = {row.part: row.value for row in SchemaVersion.select()}
    return (parts.get("major", 0), parts.get("minor", 0))


def _write_version(version: tuple[int, int]) -> None:
    for part, value in zip(("major", "minor"), version):
        SchemaVersion.insert(part=part, value=value).on_conflict_replace().execute()


# Seconds a dbsync waits for another host's dbsync to finish.
SYNC_LOCK_TIMEOUT = 600


@contextmanager
def _sync_lock():
    """One dbsync at a time per database, across hosts: a MySQL/MariaDB named lock.

    Containers (frontend, every worker) run dbsync as they start; without the lock two of
    them could both find no schema, or both run a migration.  SQLite serialises writers.
    """
    database = database_proxy.obj
    if not isinstance(database, peewee.MySQLDatabase):
        yield
        return
    name = f"pacifica_ingest_dbsync.{database.database}"[:64]
    cursor = database.execute_sql("SELECT GET_LOCK(%s, %s)", (name, SYNC_LOCK_TIMEOUT))
    if cursor.fetchone()[0] != 1:
        raise SchemaError(f"another dbsync held the schema lock for {SYNC_LOCK_TIMEOUT}s; "
                          "is one stuck?")
    try:
        yield
    finally:
        database.execute_sql("SELECT RELEASE_LOCK(%s)", (name,))


def sync() -> tuple[int, int]:
    """Create or upgrade the schema to this code's version; return the version reached."""
    target = (SCHEMA_MAJOR, SCHEMA_MINOR)
    with _sync_lock(), database_proxy.atomic():
        version = current_version()
        if version == target:
            logger.info("database schema already at %d.%d", *version)
        if version == (0, 0):
            logger.info("creating the database schema %d.%d", *target)
            database_proxy.create_tables((SchemaVersion, *MODELS), safe=True)
            version = target
        while version != target:
            if version > target:
                raise SchemaError(f"the database schema {version[0]}.{version[1]} is newer than "
                                  f"this code's {target[0]}.{target[1]}: upgrade pacifica-ingest")
            if version not in MIGRATIONS:
                raise SchemaError(f"no migration from schema {version[0]}.{version[1]}")
            version, step = MIGRATIONS[version]
            logger.info("migrating schema to %d.%d", *version)
            step()
        _write_version(version)
        receipts.current_key()  # the key that signs receipts, made by the first dbsync
    return version


def is_equal() -> bool:
    """True when the database is at exactly this code's schema version."""
    return current_version() == (SCHEMA_MAJOR, SCHEMA_MINOR)


def is_safe() -> bool:
    """True when this code can use the database (same major version, minor not newer)."""
    major, minor = current_version()
    return major == SCHEMA_MAJOR and minor <= SCHEMA_MINOR and (major, minor) != (0, 0)


def check_at_start(settings: DatabaseSettings, upgrade: bool = False) -> None:
    """Every process's start-up check: wait for the database, create or upgrade the schema
    when asked, then require one this code can use (SchemaError naming the command to run).

    The connection is closed after, so no process forks with one open."""
    wait_for_database(settings)
    try:
        if upgrade:
            sync()
        require_compatible()
    finally:
        database_proxy.close()


def require_compatible() -> None:
    """Raise SchemaError, naming the command to run, unless the schema is usable."""
    if is_equal():
        return
    major, minor = current_version()
    if (major, minor) == (0, 0):
        raise SchemaError("the database has no pacifica-ingest schema yet: run "
                          "`pacifica-ingest-cmd dbsync` first")
    raise SchemaError(f"the database schema is {major}.{minor} but this service needs "
                      f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}: run `pacifica-ingest-cmd dbsync`")
