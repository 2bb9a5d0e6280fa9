"""Bundles the worker must refuse, each with the step it fails at and words of its message.

Shared by the end-to-end rejections (tests/test_e2e_rejections.py) and the in-process ones
(tests/unit/test_pipeline.py).
"""
from __future__ import annotations

import hashlib
import tarfile

from factories import TRANSACTION, file_entry, make_bundle, member

GOOD = {"a/b/foo.txt": b"foo\n", "a/c/bar.txt": b"bar\n" * 100}


def entries(**changes) -> list:
    """GOOD's metadata with the foo.txt entry changed."""
    result = [file_entry(path, data) for path, data in GOOD.items()]
    result[0].update(changes)
    return TRANSACTION + result


def without(key: str) -> list:
    """GOOD's metadata with a key removed from the foo.txt entry."""
    result = entries()
    del result[len(TRANSACTION)][key]
    return result


def truncated(body: bytes) -> bytes:
    """Cut the bundle inside the bytes of its first data member."""
    return body[:512 + 2]


def cut_after_last_member(body: bytes) -> bytes:
    """Drop the end-of-archive blocks (a tar cut exactly at a member boundary)."""
    stripped = body.rstrip(b"\0")
    return stripped + b"\0" * (-len(stripped) % 512)


CASES = {
    "not a tar": (b"this is not a tar file at all" * 40, "open tar", "not a tar"),
    "truncated in a member": (truncated(make_bundle(GOOD, metadata_last=False)), "open tar",
                              "truncated"),
    "truncated at a member boundary": (cut_after_last_member(make_bundle(GOOD)), "open tar",
                                       "truncated"),
    "no metadata.txt": (make_bundle(GOOD, include_metadata=False), "load metadata",
                        "no metadata.txt"),
    "metadata not JSON": (make_bundle(GOOD, metadata_raw=b"{not json"), "load metadata",
                          "not valid JSON"),
    "metadata not a list": (make_bundle(GOOD, metadata_raw=b'{"a": 1}'), "load metadata",
                            "JSON list"),
    "Files entry missing name": (make_bundle(GOOD, metadata=without("name")), "load metadata",
                                 "missing name"),
    "Files entry missing subdir": (make_bundle(GOOD, metadata=without("subdir")),
                                   "load metadata", "missing subdir"),
    "Files entry missing size": (make_bundle(GOOD, metadata=without("size")), "load metadata",
                                 "missing size"),
    "Files entry missing hashtype": (make_bundle(GOOD, metadata=without("hashtype")),
                                     "load metadata", "missing hashtype"),
    "Files entry missing hashsum": (make_bundle(GOOD, metadata=without("hashsum")),
                                    "load metadata", "missing hashsum"),
    "unknown hashtype": (make_bundle(GOOD, metadata=entries(hashtype="crc99")), "load metadata",
                         "unknown hashtype 'crc99'"),
    "listed file with no member": (
        make_bundle(GOOD, metadata=entries() + [file_entry("a/ghost.txt", b"boo")]),
        "load metadata", "data/a/ghost.txt"),
    "member not listed": (make_bundle({**GOOD, "a/stowaway.bin": b"x"},
                                      metadata=entries()), "load metadata",
                          "data/a/stowaway.bin: in the bundle but not listed"),
    "absolute member": (make_bundle(GOOD, extras=[member("/etc/evil", b"x")]), "open tar",
                        "/etc/evil: absolute path"),
    "dot-dot member": (make_bundle(GOOD, extras=[member("data/../../evil", b"x")]), "open tar",
                       "data/../../evil: contains '..'"),
    "symlink member": (make_bundle(GOOD, extras=[member("data/link", kind=tarfile.SYMTYPE,
                                                        linkname="/etc/passwd")]),
                       "open tar", "data/link: is a symbolic link"),
    "hard link member": (make_bundle(GOOD, extras=[member("data/hard", kind=tarfile.LNKTYPE,
                                                          linkname="data/a/b/foo.txt")]),
                         "open tar", "data/hard: is a hard link"),
    "device member": (make_bundle(GOOD, extras=[member("data/dev", kind=tarfile.CHRTYPE)]),
                      "open tar", "data/dev: is a device"),
    "fifo member": (make_bundle(GOOD, extras=[member("data/fifo", kind=tarfile.FIFOTYPE)]),
                    "open tar", "data/fifo: is a FIFO"),
    "duplicate member": (make_bundle(GOOD, extras=[member("data/a/b/foo.txt", b"foo\n")]),
                         "open tar", "data/a/b/foo.txt: appears more than once"),
    "sha1 mismatch": (make_bundle(GOOD, metadata=entries(hashsum="0" * 40)), "ingest files",
                      "data/a/b/foo.txt: sha1 mismatch, expected " + "0" * 40 + " got "
                      + hashlib.sha1(b"foo\n").hexdigest()),
    "size mismatch": (make_bundle(GOOD, metadata=entries(size=3)), "load metadata",
                      "data/a/b/foo.txt: size mismatch, metadata says 3 bytes, bundle has 4"),
    "unexpected top-level member": (make_bundle(GOOD, extras=[member("notes.txt", b"hi")]),
                                    "open tar", "notes.txt: unexpected member"),
}
