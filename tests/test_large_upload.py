"""A body larger than CherryPy's default 100 MB cap streams through and is archived intact."""
from __future__ import annotations

import hashlib
import os

from factories import make_bundle


def test_upload_over_one_hundred_megabytes(stack):
    data = os.urandom(1024 * 1024) * 110  # 110 MiB, cheap to make, still checked byte for byte
    state = stack.ingest(make_bundle({"large/blob.bin": data}), timeout=300)
    assert state["state"] == "OK", state
    entry = stack.files(state["job_id"])["files"][0]
    digest = hashlib.sha1()
    with open(stack.archive_path(entry["_id"]), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    assert entry["size"] == len(data) and digest.hexdigest() == hashlib.sha1(data).hexdigest()
