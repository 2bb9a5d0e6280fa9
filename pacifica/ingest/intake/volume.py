"""Every file name on the volume, in one place.

- ``<id>.tar``: a job's bundle; ``<id>.tar.part`` while its body streams in;
  ``<id>.tar.unpacked`` (``.part`` while written): a compressed bundle decompressed once;
  ``<id>.tar.sha1`` (``.part`` while written): the digests of its big members, made as it arrived.
- ``<id>.json``: a move request.
- ``tus/<upload id>.part``, ``.json`` (``.json.tmp`` while written), ``.lock``: a tus upload.
- ``tus/reservations.lock``: serialises the space checks of new uploads.
- ``metrics/``: Prometheus multiprocess files.
- ``.ready-*``: the readiness check's probe file, removed at once.
"""
from __future__ import annotations

import os

PART = ".part"  # a file still being written; renamed to its name without it when whole
BUNDLE = ".tar"
UNPACKED = ".unpacked"
DIGESTS = ".sha1"
MOVE_REQUEST = ".json"
TUS_FOLDER = "tus"
TUS_BYTES, TUS_DESCRIPTION, TUS_LOCK = ".part", ".json", ".lock"
TUS_DESCRIPTION_PART = TUS_DESCRIPTION + ".tmp"  # kept: volumes written before hold such files
TUS_SUFFIXES = (TUS_BYTES, TUS_DESCRIPTION, TUS_DESCRIPTION_PART, TUS_LOCK)
RESERVATIONS_LOCK = "reservations.lock"
READINESS_PROBE = ".ready-"  # prefix of the readiness check's temporary file


def partial(path: str) -> str:
    """The name ``path`` is written under until it is whole."""
    return path + PART


def unpacked(bundle_path: str) -> str:
    """The decompressed copy of a compressed bundle, beside it."""
    return bundle_path + UNPACKED


def digests(bundle_path: str) -> str:
    """The digests of a bundle's big members, beside it."""
    return bundle_path + DIGESTS


class Volume:
    """The layout of the shared volume where bundles land (paths only; nothing is created)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def _job_file(self, job_id: int, suffix: str) -> str:
        return os.path.join(self.path, f"{job_id}{suffix}")

    def bundle(self, job_id: int) -> str:
        """Where a job's bundle lies once whole."""
        return self._job_file(job_id, BUNDLE)

    def move_request(self, job_id: int) -> str:
        """Where a move job's request document lies."""
        return self._job_file(job_id, MOVE_REQUEST)

    def job_input(self, job_id: int, move: bool) -> str:
        """A job's bundle, or its move request."""
        return self.move_request(job_id) if move else self.bundle(job_id)

    def leftovers(self, job_id: int) -> tuple[str, ...]:
        """Partial and decompressed copies of a job's bundle and its digests (never the
        bundle itself)."""
        bundle = self.bundle(job_id)
        return (partial(bundle), unpacked(bundle), partial(unpacked(bundle)), digests(bundle),
                partial(digests(bundle)))

    def holds_job_file(self, path: str, job_id: int) -> bool:
        """True when ``path`` is one of the job's own files on this volume."""
        return (os.path.dirname(os.path.abspath(path)) == self.path
                and os.path.basename(path).startswith(f"{job_id}."))

    @property
    def tus_folder(self) -> str:
        """The folder of the tus uploads."""
        return os.path.join(self.path, TUS_FOLDER)

    def tus_file(self, upload_id: str, suffix: str) -> str:
        """One of a tus upload's files (``suffix`` from TUS_SUFFIXES; the store checks ids)."""
        return os.path.join(self.tus_folder, upload_id + suffix)

    @property
    def reservations_lock(self) -> str:
        """The lock file of the space reservations."""
        return os.path.join(self.tus_folder, RESERVATIONS_LOCK)

    @property
    def metrics_folder(self) -> str:
        """The folder of the Prometheus multiprocess files."""
        return os.path.join(self.path, "metrics")
