"""Hashing while streaming, and verification messages."""
from __future__ import annotations

import hashlib
import io

import pytest

from pacifica.ingest.checksum import HashingReader, digest_size_of
from pacifica.ingest.errors import ChecksumMismatch, SizeMismatch


def test_reader_hashes_and_counts_what_passes():
    data = bytes(range(256)) * 1000
    reader = HashingReader(io.BytesIO(data + b"trailing"), len(data), "sha256")
    buffer = bytearray(4096)
    out = bytearray()
    while got := reader.readinto(buffer):
        out += buffer[:got]
    assert bytes(out) == data
    reader.verify("x", len(data), hashlib.sha256(data).hexdigest().upper())


def test_mismatches_name_the_file_and_both_values():
    reader = HashingReader(io.BytesIO(b"abc"), 3, "md5")
    reader.read()
    with pytest.raises(ChecksumMismatch, match="data/x: md5 mismatch, expected 00 got "
                                               + hashlib.md5(b"abc").hexdigest()):
        reader.verify("data/x", 3, "00")
    short = HashingReader(io.BytesIO(b"ab"), 3, "md5")
    short.read()
    with pytest.raises(SizeMismatch, match="metadata says 3 bytes, bundle has 2"):
        short.verify("data/x", 3, hashlib.md5(b"ab").hexdigest())


def test_known_and_unknown_algorithms():
    assert digest_size_of("SHA1") == 20 and digest_size_of("blake2b") == 64
    assert digest_size_of("crc32") is None and digest_size_of("shake_256") is None
