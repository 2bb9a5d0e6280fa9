"""Database binding: one peewee proxy every model uses, bound once per process."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Callable, Iterator, TypeVar

import peewee
from playhouse.db_url import connect as connect_url
from playhouse.pool import PooledDatabase

from .config import DatabaseSettings

logger = logging.getLogger(__name__)

database_proxy = peewee.DatabaseProxy()
T = TypeVar("T")

# Errors that mean "the database is not there right now", not "the query is wrong".
UNAVAILABLE_ERRORS = (peewee.OperationalError, peewee.InterfaceError)

SQLITE_PRAGMAS = {
    "journal_mode": "wal",  # readers (get_state) never wait for the worker's writes
    "busy_timeout": 30000,  # frontend and worker are separate processes
    "synchronous": "full",  # a committed job row survives a power cut
    "foreign_keys": 1,
}


class LongTextField(peewee.TextField):
    """Text without MySQL's 64 KiB TEXT cap (LONGTEXT; SQLite reads it as TEXT)."""

    field_type = "LONGTEXT"


class LongBlobField(peewee.BlobField):
    """Bytes without MySQL's 64 KiB BLOB cap (LONGBLOB; SQLite reads it as BLOB)."""

    field_type = "LONGBLOB"


TEXT_BYTES = 65535  # what a MySQL TEXT column holds


def too_wide(field: peewee.Field, value) -> str | None:
    """Why a value does not fit its column on every database we run on, or None.

    Checked before writing, so a value too wide is a clear message rather than a database
    error (MySQL refuses it; SQLite would keep it).
    """
    if not isinstance(value, str) or isinstance(field, LongTextField):
        return None
    if isinstance(field, peewee.CharField) and len(value) > field.max_length:
        return f"{len(value)} characters, at most {field.max_length}"
    if isinstance(field, peewee.TextField):
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > TEXT_BYTES:
            return f"{size} bytes of UTF-8, at most {TEXT_BYTES}"
    return None


class BaseModel(peewee.Model):
    """Base of every table; bound through the proxy."""

    class Meta:
        database = database_proxy


def sqlite_file(url: str) -> str | None:
    """The file a SQLite database URL names (None for another database or ``:memory:``)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1]
    return path if path and path != ":memory:" else None


def make_database(url: str, pooled: bool = False) -> peewee.Database:
    """Build (not connect) a peewee database from a URL; ``pooled``: a server database's
    connections are kept in a pool of this process (see ``POOL_STALE_AFTER``)."""
    if url.startswith("sqliteext://"):  # the original's default spelling
        url = "sqlite://" + url[len("sqliteext://"):]
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return connect_url(url, pragmas=SQLITE_PRAGMAS)
    pool = {}
    scheme, sep, rest = url.partition("://")
    if pooled and scheme in POOLED_SCHEMES:
        url = f"{scheme}+pool{sep}{rest}"
        pool = {"max_connections": None, "stale_timeout": POOL_STALE_AFTER}
    if url.startswith("mysql"):
        # Count matched rows, not changed ones: a state write that repeats the same values
        # within one second must still read as "the job is running" (as on SQLite/PostgreSQL).
        from pymysql.constants import CLIENT  # pylint: disable=import-outside-toplevel
        return connect_url(url, client_flag=CLIENT.FOUND_ROWS, **pool)
    return connect_url(url, **pool)


# A server database's connections, pooled in a process whose threads each take one per request
# (the frontend): opening one cost 26 ms on MariaDB (PyMySQL >= 1.2 builds a TLS context for
# every connection it opens) against 0.1 ms to check a pooled one is still alive; a pooled
# connection is closed once it is this many seconds old, and one that fails its check is
# dropped.  Not for processes that fork with connections (the Celery worker).
POOLED_SCHEMES = ("mysql", "postgres", "postgresql")
POOL_STALE_AFTER = 300


def _forget_pool_after_fork() -> None:
    """In a forked child, drop (without closing) the pooled connections the parent owns."""
    database = database_proxy.obj
    if isinstance(database, PooledDatabase):
        database._state.reset()  # pylint: disable=protected-access
        database._connections, database._in_use = [], {}  # pylint: disable=protected-access


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def bind(settings: DatabaseSettings, pooled: bool = False) -> peewee.Database:
    """Bind the proxy to the configured database and return it (``make_database``)."""
    database = make_database(settings.url, pooled)
    database_proxy.initialize(database)
    return database


def wait_for_database(settings: DatabaseSettings) -> None:
    """Connect, retrying while the server is not up yet (containers start in any order)."""
    attempts = max(settings.connect_attempts, 1)
    for attempt in range(1, attempts + 1):
        try:
            database_proxy.connect(reuse_if_open=True)
            database_proxy.execute_sql("SELECT 1")
            return
        except UNAVAILABLE_ERRORS as err:
            if attempt == attempts:
                raise
            logger.warning("database not ready (%s); attempt %d of %d", err, attempt, attempts)
            time.sleep(settings.connect_wait)
            _reset_connection()


@contextlib.contextmanager
def connection() -> Iterator[None]:
    """This thread's connection for one request or one pass of upkeep, given back after
    (``release_connection``: SQLite keeps it for the thread)."""
    database_proxy.connect(reuse_if_open=True)
    try:
        yield
    finally:
        release_connection()


def release_connection() -> None:
    """Give back this thread's connection after a request or a pass of upkeep.

    A SQLite connection is kept for the thread: opening one and setting its pragmas cost two
    thirds of a get_state (py-spy); a server database gets its connection back each time
    (to the process's pool, when ``bind`` made one).
    """
    if isinstance(database_proxy.obj, peewee.SqliteDatabase):
        return
    try:
        database_proxy.close()
    except UNAVAILABLE_ERRORS:
        pass


def _reset_connection() -> None:
    try:
        database_proxy.close()
    except UNAVAILABLE_ERRORS:
        pass
    except peewee.PeeweeException:
        pass


def retrying(action: Callable[[], T], attempts: int = 30, wait: float = 1.0) -> T:
    """Run a database action, reconnecting and retrying while the database is unavailable."""
    for attempt in range(1, attempts + 1):
        try:
            database_proxy.connect(reuse_if_open=True)
            return action()
        except UNAVAILABLE_ERRORS as err:
            if attempt == attempts:
                raise
            logger.warning("database unavailable (%s); retry %d of %d", err, attempt, attempts)
            _reset_connection()
            time.sleep(wait)
    raise AssertionError("unreachable")


def bulk_insert(model: type[peewee.Model], rows: list[dict], batch: int = 1000) -> None:
    """Insert many rows through one prepared statement (executemany).

    peewee's insert_many renders every value into SQL text in Python, which costs more than
    the insert itself for the ten thousand file rows of a large bundle.
    """
    if not rows:
        return
    database = database_proxy.obj
    columns = list(rows[0])
    fields = [model._meta.fields[name] for name in columns]
    opening, closing = database.quote[0], database.quote[1]
    sql = "INSERT INTO {}{}{} ({}) VALUES ({})".format(
        opening, model._meta.table_name, closing,
        ", ".join(f"{opening}{field.column_name}{closing}" for field in fields),
        ", ".join([database.param] * len(fields)))
    values = [tuple(field.db_value(row[name]) for field, name in zip(fields, columns))
              for row in rows]
    cursor = database.cursor()
    for start in range(0, len(values), batch):
        cursor.executemany(sql, values[start:start + batch])

