"""Bundles built on the fly: good ones, and every kind of broken one."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass, field

TRANSACTION = [
    {"destinationTable": "Transactions.submitter", "value": 10},
    {"destinationTable": "Transactions.project", "value": "1234a"},
    {"destinationTable": "Transactions.instrument", "value": 54},
    {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "foo"},
]


def file_entry(path: str, data: bytes, hashtype: str = "sha1", subdir: str | None = None,
               **overrides) -> dict:
    """A Files entry for ``data`` stored as ``data/<path>``; subdir in the original's form."""
    directory, _, name = path.rpartition("/")
    entry = {
        "destinationTable": "Files",
        "name": name,
        "subdir": subdir if subdir is not None else f"data/{directory}/" if directory else "data/",
        "size": len(data),
        "hashtype": hashtype,
        "hashsum": hashlib.new(hashtype, data).hexdigest(),
        "mimetype": "application/octet-stream",
        "ctime": "Tue Nov 29 14:09:05 PST 2016",
        "mtime": "Tue Nov 29 14:09:05 PST 2016",
    }
    entry.update(overrides)
    return entry


@dataclass
class Extra:
    """A raw tar member to add as is (links, devices, odd names)."""

    info: tarfile.TarInfo
    data: bytes = b""


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = "") -> Extra:
    """A raw member of any type."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    return Extra(info, data)


@dataclass
class BundleSpec:
    """Files (path under data/ -> bytes), their metadata, and how to lay out the tar."""

    files: dict[str, bytes] = field(default_factory=dict)
    hashtype: str = "sha1"
    metadata: list | None = None  # None: generated from files
    metadata_raw: bytes | None = None  # exact bytes of metadata.txt (overrides metadata)
    metadata_last: bool = True
    include_metadata: bool = True
    extras: list[Extra] = field(default_factory=list)
    tar_format: int = tarfile.PAX_FORMAT

    def entries(self) -> list:
        """The metadata list this bundle carries."""
        if self.metadata is not None:
            return self.metadata
        return TRANSACTION + [file_entry(path, data, self.hashtype)
                              for path, data in self.files.items()]

    def build(self) -> bytes:
        """The tar bytes."""
        buffer = io.BytesIO()
        raw = self.metadata_raw if self.metadata_raw is not None else json.dumps(
            self.entries()).encode("utf-8")
        with tarfile.open(fileobj=buffer, mode="w", format=self.tar_format) as tar:
            if self.include_metadata and not self.metadata_last:
                _add(tar, "metadata.txt", raw)
            for path, data in self.files.items():
                _add(tar, f"data/{path}", data)
            for extra in self.extras:
                tar.addfile(extra.info, io.BytesIO(extra.data) if extra.info.size else None)
            if self.include_metadata and self.metadata_last:
                _add(tar, "metadata.txt", raw)
        return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1480457345
    tar.addfile(info, io.BytesIO(data))


def make_bundle(files: dict[str, bytes] | None = None, **options) -> bytes:
    """Shorthand: the tar bytes of a BundleSpec."""
    return BundleSpec(files=dict(files or {}), **options).build()


class StreamedBody:
    """A request body produced chunk by chunk, with a known length (so it is sent with
    Content-Length, not chunked), optionally slowly."""

    def __init__(self, chunks, length: int, pause: float = 0.0):
        self.chunks = chunks
        self.length = length
        self.pause = pause

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        for chunk in self.chunks:
            if self.pause:
                time.sleep(self.pause)
            yield chunk


def zero_file_bundle(size: int, chunk: int = 1 << 20, name: str = "big/zeros.bin",
                     pause: float = 0.0) -> StreamedBody:
    """A valid bundle holding one file of ``size`` zero bytes, never whole in memory."""
    hasher = hashlib.sha1()
    zeros = bytes(chunk)
    for offset in range(0, size, chunk):
        hasher.update(zeros[:min(chunk, size - offset)])
    entry = file_entry(name, b"")
    entry.update(size=size, hashsum=hasher.hexdigest())
    metadata = json.dumps(TRANSACTION + [entry]).encode("utf-8")

    def header(member: str, length: int) -> bytes:
        info = tarfile.TarInfo(member)
        info.size = length
        info.mtime = 1480457345
        return info.tobuf(format=tarfile.PAX_FORMAT)

    def padding(length: int) -> bytes:
        return bytes(-length % tarfile.BLOCKSIZE)

    head = header(f"data/{name}", size)
    tail = (padding(size) + header("metadata.txt", len(metadata)) + metadata
            + padding(len(metadata)) + bytes(2 * tarfile.BLOCKSIZE))

    def chunks():
        yield head
        for offset in range(0, size, chunk):
            yield zeros[:min(chunk, size - offset)]
        yield tail

    return StreamedBody(chunks(), len(head) + size + len(tail), pause)


def raw_header(name: str, size: int | bytes = 0, kind: bytes = tarfile.REGTYPE,
               mtime: int = 1480457345) -> bytes:
    """One 512-byte ustar header built by hand, so any field may be hostile.

    ``size`` is a number (octal, or base-256 when it does not fit or is negative) or the raw
    12-byte field."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = mtime
    block = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    if isinstance(size, int):
        size = (b"%011o\0" % size if 0 <= size < 8**11
                else (b"\x80" if size >= 0 else b"\xff") + (size % 256**11).to_bytes(11, "big"))
    block[124:136] = size
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    """Data followed by the zeros that fill its last tar block."""
    return data + bytes(-len(data) % tarfile.BLOCKSIZE)


def pax_record(key: str, value: str) -> bytes:
    """One well-formed pax record: "<length> <key>=<value>\\n"."""
    body = f" {key}={value}\n".encode("utf-8")
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax_header(records: bytes, kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A pax extended (x) or global (g) header member holding ``records`` as they are."""
    return raw_header("PaxHeader", len(records), kind) + padded(records)
