"""The frontend's digests of big members: exact where found, ignored wherever they might not be."""
from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import tarfile

import pytest

from pacifica.ingest.config import load
from pacifica.ingest.intake import member_digests
from pacifica.ingest.intake.staging import Staging
from pacifica.ingest.archive import FileSource
from pacifica.ingest.archive.local import LocalArchive
from pacifica.ingest.bundle import OpenedBundle
from pacifica.ingest.errors import ChecksumMismatch
from pacifica.ingest.intake.member_digests import BodyDigester, TarDigester

from factories import make_bundle

SMALL = 1000  # the walk's threshold in these tests: members at least this big are hashed


def _tar(members: list[tuple[str, bytes]], tar_format: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tar_format) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if name.endswith("/"):
                info.type, info.size = tarfile.DIRTYPE, 0
            info.pax_headers = {"comment": "x" * 300} if tar_format == tarfile.PAX_FORMAT else {}
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return buffer.getvalue()


def _expected(body: bytes, minimum: int) -> list[tuple[int, int, str]]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return [(m.offset_data, m.size, hashlib.sha1(body[m.offset_data:m.offset_data + m.size])
                 .hexdigest()) for m in tar.getmembers() if m.isreg() and m.size >= minimum]


def _walk(body: bytes, pieces: list[int]) -> list[tuple[int, int, str]]:
    walk = TarDigester(SMALL)
    position = 0
    for size in pieces:
        walk.feed(body[position:position + size])
        position += size
    walk.feed(body[position:])
    return walk.records


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT,
                                        tarfile.USTAR_FORMAT])
def test_walk_finds_every_big_member_whatever_the_piece_sizes(tar_format):
    rng = random.Random(tar_format)
    long_dir = "data/" + "d" * 120 + "/" if tar_format != tarfile.USTAR_FORMAT else "data/d/"
    members = [("metadata.txt", b"[]"), (long_dir, b"")]
    members += [(f"{long_dir}f{index}-{'n' * 90}.bin"[:99 if tar_format == tarfile.USTAR_FORMAT
                                                      else None],
                 rng.randbytes(rng.choice([0, 1, 511, 512, 513, SMALL - 1, SMALL, 5000, 70000])))
                for index in range(30)]
    body = _tar(members, tar_format)
    expected = _expected(body, SMALL)
    assert expected  # the draw holds big members
    for pieces in ([len(body)], [1] * 3000, [rng.randint(1, 9000) for _ in range(200)], [512] * 50):
        assert _walk(body, pieces) == expected


def test_a_pax_size_overrides_the_header_size():
    data = os.urandom(3000)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data/sized.bin")
        info.size = len(data)
        info.pax_headers = {"size": str(len(data))}
        tar.addfile(info, io.BytesIO(data))
    body = buffer.getvalue()
    assert b"size=3000" in body
    assert _walk(body, [700] * 20) == _expected(body, SMALL)


@pytest.mark.parametrize("body", [
    b"hello",
    os.urandom(200_000),
    b"\0" * 10_000,
    make_bundle({"a.bin": b"a" * 5000})[:700],  # cut in the middle of a member
])
def test_hostile_or_truncated_bodies_give_no_false_record(body):
    records = _walk(body, [333] * 1000)
    for offset, size, digest in records:
        assert hashlib.sha1(body[offset:offset + size]).hexdigest() == digest


def test_an_oversized_pax_header_stops_the_walk_without_reading_it_into_memory():
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 50 * 1024 * 1024
    walk = TarDigester(SMALL)
    walk.feed(header.tobuf(tarfile.USTAR_FORMAT))
    walk.feed(b"9" * 1024 * 1024)
    assert walk.stopped and walk.records == [] and len(walk._pax) == 0  # pylint: disable=protected-access


def _saved_bundle(folder, body: bytes, minimum: int = SMALL) -> str:
    """Write a body as the frontend does: hashed as it goes, digests saved before the rename."""
    path = os.path.join(folder, "7.tar")
    digester = BodyDigester(minimum)
    with open(path + ".part", "wb") as target:
        for start in range(0, len(body), 4096):
            piece = body[start:start + 4096]
            digester.feed(piece)
            target.write(piece)
        target.flush()
        digester.save(target.fileno(), path)
    os.replace(path + ".part", path)
    return path


