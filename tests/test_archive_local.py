"""The local archive's store path on a real directory: kernel copies, unnamed files, fan-out."""
from __future__ import annotations

import hashlib
import os

import pytest

from pacifica.ingest.archive import FileSource
from pacifica.ingest.extent import Extent
from pacifica.ingest.archive.fanout import StoreFanout, batches
from pacifica.ingest.archive.local import KERNEL_COPY_MIN, LocalArchive
from pacifica.ingest.errors import ChecksumMismatch
from pacifica.ingest.pipeline import store_all


@pytest.fixture
def blob(tmp_path):
    """A file holding a small and a big payload back to back, opened for reading."""
    small, big = os.urandom(3000), os.urandom(KERNEL_COPY_MIN + 12345)
    path = tmp_path / "blob"
    path.write_bytes(small + big)
    with open(path, "rb") as handle:
        yield handle, {"small": (0, small), "big": (len(small), big)}


def source(handle, offset: int, data: bytes, hashsum: str | None = None, seen=None) -> FileSource:
    """A FileSource over ``data`` stored at ``offset`` of ``handle``."""
    return FileSource(label=f"data/{offset}", size=len(data), mtime=1480457345.0,
                      hashtype="sha1", hashsum=hashsum or hashlib.sha1(data).hexdigest(),
                      opener=lambda: open(handle.name, "rb"),  # unused with an extent
                      on_bytes=seen.append if seen is not None else None,
                      extent=Extent(handle.fileno(), offset))


def listing(root) -> list[str]:
    """Every file under the archive, relative."""
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)


def test_small_and_big_members_arrive_whole_with_their_mtime(tmp_path, blob):
    handle, parts = blob
    archive = LocalArchive(str(tmp_path / "archive"))
    seen: list[int] = []
    for file_id, (offset, data) in enumerate(parts.values(), start=1):
        archive.store(file_id, source(handle, offset, data, seen=seen))
        with open(archive.path_for(file_id), "rb") as stored:
            assert stored.read() == data
        assert os.stat(archive.path_for(file_id)).st_mtime == 1480457345.0
    assert sum(seen) == sum(len(data) for _, data in parts.values())
    assert listing(archive.root) == ["0/0/1", "0/0/2"]


@pytest.mark.parametrize("which", ["small", "big"])
def test_a_wrong_hash_leaves_nothing_behind(tmp_path, blob, which):
    handle, parts = blob
    offset, data = parts[which]
    archive = LocalArchive(str(tmp_path / "archive"))
    with pytest.raises(ChecksumMismatch):
        archive.store(7, source(handle, offset, data, hashsum="0" * 40))
    assert listing(archive.root) == []


def test_storing_an_id_again_replaces_it(tmp_path, blob):
    handle, parts = blob
    archive = LocalArchive(str(tmp_path / "archive"))
    archive.store(5, source(handle, *parts["big"]))
    archive.store(5, source(handle, *parts["small"]))
    with open(archive.path_for(5), "rb") as stored:
        assert stored.read() == parts["small"][1]
    assert listing(archive.root) == ["0/0/5"]


def test_a_removed_directory_is_made_again(tmp_path, blob):
    handle, parts = blob
    archive = LocalArchive(str(tmp_path / "archive"))
    archive.store(1, source(handle, *parts["small"]))
    os.unlink(archive.path_for(1))
    os.rmdir(os.path.dirname(archive.path_for(1)))
    archive.store(2, source(handle, *parts["small"]))
    assert listing(archive.root) == ["0/0/2"]


def test_parallel_store_rolls_back_every_file_when_one_fails(tmp_path, blob):
    handle, parts = blob
    offset, data = parts["small"]
    good = [source(handle, offset, data) for _ in range(200)]
    sources = good[:150] + [source(handle, offset, data, hashsum="0" * 40)] + good[150:]
    archive = LocalArchive(str(tmp_path / "archive"))
    with pytest.raises(ChecksumMismatch):
        store_all(archive, 1000, sources, job_id=1)
    assert listing(archive.root) == []


def test_parallel_store_reports_every_byte_in_the_calling_thread(tmp_path, blob):
    handle, parts = blob
    import threading  # pylint: disable=import-outside-toplevel
    caller, threads, total = threading.get_ident(), set(), []

    def count(amount: int) -> None:
        threads.add(threading.get_ident())
        total.append(amount)

    offset, data = parts["small"]
    sources = [FileSource(label="x", size=len(data), mtime=0, hashtype="sha1",
                          hashsum=hashlib.sha1(data).hexdigest(), opener=None, on_bytes=count,
                          extent=Extent(handle.fileno(), offset)) for _ in range(300)]
    archive = LocalArchive(str(tmp_path / "archive"))
    fanout = StoreFanout(archive, 1)
    fanout.run(sources)
    assert fanout.submitted == 300 and sum(total) == 300 * len(data)
    assert threads == {caller}
    assert len(listing(archive.root)) == 300


def test_batches_group_small_files_and_isolate_big_ones():
    sizes = [10] * 40 + [KERNEL_COPY_MIN * 2] + [10] * 3
    sources = [FileSource("x", size, 0, "sha1", "", opener=None) for size in sizes]
    assert [len(batch) for batch in batches(iter(sources))] == [32, 8, 1, 3]
