"""metadata.txt parsing, validation and member placement (pure)."""
from __future__ import annotations

import json

import pytest

from pacifica.ingest import metadata
from pacifica.ingest.errors import MetadataError
from pacifica.ingest.filetable import MEMBER, FileTable, FinalMetadata, Member
from factories import TRANSACTION, file_entry


def parse(entries) -> metadata.IngestMetadata:
    return metadata.parse(json.dumps(entries).encode())


def test_good_metadata_parses():
    parsed = parse(TRANSACTION + [file_entry("a/b/foo.txt", b"foo\n")])
    assert len(parsed.entries) == 5 and parsed.files[0].name == "foo.txt"


@pytest.mark.parametrize("subdir, member", [
    ("data/a/b/", "data/a/b/foo.txt"), ("a/b", "data/a/b/foo.txt"),
    ("data//a/b", "data/a/b/foo.txt"), ("", "data/foo.txt"), ("data", "data/foo.txt"),
])
def test_placement_of_subdir_spellings(subdir, member):
    entry = parse([file_entry("x/foo.txt", b"1", subdir=subdir)]).files[0]
    placed = metadata.place_files([entry], {member})
    assert placed[0].member == member


def test_folder_named_data_prefers_the_literal_member():
    entry = parse([file_entry("data/x", b"1", subdir="data")]).files[0]
    placed = metadata.place_files([entry], {"data/data/x"})
    assert (placed[0].member, placed[0].subdir) == ("data/data/x", "data")


def test_with_ids_adds_ids_clipped_subdirs_and_the_transaction():
    parsed = parse(TRANSACTION + [file_entry("a/b/foo.txt", b"foo\n"),
                                  {"destinationTable": "Transactions._id", "value": 1}])
    placed = metadata.place_files(parsed.files, {"data/a/b/foo.txt"})
    final = metadata.with_ids(parsed.entries, placed, first_id=100, job_id=7)
    files = [e for e in final if e["destinationTable"] == "Files"]
    assert files[0]["_id"] == 100 and files[0]["subdir"] == "a/b"
    assert [e for e in final if e["destinationTable"] == "Transactions._id"] == [
        {"destinationTable": "Transactions._id", "value": 7}]


@pytest.mark.parametrize("raw, words", [
    (b"[", "not valid JSON"), (b"{}", "JSON list"), (b"\xff\xfe", "not UTF-8"),
    (b"[" * 100 + b"]" * 100, "nests deeper"),
    # An unterminated string of escaped quotes: the old check rescanned it from every quote
    # (quadratic: this one would have taken hours); the linear one reads it once.
    (b'["' + b'\\"' * 1_000_000, "Unterminated string"),
    (b'["\\' + b"\\\\" * 100_000, "Unterminated string"),
])
def test_unreadable_metadata(raw, words):
    with pytest.raises(MetadataError, match=words):
        metadata.parse(raw)


@pytest.mark.parametrize("changes, words", [
    ({"name": "a/b"}, "plain file name"), ({"name": ".."}, "plain file name"),
    ({"subdir": "../etc"}, "climbs out"), ({"size": -1}, "whole number"),
    ({"size": True}, "whole number"), ({"hashtype": "shake_128"}, "unknown hashtype"),
    ({"hashsum": "xyz"}, "not a sha1 hex digest"),
])
def test_bad_file_entries(changes, words):
    with pytest.raises(MetadataError) as raised:
        parse([dict(file_entry("a.txt", b"a"), **changes)])
    assert words in str(raised.value)


def test_unlisted_and_missing_members_are_all_reported():
    entry = parse([file_entry("a.txt", b"a")]).files[0]
    with pytest.raises(MetadataError) as raised:
        metadata.place_files([entry], {"data/b.txt", "data/c.txt"})
    text = str(raised.value)
    assert "data/a.txt" in text and "data/b.txt: in the bundle" in text and "data/c.txt" in text


@pytest.mark.parametrize("text, deep", [
    ('[{"a": "[[[[[[[[[["}]', False),  # brackets inside strings do not count
    ('[{"a": "\\"[[[[\\\\"}]', False),  # nor after escaped quotes and backslashes
    ("[" * 64 + "]" * 64, False),
    ("[" * 65 + "]" * 65, True),
    ('["\\\\"' + ", [" * 64 + "]" * 64 + "]", True),  # an escaped backslash ends no string
])
def test_depth_check_understands_strings_and_escapes(text, deep):
    try:
        metadata.parse(text)
    except MetadataError as err:
        assert ("nests deeper" in str(err)) == deep, str(err)
    else:
        assert not deep