def test_the_worker_finds_the_digests_of_the_very_file_and_ignores_another(tmp_path):
    data = os.urandom(50_000)
    path = _saved_bundle(str(tmp_path), make_bundle({"big.bin": data, "small.txt": b"s"}))
    with OpenedBundle.open_path(path) as bundle:
        assert bundle.known_sha1(bundle.members["data/big.bin"]) == hashlib.sha1(data).hexdigest()
        assert bundle.known_sha1(bundle.members["data/small.txt"]) is None
    # another file at the same path (a retry's copy): the digests are not its own
    shutil.copyfile(path, path + ".copy")
    os.replace(path + ".copy", path)
    with OpenedBundle.open_path(path) as bundle:
        assert bundle.known_sha1(bundle.members["data/big.bin"]) is None


def _store(archive: LocalArchive, bundle: OpenedBundle, name: str, hashsum: str) -> None:
    member = bundle.members[name]
    archive.store(1, FileSource(label=name, size=member.size, mtime=0, hashtype="sha1",
                                hashsum=hashsum, opener=lambda: bundle.open(member),
                                extent=bundle.extent(member), known_sha1=bundle.known_sha1(member)))


def test_the_archive_copies_a_hashed_member_without_reading_it_and_checks_the_digest(tmp_path):
    data = os.urandom(6 * 1024 * 1024)
    path = _saved_bundle(str(tmp_path), make_bundle({"big.bin": data}),
                         member_digests.MIN_MEMBER_SIZE)
    archive = LocalArchive(str(tmp_path / "archive"))
    with OpenedBundle.open_path(path) as bundle:
        assert bundle.known_sha1(bundle.members["data/big.bin"])
        with pytest.raises(ChecksumMismatch):  # the metadata's hash is checked against it
            _store(archive, bundle, "data/big.bin", hashlib.sha1(b"other").hexdigest())
        assert not os.path.exists(archive.path_for(1))
        _store(archive, bundle, "data/big.bin", hashlib.sha1(data).hexdigest())
    with open(archive.path_for(1), "rb") as stored:
        assert stored.read() == data


def test_digests_are_removed_with_the_bundle(tmp_path):
    path = _saved_bundle(str(tmp_path), make_bundle({"big.bin": os.urandom(5000)}))
    assert os.path.exists(member_digests.digests_path(path))
    member_digests.discard(path)
    assert not os.path.exists(member_digests.digests_path(path))


@pytest.mark.e2e
def test_the_frontend_hashes_big_members_and_the_worker_stores_them(make_stack):
    stack = make_stack(workers=0, extra_env={"INGEST_INGEST_HASH_ON_ARRIVAL": "true"})
    stack.admin("dbsync")
    stack.start_frontend()
    data = os.urandom(member_digests.MIN_MEMBER_SIZE + 12345)
    body = make_bundle({"big.bin": data, "small.txt": b"small"})
    job_id = stack.upload(body)["job_id"]
    bundle = os.path.join(stack.volume, f"{job_id}.tar")
    with open(bundle, "rb") as handle:
        digests = member_digests.load(bundle, handle.fileno())
    assert list(digests.values()) == [hashlib.sha1(data).hexdigest()]
    stack.start_worker()
    assert stack.wait(job_id)["state"] == "OK"
    assert stack.archived(job_id) == {"big.bin": data, "small.txt": b"small"}
    assert not os.path.exists(bundle) and not os.path.exists(member_digests.digests_path(bundle))


def test_hash_on_arrival_is_off_by_default_and_never_for_an_archive_interface(tmp_path):
    home = {"INGEST_HOME": str(tmp_path)}
    assert not Staging.from_settings(load(None, home)).digest_members
    on = dict(home, INGEST_INGEST_HASH_ON_ARRIVAL="true")
    assert Staging.from_settings(load(None, on)).digest_members
    remote = dict(on, ARCHIVEINTERFACE_URL="http://127.0.0.1:8080")
    assert not Staging.from_settings(load(None, remote)).digest_members
