"""Deterministic benchmark bundles, built once and cached by name under bench/.cache/."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import tarfile
from dataclasses import dataclass

logger = logging.getLogger(__name__)

VERSION = 1  # bump when the layout changes, so cached bundles are rebuilt
MTIME = 1480457345
TRANSACTION = [
    {"destinationTable": "Transactions.submitter", "value": 10},
    {"destinationTable": "Transactions.project", "value": "1234a"},
    {"destinationTable": "Transactions.instrument", "value": 54},
    {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "bench"},
]
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Shape:
    """How many files of what size, and how deep they sit."""

    name: str
    files: int
    size: int

    @property
    def payload(self) -> int:
        """Bytes of file data in the bundle."""
        return self.files * self.size

    @property
    def many_files(self) -> bool:
        """Whether creating the files, not moving the bytes, sets this bundle's floor."""
        return self.files >= 1000

    def member_path(self, index: int) -> str:
        """``data/...`` path of file ``index``; the many-file shape nests two levels."""
        if self.files > 1000:
            return f"data/d{index // 1000:02d}/s{index // 100 % 10}/f{index:05d}.bin"
        return f"data/{self.name}/f{index:05d}.bin"


SHAPES = {
    "big": Shape("big", 4, 256 * 1024**2),
    "mid": Shape("mid", 200, 1024**2),
    "many": Shape("many", 10_000, 1024),
    "tiny": Shape("tiny", 1, 1024),  # warms a system up before it is measured
    # Points of the growth curves beside ``many`` (10k files) and ``big`` (1 GiB).
    "files-1k": Shape("files-1k", 1_000, 1024),
    "files-100k": Shape("files-100k", 100_000, 1024),
    "files-1M": Shape("files-1M", 1_000_000, 1),  # 1-byte files: the worker's memory, not bytes
    "size-64M": Shape("size-64M", 4, 16 * 1024**2),
    "size-4G": Shape("size-4G", 4, 1024**3),
}
# The growth curves: a label on the command line, the bundle it measures.
CURVES = {
    "files": {"1k": "files-1k", "10k": "many", "100k": "files-100k", "1M": "files-1M"},
    "size": {"64M": "size-64M", "1G": "big", "4G": "size-4G"},
}
CURVE_POINTS = {label: name for points in CURVES.values() for label, name in points.items()}
# Settings a bundle needs beyond the embedded defaults: a million members and their
# ~250 MB metadata.txt are over [ingest] max_members and max_metadata_size.
LIMITS_FOR = {"files-1M": {"INGEST_INGEST_MAX_MEMBERS": "2000000",
                           "INGEST_INGEST_MAX_METADATA_SIZE": "1 Gb"}}
# Measured unless --curves says otherwise; 1M (several minutes per run) only when asked.
DEFAULT_CURVES = ("1k", "10k", "100k", "64M", "1G", "4G")


class _Generated:
    """A file-like of ``size`` deterministic bytes that hashes what it hands out."""

    def __init__(self, seed: str, size: int):
        self.random = random.Random(seed)
        self.remaining = size
        self.sha1 = hashlib.sha1()

    def read(self, amount: int = -1) -> bytes:
        amount = self.remaining if amount is None or amount < 0 else min(amount, self.remaining)
        data = self.random.randbytes(amount) if amount else b""
        self.remaining -= len(data)
        self.sha1.update(data)
        return data


def _entry(path: str, size: int, sha1: str) -> dict:
    directory, _, name = path.rpartition("/")
    return {"destinationTable": "Files", "name": name, "subdir": directory + "/", "size": size,
            "hashtype": "sha1", "hashsum": sha1, "mimetype": "application/octet-stream",
            "ctime": "2016-11-29T14:09:05", "mtime": "2016-11-29T14:09:05"}


def build(shape: Shape, path: str) -> None:
    """Write the bundle: the files, then metadata.txt last (as pacifica-cli does)."""
    entries = []
    partial = path + ".part"
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(shape.files):
            name = shape.member_path(index)
            info = tarfile.TarInfo(name)
            info.size, info.mtime = shape.size, MTIME
            source = _Generated(f"{shape.name}:{index}", shape.size)
            tar.addfile(info, source)
            entries.append(_entry(name, shape.size, source.sha1.hexdigest()))
        raw = json.dumps(TRANSACTION + entries).encode("utf-8")
        info = tarfile.TarInfo("metadata.txt")
        info.size, info.mtime = len(raw), MTIME
        tar.addfile(info, io.BytesIO(raw))
    os.replace(partial, path)


def path_of(name: str, cache_dir: str) -> str:
    """Where bundle ``name`` is (or will be) cached."""
    return os.path.join(cache_dir, f"{name}-v{VERSION}.tar")


def ensure(name: str, cache_dir: str) -> str:
    """The path of bundle ``name``, building it the first time."""
    shape = SHAPES[name]
    os.makedirs(cache_dir, exist_ok=True)
    path = path_of(name, cache_dir)
    if not os.path.exists(path):
        logger.info("building bundle %s (%d x %d bytes) at %s", name, shape.files, shape.size,
                    path)
        build(shape, path)
    return path