def test_problem_lists_keep_fifty_and_count_the_rest():
    with pytest.raises(MetadataError) as raised:
        metadata.validate([{}] * 200_000, require_source=True)
    assert len(raised.value.details) == 50
    assert str(raised.value).endswith("... and 199950 more")


class _Chunks:
    """A reader that gives at most ``size`` bytes per read, to split tokens between reads."""

    def __init__(self, raw: bytes, size: int):
        self.raw, self.size, self.position = raw, size, 0

    def read(self, size: int = -1) -> bytes:
        want = self.size if size < 0 else min(size, self.size)
        chunk = self.raw[self.position:self.position + want]
        self.position += len(chunk)
        return chunk


def load(raw: bytes, chunk: int = 7):
    table = FileTable()
    try:
        others = metadata.load(_Chunks(raw, chunk), table, lambda: raw)
        return others, table.file_count
    finally:
        table.close()


def test_streamed_load_keeps_the_files_in_the_table_and_the_rest_aside():
    raw = b"\xef\xbb\xbf  " + json.dumps(TRANSACTION + [file_entry("a/b.txt", b"1")]).encode()
    others, count = load(raw)
    assert [entry for _, entry in others] == TRANSACTION and count == 1


@pytest.mark.parametrize("raw", [
    b"[", b"{}", b"\xff\xfe", b"[" * 100 + b"]" * 100, b'["' + b'\\"' * 1000,
    b'[{"a": "\\\\"}' + b", [" * 64 + b"]" * 64 + b"]", b"[1, {}]", b"   ", b"",
    json.dumps([dict(file_entry("a.txt", b"a"), size=-1)]).encode(),
])
def test_streamed_load_refuses_as_parse_does(raw):
    with pytest.raises(MetadataError) as whole:
        metadata.parse(raw)
    for chunk in (1, 2, 5, 64 * 1024):
        with pytest.raises(MetadataError) as streamed:
            load(raw, chunk)
        assert str(streamed.value) == str(whole.value)


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_streamed_depth_check_follows_strings_and_escapes_across_reads(chunk):
    for text, deep in [('[{"a": "\\"[[[[\\\\"}]', False), ("[" * 65 + "]" * 65, True),
                       ('[{"a": "[[[[[[[[[["}]', False)]:
        try:
            load(text.encode(), chunk)
        except MetadataError as err:
            assert ("nests deeper" in str(err)) == deep, str(err)
        else:
            assert not deep


def test_file_table_places_and_refuses_as_place_files_does():
    entries = [file_entry("a/missing.txt", b"1"), file_entry("b.txt", b"2"),
               file_entry("b.txt", b"2", subdir="data"), file_entry("c.txt", b"3"),
               file_entry("data/x", b"4", subdir="data")]
    members = {"data/b.txt": 1, "data/c.txt": 1, "data/data/x": 1, "data/d.txt": 5}
    parsed = parse(entries)
    with pytest.raises(MetadataError) as in_memory:
        metadata.place_files(parsed.files, set(members))
    table = FileTable()
    try:
        for offset, (name, size) in enumerate(members.items()):
            table.add_name(Member(name, size, offset * 512, 0.0), MEMBER)
        for entry in parsed.files:
            table.add_file(entry, metadata.candidates(entry), entries[entry.index])
        with pytest.raises(MetadataError) as on_disk:
            table.place()
    finally:
        table.close()
    assert str(on_disk.value) == str(in_memory.value)
    assert "listed twice" in str(on_disk.value) and "data/d.txt: in the bundle" in str(
        on_disk.value)


@pytest.mark.parametrize("y_size", [3, 2])
def test_file_table_finds_size_mismatches_and_gives_the_placed_files_in_order(y_size):
    entries = TRANSACTION + [file_entry("data/x", b"4", subdir="data"), file_entry("y", b"22")]
    parsed = parse(entries)
    table = FileTable()
    try:
        table.add_name(Member("data/data/x", 1, 512, 0.0), MEMBER)
        table.add_name(Member("data/y", y_size, 1536, 0.0), MEMBER)
        for entry in parsed.files:
            table.add_file(entry, metadata.candidates(entry), entries[entry.index])
        if y_size != 2:
            with pytest.raises(MetadataError, match="data/y: size mismatch, metadata says 2"):
                table.place()
            return
        table.place()
        assert [(p.seq, p.member.name, p.member.offset) for p in table.placed()] == [
            (0, "data/data/x", 512), (1, "data/y", 1536)]
        others = [(n, e) for n, e in enumerate(entries) if e["destinationTable"] != "Files"]
        final = list(FinalMetadata(table, others, first_id=100, job_id=7))
        assert final == metadata.with_ids(
            entries, metadata.place_files(parsed.files, {"data/data/x", "data/y"}), 100, 7)
    finally:
        table.close()
