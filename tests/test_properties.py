"""Property-based tests (hypothesis) of the metadata parser and the safe tar reader."""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import math
import os
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from factories import TRANSACTION, file_entry, make_bundle, pax_header, pax_record
from pacifica.ingest import metadata
from pacifica.ingest.bundle import BundleLimits, OpenedBundle, scan
from pacifica.ingest.errors import BundleError, IngestError, MetadataError
from pacifica.ingest.tarheaders import plain_headers

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["destinationTable", "name", "subdir", "size",
                                       "hashtype", "hashsum", "key", "value", "source"])
                      | st.text(max_size=5), children, max_size=6),
    max_leaves=30)

file_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\0"),
                     min_size=1, max_size=20).filter(lambda n: n not in (".", ".."))
subdirs = st.lists(file_names, max_size=4).map("/".join)


@SETTINGS
@given(st.one_of(json_values, st.lists(json_values)))
def test_parse_accepts_or_explains_any_json(value):
    try:
        parsed = metadata.parse(json.dumps(value).encode("utf-8"))
    except MetadataError as err:
        assert str(err)
        return
    assert isinstance(value, list)
    assert all(entry.name and ".." not in metadata.split_path(entry.subdir)
               for entry in parsed.files)


@SETTINGS
@given(st.binary(max_size=300))
def test_parse_never_crashes_on_bytes(raw):
    try:
        metadata.parse(raw)
    except MetadataError:
        pass


@SETTINGS
@given(st.integers(min_value=1, max_value=3000), st.booleans())
def test_nesting_limit_is_exact_and_never_recursion(depth, objects):
    if objects:  # [ {"a": {"a": ... 1 } } ]
        text = "[" + '{"a":' * (depth - 1) + "1" + "}" * (depth - 1) + "]"
    else:
        text = "[" * depth + "]" * depth
    try:
        metadata.parse(text)
    except MetadataError as err:
        assert ("nests deeper" in str(err)) == (depth > metadata.MAX_JSON_DEPTH), str(err)
        return
    assert depth <= metadata.MAX_JSON_DEPTH


@SETTINGS
@given(st.dictionaries(st.tuples(subdirs, file_names).map(lambda p: "/".join(filter(None, p))),
                       st.binary(max_size=200), min_size=1, max_size=6),
       st.sampled_from(["data/{}/", "{}", "data//{}//", "/{}/"]))
def test_valid_entries_place_onto_their_members(files, spelling):
    entries = []
    for path, data in files.items():
        directory, _, name = path.rpartition("/")
        entries.append(file_entry(path, data, subdir=spelling.format(directory)))
    parsed = metadata.parse(json.dumps(TRANSACTION + entries))
    placements = metadata.place_files(parsed.files, {f"data/{path}" for path in files})
    assert sorted(p.member for p in placements) == sorted(f"data/{path}" for path in files)
    final = metadata.with_ids(parsed.entries, placements, 100, 7)
    assert final[-1] == {"destinationTable": "Transactions._id", "value": 7}
    assert sorted(e["_id"] for e in final if e.get("destinationTable") == "Files") == \
        list(range(100, 100 + len(files)))


# -- the tar reader ----------------------------------------------------------------------

name_parts = st.sampled_from(["data", "a", "..", ".", "", "metadata.txt", "b c", "é", "C:",
                              "\\..", "..\\x"])
raw_names = st.lists(name_parts, min_size=1, max_size=5).map("/".join) | st.sampled_from(
    ["/etc/passwd", "//x", "\\x", "data/../../x", "./data/a"])
member_types = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                                tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])


def _write(body: bytes, folder: str, name: str = "bundle.tar") -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as handle:
        handle.write(body)
    return path


