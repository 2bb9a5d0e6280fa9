"""The safe tar reader on files built on the fly."""
from __future__ import annotations

import tarfile

import pytest

from pacifica.ingest.bundle import Bundle, BundleLimits
from pacifica.ingest.errors import BundleError, MetadataError
from factories import make_bundle, member


def write(tmp_path, body: bytes) -> str:
    path = tmp_path / "bundle.tar"
    path.write_bytes(body)
    return str(path)


def test_members_are_read_at_their_offsets(tmp_path):
    files = {"a/one.bin": b"1" * 1000, "two.bin": b"2" * 3000, "zero": b""}
    with Bundle.open_path(write(tmp_path, make_bundle(files))) as bundle:
        assert bundle.data_members == {f"data/{name}" for name in files}
        for name, data in files.items():
            assert bundle.open(bundle.members[f"data/{name}"]).read() == data
        assert bundle.read_metadata().startswith(b"[")


def test_leading_dot_slash_names_are_normalised(tmp_path):
    body = make_bundle({}, extras=[member("./data/x.txt", b"x")])
    with Bundle.open_path(write(tmp_path, body)) as bundle:
        assert bundle.data_members == {"data/x.txt"}


@pytest.mark.parametrize("extra, words", [
    (member("/abs", b"x"), "absolute"), (member("data/../x", b"x"), "'..'"),
    (member("data/s", kind=tarfile.SYMTYPE, linkname="/"), "symbolic link"),
    (member("data/b", kind=tarfile.BLKTYPE), "device"),
])
def test_unsafe_members(tmp_path, extra, words):
    with pytest.raises(BundleError) as raised:
        Bundle.open_path(write(tmp_path, make_bundle({"ok": b"1"}, extras=[extra])))
    assert words in str(raised.value)


def test_limits(tmp_path):
    body = make_bundle({f"f{n}": b"x" for n in range(10)})
    with pytest.raises(BundleError, match="more than 5 members"):
        Bundle.open_path(write(tmp_path, body), BundleLimits(max_members=5))
    with pytest.raises(BundleError, match="over the 5-byte limit"):
        Bundle.open_path(write(tmp_path, body), BundleLimits(max_total_size=5))
    with Bundle.open_path(write(tmp_path, body), BundleLimits(max_metadata_size=10)) as bundle:
        with pytest.raises(MetadataError, match="over the 10-byte limit"):
            bundle.read_metadata()


@pytest.mark.parametrize("body, words", [(b"", "empty"), (b"\0" * 1024, "no tar headers"),
                                          (b"garbage" * 100, "not a tar")])
def test_not_a_tar(tmp_path, body, words):
    with pytest.raises(BundleError, match=words):
        Bundle.open_path(write(tmp_path, body))
