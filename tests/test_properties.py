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

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from factories import TRANSACTION, file_entry, make_bundle, pax_header, pax_record
from pacifica.ingest import metadata
from pacifica.ingest.bundle import BundleLimits, OpenedBundle, scan
from pacifica.ingest.errors import BundleError, IngestError, MetadataError

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
