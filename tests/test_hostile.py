"""Hostile and oversized bundles against a real stack with small limits.

Each must end as a clear FAILED job (or a 4xx at POST), write nothing outside
the archive and the volume, leave the archive as it was, and the service up.
"""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import socket
import tarfile

import pytest

from factories import TRANSACTION, file_entry, make_bundle, member
from faults import admin_jobs, job_expecting, partial_upload, wait_until
from harness import Stack
from test_e2e_ingest import assert_archived

pytestmark = pytest.mark.e2e

LIMITS = {
    "INGEST_INGEST_MAX_BUNDLE_SIZE": "8 Mb",
    "INGEST_INGEST_MAX_METADATA_SIZE": "64 Kb",
    "INGEST_INGEST_MAX_MEMBERS": "50",
    "INGEST_INGEST_MAX_TOTAL_SIZE": "4 Mb",
    "TRANSFER_SIZE": "64 Kb",
}
ESCAPED = "escaped-by-hostile-test"


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A stack whose limits are small enough to hit cheaply."""
    running = Stack(str(tmp_path_factory.mktemp("limited")), extra_env=LIMITS).start()
    yield running
    running.stop()
    root = os.path.dirname(running.base)
    escaped = [os.path.join(folder, name) for folder, dirs, names in os.walk(root)
               for name in names + dirs if ESCAPED in name]
    assert not escaped, f"hostile bundles wrote outside the archive: {escaped}"


def _ustar(files: dict[str, bytes], **options) -> bytes:
    return make_bundle(files, tar_format=tarfile.USTAR_FORMAT, **options)


def _lying_header(size: int) -> bytes:
    """A bundle whose first member's header claims ``size`` bytes it does not hold."""
    body = bytearray(_ustar({"x.bin": b"x" * 1000}))
    body[124:136] = b"%011o\0" % size
    body[148:156] = b" " * 8
    body[148:156] = b"%06o\0 " % sum(body[:512])
    return bytes(body)


def _truncated_member() -> bytes:
    body = _ustar({"x.bin": os.urandom(100_000)})
    return body[:512 + 50_000]


def _tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _raw_named(name: str) -> bytes:
    """A bundle with one member whose raw name tarfile would never write (e.g. absolute)."""
    data = b"hostile"
    info = tarfile.TarInfo("placeholder")
    info.size = len(data)
    meta = json.dumps(TRANSACTION).encode()
    meta_info = tarfile.TarInfo("metadata.txt")
    meta_info.size = len(meta)
    body = bytearray(_tar_bytes([(info, data), (meta_info, meta)]))
    encoded = name.encode("utf-8")
    assert len(encoded) <= 100
    body[0:100] = encoded.ljust(100, b"\0")
    body[148:156] = b" " * 8
    body[148:156] = b"%06o\0 " % sum(body[:512])
    return bytes(body)


def _link(kind: bytes, name: str, target: str) -> bytes:
    return _ustar({"ok.txt": b"ok"}, extras=[member(name, kind=kind, linkname=target)])


def _deep_json() -> bytes:
    return make_bundle({}, metadata_raw=b"[" * 20_000 + b"]" * 20_000)


def _huge_metadata() -> bytes:
    entries = TRANSACTION + [{"destinationTable": "TransactionKeyValue", "key": "pad",
                              "value": "p" * 200_000}]
    return make_bundle({}, metadata=entries)


def _gzip_bomb() -> bytes:
    return gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)


def _duplicate() -> bytes:
    return _ustar({"dup.txt": b"one"}, extras=[member("data/dup.txt", b"two")])


def _metadata_subdir(subdir: str, name: str = "f.txt") -> bytes:
    data = b"data"
    return make_bundle({"f.txt": data}, metadata=TRANSACTION + [
        file_entry("f.txt", data, subdir=subdir, name=name)])


