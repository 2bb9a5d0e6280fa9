"""Space promised to uploads still arriving, so that declared lengths cannot overfill the volume.

An open tus upload promises ``length - offset`` more bytes, a POSTed bundle still streaming
``bytes_expected - received``.  Both are read from what every frontend process shares (the
tus part files and descriptions on the volume, the job table), so the promises survive a
restart and hold across processes; a lock file on the volume makes check-then-create one step
for tus creations (a POST's promise shows from the moment its job row exists, just after its
own check).  A scan costs a directory listing and one ``stat`` per open upload
(``TusStore.open_uploads``) and one query for the POSTs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
from typing import Iterator

from .. import jobs
from ..errors import UploadError
from ..jobs import Job
from .staging import Staging
from .tus_store import TusStore
from .volume import partial

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Promised:
    """Bytes still to come: in total, and per user for the open tus uploads."""

    total: int = 0
    tus_by_user: dict[str, int] = dataclasses.field(default_factory=dict)


class Reservations:
    """Checks new uploads against the free space and the per-user tus quota."""

    def __init__(self, store: TusStore, staging: Staging, user_quota: int = 0):
        self.store = store
        self.staging = staging
        self.user_quota = user_quota

    def promised(self) -> Promised:
        """What open tus uploads and POSTs in flight will still write to the volume."""
        with self._locked():
            return self._scan()

    def promised_total(self) -> int:
        """Bytes promised to every upload still arriving (the staging's hook)."""
        return self.promised().total

    def _scan(self) -> Promised:
        found = Promised()
        for user, length, received in self.store.open_uploads():
            remaining = max(length - received, 0)
            found.total += remaining
            found.tus_by_user[user] = found.tus_by_user.get(user, 0) + remaining
        found.total += sum(remaining for _, remaining in self._posts_in_flight())
        return found

    @contextlib.contextmanager
    def reserve(self, length: int, user: str) -> Iterator[None]:
        """Check that ``length`` more bytes fit; hold the lock while the caller records them."""
        with self._locked():
            promised = self._scan()
            mine = promised.tus_by_user.get(user, 0)
            if self.user_quota and mine + length > self.user_quota:
                raise UploadError(
                    f"an upload of {length} bytes would take user {user!r} over the quota of "
                    f"{self.user_quota} bytes still to come across open uploads ({mine} are "
                    "taken); finish or DELETE open uploads first", status=413)
            self.staging.check_room(length, promised.total)
            yield

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The volume-wide lock (threads and processes alike: one open file each)."""
        with open(self.staging.volume.reservations_lock, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield

    def _posts_in_flight(self) -> Iterator[tuple[str, int]]:
        """(user, bytes still to come) of each bundle still streaming into the volume."""
        query = (Job.select(Job.job_id, Job.user, Job.bytes_expected)
                 .where((Job.queue_state == jobs.RECEIVING) & (Job.state == jobs.OK)
                        & (Job.complete == False)  # noqa: E712
                        & Job.bytes_expected.is_null(False)))
        for job in query:
            try:
                received = os.path.getsize(partial(self.staging.volume.bundle(job.job_id)))
            except FileNotFoundError:
                received = 0
            yield job.user, max(job.bytes_expected - received, 0)
