"""What every process does first: logging, settings read once, the database bound and reached."""
from __future__ import annotations

import logging

from . import db, logsetup
from .config import ConfigError, Settings, load

logger = logging.getLogger(__name__)


def prepare(config_path: str | None) -> Settings | None:
    """Configure logging, load settings and wait for the database; None (logged) on bad settings."""
    logsetup.configure()
    try:
        settings = load(config_path)
    except ConfigError as err:
        logger.error("%s", err)
        return None
    logsetup.configure(settings.logging.level, settings.logging.format)
    db.bind(settings.database)
    db.wait_for_database(settings.database)
    return settings