HOSTILE = {
    "dotdot": (lambda: _raw_named(f"../{ESCAPED}"), "contains '..'"),
    "data-dotdot": (lambda: _raw_named(f"data/../../{ESCAPED}"), "contains '..'"),
    "deep-dotdot": (lambda: _raw_named(f"data/a/../../../{ESCAPED}"), "contains '..'"),
    "dot-slash-dotdot": (lambda: _raw_named(f"./../{ESCAPED}"), "contains '..'"),
    "backslash-dotdot": (lambda: _raw_named(f"data\\..\\..\\{ESCAPED}"), "contains '..'"),
    "absolute": (lambda: _raw_named(f"/tmp/{ESCAPED}"), "absolute path"),
    "double-slash": (lambda: _raw_named(f"//tmp/{ESCAPED}"), "absolute path"),
    "backslash-absolute": (lambda: _raw_named(f"\\tmp\\{ESCAPED}"), "absolute path"),
    "drive-letter": (lambda: _raw_named(f"C:\\{ESCAPED}"), "absolute path"),
    "percent-encoded": (lambda: _raw_named(f"data/..%2f..%2f{ESCAPED}"), "not listed"),
    "symlink-out": (lambda: _link(tarfile.SYMTYPE, "data/link", f"../../{ESCAPED}"),
                    "symbolic link"),
    "symlink-absolute": (lambda: _link(tarfile.SYMTYPE, "data/passwd", "/etc/passwd"),
                         "symbolic link"),
    "hardlink": (lambda: _link(tarfile.LNKTYPE, "data/hard", "/etc/passwd"), "hard link"),
    "char-device": (lambda: _link(tarfile.CHRTYPE, "data/null", ""), "device"),
    "block-device": (lambda: _link(tarfile.BLKTYPE, "data/sda", ""), "device"),
    "fifo": (lambda: _link(tarfile.FIFOTYPE, "data/fifo", ""), "FIFO"),
    "duplicate": (_duplicate, "appears more than once"),
    "metadata-subdir-dotdot": (lambda: _metadata_subdir(f"../../{ESCAPED}"), "climbs out"),
    "metadata-name-slash": (lambda: _metadata_subdir("data", name=f"../{ESCAPED}"),
                            "plain file name"),
    "lying-metadata-size": (lambda: make_bundle({"f.txt": b"1234"}, metadata=TRANSACTION + [
        file_entry("f.txt", b"1234", size=3)]), "size mismatch"),
    "lying-hash": (lambda: make_bundle({"f.txt": b"1234"}, metadata=TRANSACTION + [
        file_entry("f.txt", b"4321")]), "sha1 mismatch"),
    "lying-header-size": (lambda: _lying_header(10**9), "truncated"),
    "truncated-member": (_truncated_member, "truncated"),
    "not-a-tar": (lambda: os.urandom(5000), "not a tar"),
    "huge-metadata": (_huge_metadata, "over the 65536-byte limit"),
    "deep-json": (_deep_json, "nests deeper"),
    "too-many-members": (lambda: make_bundle({f"m{n}": b"m" for n in range(60)}),
                         "more than 50 members"),
    "members-claim-too-much": (lambda: make_bundle({"big.bin": bytes(5 * 1024 * 1024)}),
                               "over the 4194304-byte limit"),
    "gzip-bomb": (_gzip_bomb, "decompresses to more than"),
    "truncated-gzip": (lambda: gzip.compress(make_bundle({"g.txt": b"g" * 5000}))[:-30],
                       "truncated"),
    "corrupt-xz": (lambda: b"\xfd7zXZ\x00" + os.urandom(3000), "corrupt"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_bundle_fails_cleanly(limited, case):
    build, expected = HOSTILE[case]
    archive_before = limited.archive_files()
    state = limited.ingest(build(), timeout=120)
    assert (state["state"], state["complete"]) == ("FAILED", True), state
    assert expected in state["exception"], state["exception"]
    assert limited.archive_files() == archive_before
    kept = {f"{state['job_id']}.tar", f"{state['job_id']}.tar.sha1"}  # the bundle, its digests
    assert not [name for name in limited.volume_files()
                if name.startswith(f"{state['job_id']}.") and name not in kept]
    assert limited.session.get(limited.url + "/", timeout=10).status_code == 200


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress],
                         ids=["gzip", "bzip2", "xz"])
def test_compressed_bundles_are_ingested(limited, compress):
    files = {"c/one.txt": b"compressed " * 1000, "c/two.bin": os.urandom(20_000)}
    state = limited.ingest(compress(make_bundle(files)))
    assert state["state"] == "OK", state
    assert_archived(limited, state["job_id"], files)
    assert not [name for name in limited.volume_files()
                if name.startswith(f"{state['job_id']}.")]


def _json_error(reply_bytes: bytes) -> tuple[int, dict]:
    head, _, body = reply_bytes.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body.decode("utf-8"))


def _read_reply(sock: socket.socket) -> bytes:
    chunks = []
    sock.settimeout(60)
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_content_length_over_the_limit_is_413_before_the_body(limited):
    sock = partial_upload(limited.port, 9 * 1024 * 1024, 0)
    try:
        status, body = _json_error(_read_reply(sock))
    finally:
        sock.close()
    assert status == 413 and "over the 8388608-byte limit" in body["message"], body


def test_chunked_body_over_the_limit_is_413_while_streaming(limited):
    size = 8 * 1024 * 1024 + 100
    sock = socket.create_connection(("127.0.0.1", limited.port), timeout=60)
    try:
        sock.sendall(("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n").encode())
        sent = 0
        try:
            while sent < size:
                piece = min(256 * 1024, size - sent)
                sock.sendall(b"%x\r\n" % piece + bytes(piece) + b"\r\n")
                sent += piece
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = _read_reply(sock)
    finally:
        sock.close()
    if reply:
        status, body = _json_error(reply)
        assert status == 413 and "over the 8388608-byte limit" in body["message"], body
    failed = wait_until(lambda: [j for j in _failed_413(limited)], 60, "the job to be FAILED")
    assert "over the 8388608-byte limit" in failed[-1]["exception"]
    assert not [n for n in limited.volume_files() if n.endswith(".part")]


def _failed_413(stack) -> list[dict]:
    return [j for j in admin_jobs(stack, "--state", "FAILED")
            if j["bytes_expected"] is None and "byte limit" in j["exception"]]


def test_volume_without_room_is_507(make_stack):
    stack = make_stack(workers=0, extra_env={"INGEST_INGEST_MIN_FREE_SPACE": "1000 TB"}).start()
    reply = stack.session.post(stack.url + "/upload", data=make_bundle({"a": b"a"}), timeout=60)
    assert reply.status_code == 507, reply.text
    assert "not enough space on the volume" in reply.json()["message"]
    assert stack.volume_files() == []
    assert job_expecting(stack, len(make_bundle({"a": b"a"}))) is None
