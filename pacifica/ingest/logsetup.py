"""Logging for the console scripts: one format, level from INGEST_LOG_LEVEL."""
import logging
import os


def configure() -> None:
    """Log to stderr with timestamps."""
    logging.basicConfig(level=os.environ.get("INGEST_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
