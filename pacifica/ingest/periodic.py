"""A background thread that runs one pass of some upkeep every few seconds, whatever fails."""
from __future__ import annotations

import logging
import threading

from . import db

logger = logging.getLogger(__name__)


class Periodic:
    """Calls ``run_once`` every ``interval`` seconds on a daemon thread until stopped."""

    name = "periodic"

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop after its current pass."""
        self._stop.set()

    def run_once(self):
        """One pass of the upkeep."""
        raise NotImplementedError

    def pass_once(self):
        """``run_once`` with this thread's database connection, given back after."""
        with db.connection():
            return self.run_once()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.pass_once()
            except Exception:  # keep going through database and broker outages
                logger.warning("%s pass failed; trying again in %ss", self.name, self.interval,
                               exc_info=True)
