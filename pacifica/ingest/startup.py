"""What every process does first: logging, settings read once, the database bound and reached."""
from __future__ import annotations

import logging
import os

from . import db, logsetup
from .schema import SchemaError
from .auth import parse_networks
from .config import ConfigError, Settings, load
from .http import redact

logger = logging.getLogger(__name__)


def announce(settings: Settings) -> None:
    """One line saying which database and volume this process uses (credentials left out)."""
    logger.info("database %s, volume %s (relative paths from %s)",
                redact(settings.database.url), settings.ingest.volume_path, settings.ingest.home)


def missing_database(settings: Settings) -> str | None:
    """Why the configured database cannot be used without creating it, or None.

    Only a SQLite file can be missing this way; it is checked before connecting, because
    connecting would create an empty file (a second database nobody else sees)."""
    path = db.sqlite_file(settings.database.url)
    if path is None or os.path.exists(path):
        return None
    return (f"no database at {path}: run `pacifica-ingest-cmd dbsync` (with the same settings) "
            f"to create it; relative paths are taken from {settings.ingest.home} (set "
            "INGEST_HOME, or -c/INGEST_CONFIG, to use another folder)")


def require_database(settings: Settings) -> None:
    """Say which database and volume this process uses; SchemaError if the database is
    missing (connecting would create an empty one)."""
    announce(settings)
    problem = missing_database(settings)
    if problem:
        raise SchemaError(problem)


def prepare(config_path: str | None, create_database: bool = False) -> Settings | None:
    """Configure logging, load settings and wait for the database; None (logged) on bad settings.

    Raises SchemaError for a database that does not exist yet, unless ``create_database``."""
    logsetup.configure()
    try:
        settings = load(config_path)
        parse_networks(settings.auth.trusted_proxies)  # a bad address stops the process here
    except ConfigError as err:
        logger.error("%s", err)
        return None
    logsetup.configure(settings.logging.level, settings.logging.format)
    if create_database:
        announce(settings)
    else:
        require_database(settings)
    db.bind(settings.database)
    db.wait_for_database(settings.database)
    return settings
