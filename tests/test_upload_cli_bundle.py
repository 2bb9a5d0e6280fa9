"""Bundles written by the upload command: the original format's rules, and our streaming layout."""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile

import pytest
from pacifica.uploader.metadata import FileObj, MetaObj, metadata_decode

from pacifica.ingest.client.bundle_writer import BundleInputError, BundleLayout, collect
from pacifica.ingest.metadata import place_files, validate


def make_tree(root) -> dict[str, bytes]:
    """Nested and Unicode names, an empty file, and a folder literally named data."""
    files = {
        "top/a/b/foo.txt": b"foo\n",
        "top/日本語/スペース と & 😀.dat": os.urandom(40_000),
        "top/empty.bin": b"",
        "top/data/a/x": b"inside data/a",
        "top/a/x": b"outside",
    }
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def original_rule_members(metadata: list, tar: tarfile.TarFile) -> dict[str, bytes]:
    """Resolve Files entries as the original server does: data/ + subdir minus one leading data."""
    found = {}
    for entry in metadata:
        if entry["destinationTable"] != "Files":
            continue
        parts = [part for part in entry["subdir"].split("/") if part]
        if parts and parts[0] == "data":
            parts = parts[1:]
        member = "/".join(["data", *parts, entry["name"]])
        data = tar.extractfile(member).read()
        assert len(data) == entry["size"], member
        assert hashlib.new(entry["hashtype"], data).hexdigest() == entry["hashsum"], member
        found["/".join([*parts, entry["name"]])] = data
    return found


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The upload command as a user runs it."""
    return subprocess.run([sys.executable, "-m", "pacifica.ingest.client", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_bundle_only_follows_the_original_format(tmp_path):
    files = make_tree(tmp_path / "in")
    target = tmp_path / "bundle.tar"
    result = run_cli("--bundle-only", str(target), "--submitter", "10", "--project", "1234a",
                     "--instrument", "54", "--kv", "Tag=foo", "--json",
                     str(tmp_path / "in" / "top"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["files"] == len(files)

    listing = subprocess.run(["tar", "-tf", str(target)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert listing[-1] == "metadata.txt"
    assert sorted(listing[:-1]) == sorted(f"data/{name}" for name in files)

    with tarfile.open(target) as tar:
        raw = tar.extractfile("metadata.txt").read().decode("utf-8")
        metadata = json.loads(raw)
        assert original_rule_members(metadata, tar) == files
    assert metadata[:4] == [
        {"destinationTable": "Transactions.submitter", "value": 10},
        {"destinationTable": "Transactions.project", "value": "1234a"},
        {"destinationTable": "Transactions.instrument", "value": 54},
        {"destinationTable": "TransactionKeyValue", "key": "Tag", "value": "foo"},
    ]
    # the real uploader's own metadata library reads it, every key known to it
    decoded = metadata_decode(raw)
    assert sum(isinstance(obj, FileObj) for obj in decoded) == len(files)
    assert sum(isinstance(obj, MetaObj) for obj in decoded) == 4


def test_stream_is_what_tarfile_writes_and_seeks_anywhere(tmp_path):
    make_tree(tmp_path)
    bundle = BundleLayout.build([str(tmp_path / "top")], {"submitter": 10})
    written = io.BytesIO()
    assert bundle.write_to(written) == bundle.length
    data = written.getvalue()
    assert len(data) == bundle.length

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        rewritten = io.BytesIO()
        with tarfile.open(fileobj=rewritten, mode="w", format=tarfile.PAX_FORMAT) as copy:
            for info in tar.getmembers():
                copy.addfile(info, tar.extractfile(info))
    assert rewritten.getvalue() == data

    picker = random.Random(7)
    with bundle.open() as stream:
        assert len(stream) == len(data)
        for _ in range(300):
            start, size = picker.randrange(len(data)), picker.randrange(1, 70_000)
            stream.seek(start)
            got = b""
            while len(got) < size:
                piece = stream.read(size - len(got))
                if not piece:
                    break
                got += piece
            assert got == data[start:start + size]

    again = io.BytesIO()
    BundleLayout.build([str(tmp_path / "top")], {"submitter": 10}).write_to(again)
    assert again.getvalue() == data  # same inputs, same bytes: a resumed upload can continue


def test_inputs_that_cannot_make_a_bundle(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "same.txt").write_bytes(b"1")
    (tmp_path / "two" / "one").mkdir()
    (tmp_path / "two" / "one" / "same.txt").write_bytes(b"2")
    with pytest.raises(BundleInputError, match="no such file"):
        collect([str(tmp_path / "missing")])
    with pytest.raises(BundleInputError, match="would both be stored as data/one/same.txt"):
        collect([str(tmp_path / "one"), str(tmp_path / "two" / "one")])
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(BundleInputError, match="not a regular file"):
        collect([str(tmp_path / "fifo")])
    result = run_cli("--bundle-only", str(tmp_path / "x.tar"), str(tmp_path / "missing"))
    assert result.returncode == 2 and "no such file" in result.stderr
    assert not (tmp_path / "x.tar").exists()


def test_folder_named_data_resolves_under_both_rules(tmp_path):
    """Inputs 'data' and 'a' give members data/data/a/x and data/a/x: each entry names its own."""
    for relative, data in {"data/a/x": b"in data", "a/x": b"in a"}.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(data)
    bundle = BundleLayout.build([str(tmp_path / "data"), str(tmp_path / "a")])
    written = io.BytesIO()
    bundle.write_to(written)
    with tarfile.open(fileobj=io.BytesIO(written.getvalue())) as tar:
        members = {info.name for info in tar.getmembers() if info.name.startswith("data/")}
        assert original_rule_members(bundle.metadata, tar) == {"data/a/x": b"in data",
                                                               "a/x": b"in a"}
    placed = place_files(validate(bundle.metadata).files, members)  # our server's rule
    assert sorted((p.member, p.subdir) for p in placed) == [("data/a/x", "a"),
                                                            ("data/data/a/x", "data/a")]
