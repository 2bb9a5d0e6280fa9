"""What every process does first: logging, settings read once, the database bound and reached."""
from __future__ import annotations

import logging

from . import db, logsetup
from .auth import parse_networks
from .config import ConfigError, Settings, load

logger = logging.getLogger(__name__)


def prepare(config_path: str | None) -> Settings | None:
    """Configure logging, load settings and wait for the database; None (logged) on bad settings."""
    logsetup.configure()
    try:
        settings = load(config_path)
        parse_networks(settings.auth.trusted_proxies)  # a bad address stops the process here
    except ConfigError as err:
        logger.error("%s", err)
        return None
    logsetup.configure(settings.logging.level, settings.logging.format)
    db.bind(settings.database)
    db.wait_for_database(settings.database)
    return settings