def _tar(members: list[tuple[str, bytes, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "target" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return buffer.getvalue()


@SETTINGS
@given(st.lists(st.tuples(raw_names, member_types, st.binary(max_size=600)), min_size=1,
                max_size=6))
@example([("./data//a", tarfile.REGTYPE, b"x"), ("data", tarfile.DIRTYPE, b""),
          ("metadata.txt", tarfile.REGTYPE, b"[]")])
def test_reader_accepts_only_safe_members_and_reads_them_back(members):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(_tar(members), folder)
        try:
            with OpenedBundle.open_path(path) as bundle:
                bundle.read_metadata()  # a missing metadata.txt is reported at 'load metadata'
                read = {name: bundle.open(opened).read()
                        for name, opened in bundle.members.items()}
        except (BundleError, MetadataError):
            return
    written = {"/".join(metadata.split_path(n)): (k, d) for n, k, d in members}
    for name, data in read.items():
        parts = name.split("/")
        assert parts[0] == "data" and ".." not in parts and "" not in parts
        assert written[name] == (tarfile.REGTYPE, data)


@SETTINGS
@given(st.dictionaries(file_names, st.binary(max_size=3000), min_size=1, max_size=4),
       st.data())
def test_any_cut_of_a_bundle_is_refused_until_its_end_marker(files, data):
    body = make_bundle(files)
    with tempfile.TemporaryDirectory() as folder:
        full = _write(body, folder, "full.tar")
        members, _ = scan(full, BundleLimits())
        end = max(m.offset + m.size for m in members.values()) if members else 0
        cut = data.draw(st.integers(min_value=1, max_value=len(body) - 1))
        path = _write(body[:cut], folder)
        try:
            scanned, _ = scan(path, BundleLimits())
        except IngestError as err:
            assert str(err)
            return
        assert cut > end and scanned == members


@SETTINGS
@given(st.dictionaries(file_names, st.binary(max_size=2000), min_size=1, max_size=4),
       st.sampled_from([gzip.compress, bz2.compress, lzma.compress]))
def test_compressed_bundles_read_back_byte_for_byte(files, compress):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(compress(make_bundle(files)), folder, "bundle.bin")
        with OpenedBundle.open_path(path, BundleLimits(max_unpack_ratio=10_000)) as bundle:
            for name, data in files.items():
                assert bundle.open(bundle.members[f"data/{name}"]).read() == data
        assert os.listdir(folder) == ["bundle.bin"]


@SETTINGS
@given(st.sampled_from([b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"]), st.binary(max_size=400))
def test_garbage_behind_compression_magic_is_a_bundle_error(magic, tail):
    assume(tail)
    with tempfile.TemporaryDirectory() as folder:
        path = _write(magic + tail, folder)
        try:
            OpenedBundle.open_path(path).close()
        except (BundleError, MetadataError) as err:
            assert str(err)
        assert sorted(os.listdir(folder)) == ["bundle.tar"]


# -- hostile headers: whatever a header says, a member that makes sense or a BundleError ------

HEADER_FIELDS = {"size": (124, 136), "mtime": (136, 148), "type": (156, 157),
                 "name": (0, 100), "mode": (100, 108)}
numbers = st.integers(min_value=-(2**95), max_value=2**95)


def _number_field(value: int, width: int) -> bytes:
    """``value`` as tar writes a number: octal when it fits, else base-256 (either sign)."""
    if 0 <= value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    return (b"\x80" if value >= 0 else b"\xff") + (value % 256 ** (width - 1)).to_bytes(
        width - 1, "big")


def _header_offsets(body: bytes) -> list[int]:
    return [offset for offset in range(0, len(body) - 511, 512)
            if any(body[offset:offset + 512])
            and _checksum(body[offset:offset + 512]) == body[offset + 148:offset + 156]]


def _checksum(block: bytes) -> bytes:
    block = bytearray(block)
    block[148:156] = b" " * 8
    return b"%06o\0 " % sum(block)


def _assert_sane_or_refused(body: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write(body, folder)
        try:
            with OpenedBundle.open_path(path) as bundle:
                members = list(bundle.members.values())
        except IngestError as err:
            assert str(err)
            return
    for found in members:
        assert 0 <= found.size and found.offset + found.size <= len(body)
        assert math.isfinite(found.mtime) and abs(found.mtime) < 2**63


@SETTINGS
@given(st.dictionaries(file_names, st.binary(max_size=1500), min_size=1, max_size=3),
       st.sampled_from(sorted(HEADER_FIELDS)), st.data())
def test_any_header_field_is_a_sane_member_or_a_bundle_error(files, field, data):
    body = bytearray(make_bundle(files))
    offset = data.draw(st.sampled_from(_header_offsets(bytes(body))))
    start, end = HEADER_FIELDS[field]
    if field in ("size", "mtime", "mode"):
        value = data.draw(numbers.map(lambda n: _number_field(n, end - start))
                          | st.binary(min_size=end - start, max_size=end - start))
    else:
        value = data.draw(st.binary(min_size=end - start, max_size=end - start))
    body[offset + start:offset + end] = value
    body[offset + 148:offset + 156] = _checksum(body[offset:offset + 512])
    _assert_sane_or_refused(bytes(body))


pax_keys = st.sampled_from(["size", "mtime", "atime", "uid", "gid", "path", "linkpath",
                            "hdrcharset", "GNU.sparse.size", "comment"])
pax_values = (st.integers(min_value=-(2**70), max_value=2**70).map(str)
              | st.floats(allow_nan=True, allow_infinity=True).map(repr)
              | st.sampled_from(["1e400", "inf", "-nan", "1_0", " 5", "", "BINARY", "0x10"])
              | st.text(max_size=30))


@SETTINGS
@given(st.dictionaries(file_names, st.binary(max_size=1500), min_size=1, max_size=3),
       st.lists(st.tuples(pax_keys, pax_values), min_size=1, max_size=5),
       st.sampled_from([tarfile.XHDTYPE, tarfile.XGLTYPE]), st.binary(max_size=40))
def test_any_pax_record_is_a_sane_member_or_a_bundle_error(files, records, kind, junk):
    raw = b"".join(pax_record(key, value) for key, value in records)
    body = pax_header(raw + junk, kind) + make_bundle(files, tar_format=tarfile.USTAR_FORMAT)
    _assert_sane_or_refused(body)


# -- the one pass over plain headers reads a bundle as the pre-scan and tarfile do ---------

plain_fields = {  # header field -> values: plain ones, and ones only tarfile reads
    (124, 136): st.integers(0, 5000).map(lambda n: b"%011o\0" % n)
    | st.sampled_from([b" 1750 \0      ", b"00000001750 ", b"\0" * 12, b" " * 12,
                       b"0000000175\0x", b"0o1750\0\0\0\0\0\0", b"-1750\0\0\0\0\0\0\0",
                       b"\x80" + bytes(10) + b"\x10", b"\xff" * 12, b"\t1750\0\0\0\0\0\0\0",
                       b"99999999999\0", b"1_750\0\0\0\0\0\0\0", b"77777777777\0",
                       b"00000100000\0"]),
    (136, 148): st.sampled_from([b"13026115601\0", b" 13026115601", b"\0" * 12, b"+1\0" + bytes(9),
                                 b"\x80" + bytes(11), b"777777777777", b"1e3\0" + bytes(8)]),
    (100, 108): st.sampled_from([b"0000644\0", b"   644 \0", b"\0" * 8, b"0000648\0", b"\x1f644\0\0\0\0"]),
    (329, 337): st.sampled_from([b"\0" * 8, b"0000000\0", b"xyz\0\0\0\0\0"]),
    (156, 157): st.sampled_from([b"0", b"\0", b"5", b"7", b"1", b"2", b"x", b"L", b"x", b"S"]),
    (0, 100): st.sampled_from([b"data/a\0", b"data/b/", b"dir/\0", b"/abs", b"data/../x",
                               b"data/\xff\xfe", b"metadata.txt", b"data/a", b"", b"./data//a",
                               b"data/" + b"n" * 95]),
    (345, 500): st.sampled_from([b"\0", b"data\0", b"data/", b"../x\0", b"pre\xe9\0", b"/"]),
    (257, 265): st.sampled_from([b"ustar\x0000", b"ustar  \0", b"\0" * 8, b"garbage!"]),
    (148, 156): st.sampled_from(["signed", "spaced", b"0000000\0", b"\x80" + bytes(7)]),
}


def _checksum_field(block: bytes, how) -> bytes:
    """A checksum field as a writer may put it: right but signed or space-padded, or wrong."""
    if how == "signed":
        block = bytearray(block)
        block[148:156] = b" " * 8
        return b"%06o\0 " % (sum(byte - 256 if byte > 127 else byte for byte in block) % 8**6)
    if how == "spaced":
        return b"%7o\0" % int(_checksum(block)[:6], 8)
    return how


def _scan_both_ways(path: str, max_members: int) -> list:
    """What ``scan`` makes of ``path`` in one pass and through tarfile."""
    outcomes = []
    for one_pass in (True, False):
        try:
            members, metadata_member = scan(path, BundleLimits(max_members=max_members),
                                           one_pass=one_pass)
            outcomes.append((dict(members.items()), metadata_member))
            members.table.close()
        except IngestError as err:
            outcomes.append(str(err))
    return outcomes


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(file_names, st.binary(max_size=1500), min_size=1, max_size=3),
       st.lists(st.sets(st.sampled_from(sorted(plain_fields)), max_size=5), max_size=3),
       st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT]), st.data())
def test_one_pass_and_tarfile_read_every_bundle_alike(files, changes, tar_format, data):
    body = bytearray(make_bundle(files, tar_format=tar_format))
    offsets = _header_offsets(bytes(body))
    for fields in changes:  # several fields of one header at a time
        offset = data.draw(st.sampled_from(offsets))
        for start, end in sorted(fields):  # the checksum last
            if (start, end) != (148, 156):
                value = data.draw(plain_fields[start, end])[:end - start]
                body[offset + start:offset + end] = value + bytes(end - start - len(value))
        block = body[offset:offset + 512]
        body[offset + 148:offset + 156] = _checksum(block)
        if (148, 156) in fields:
            body[offset + 148:offset + 156] = _checksum_field(
                bytes(body[offset:offset + 512]), data.draw(plain_fields[148, 156]))
    cut = data.draw(st.sampled_from([len(body), len(body) - 512, len(body) - 1024, 600]))
    with tempfile.TemporaryDirectory() as folder:
        one_pass, through_tarfile = _scan_both_ways(_write(bytes(body[:cut]), folder), 3)
    assert one_pass == through_tarfile


def _plain_block(name: bytes, kind: bytes, size: bytes, prefix: bytes = b"") -> bytes:
    block = bytearray(512)
    block[0:len(name)], block[156:157], block[124:136] = name, kind, size
    block[100:108], block[136:148], block[257:265] = b"0000644\0", b"13026115601\0", b"ustar\x0000"
    block[345:345 + len(prefix)] = prefix
    block[148:156] = _checksum(bytes(block))
    return bytes(block)


GOOD_TAIL = make_bundle({"a": b"x"}, tar_format=tarfile.USTAR_FORMAT)


@pytest.mark.parametrize("head", [
    _plain_block(b"data/v7/", b"\0", b"00000001000\0"),  # a v7 folder with a size...
    _plain_block(b"data/v7/", b"\0", b"00000001000\0")  # ... where the pre-scan looks next
    + _plain_block(b"e", b"0", b"00000001000\0") + _plain_block(b"f", b"0", b"\xff" * 12),
    _plain_block(b"data/dir", b"5", b"77777777777\0"),  # a folder claiming more than the file
    _plain_block(b"dir//", b"5", b"\0" * 12, prefix=b"data/"),  # a folder in a ustar prefix
    _plain_block(b"", b"5", b"\0" * 12, prefix=b"data//"),
    _plain_block(b"", b"5", b"\0" * 12, prefix=b"../x/"),
    _plain_block(b"b", b"0", b"\0" * 12, prefix=b"data"),
    _plain_block(b"c", b"0", b"00000001000\0") + bytes(512),  # a member, its data all zero
    _plain_block(b"d", b"0", b"\0" * 12) * 4,  # duplicates, and more than max_members
])
def test_one_pass_and_tarfile_agree_on_odd_plain_headers(head, tmp_path):
    one_pass, through_tarfile = _scan_both_ways(_write(head + GOOD_TAIL, str(tmp_path)), 5)
    assert one_pass == through_tarfile


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT,
                                        tarfile.PAX_FORMAT])
def test_bundles_our_client_writes_take_the_one_pass(tar_format, tmp_path):
    """ASCII names under 100 bytes, whole-second mtimes: plain headers in every format."""
    body = make_bundle({"a/b.txt": b"x" * 700, "c.bin": b""}, tar_format=tar_format)
    path = _write(body, str(tmp_path))
    headers = list(plain_headers(path, len(body), 10))
    assert [(name, folder) for name, folder, *_ in headers] == [
        (name, False) for name in ("data/a/b.txt", "data/c.bin", "metadata.txt")]
