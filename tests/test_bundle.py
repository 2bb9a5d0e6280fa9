"""The safe tar reader on files built on the fly."""
from __future__ import annotations

import subprocess
import tarfile

import pytest

from pacifica.ingest.bundle import BundleLimits, OpenedBundle
from pacifica.ingest.errors import BundleError, MetadataError
from factories import make_bundle, member, pax_header, pax_record, raw_header, padded


def write(tmp_path, body: bytes) -> str:
    path = tmp_path / "bundle.tar"
    path.write_bytes(body)
    return str(path)


def test_members_are_read_at_their_offsets(tmp_path):
    files = {"a/one.bin": b"1" * 1000, "two.bin": b"2" * 3000, "zero": b""}
    with OpenedBundle.open_path(write(tmp_path, make_bundle(files))) as bundle:
        assert set(bundle.members) == {f"data/{name}" for name in files}
        for name, data in files.items():
            assert bundle.open(bundle.members[f"data/{name}"]).read() == data
        assert bundle.read_metadata().startswith(b"[")


def test_leading_dot_slash_names_are_normalised(tmp_path):
    body = make_bundle({}, extras=[member("./data/x.txt", b"x")])
    with OpenedBundle.open_path(write(tmp_path, body)) as bundle:
        assert set(bundle.members) == {"data/x.txt"}


@pytest.mark.parametrize("extra, words", [
    (member("/abs", b"x"), "absolute"), (member("data/../x", b"x"), "'..'"),
    (member("data/s", kind=tarfile.SYMTYPE, linkname="/"), "symbolic link"),
    (member("data/b", kind=tarfile.BLKTYPE), "device"),
])
def test_unsafe_members(tmp_path, extra, words):
    with pytest.raises(BundleError) as raised:
        OpenedBundle.open_path(write(tmp_path, make_bundle({"ok": b"1"}, extras=[extra])))
    assert words in str(raised.value)


def test_limits(tmp_path):
    body = make_bundle({f"f{n}": b"x" for n in range(10)})
    with pytest.raises(BundleError, match="more than 5 members"):
        OpenedBundle.open_path(write(tmp_path, body), BundleLimits(max_members=5))
    with pytest.raises(BundleError, match="over the 5-byte limit"):
        OpenedBundle.open_path(write(tmp_path, body), BundleLimits(max_total_size=5))
    limits = BundleLimits(max_metadata_size=10)
    with OpenedBundle.open_path(write(tmp_path, body), limits) as bundle:
        with pytest.raises(MetadataError, match="over the 10-byte limit"):
            bundle.read_metadata()


@pytest.mark.parametrize("body, words", [(b"", "empty"), (b"\0" * 1024, "no tar headers"),
                                          (b"garbage" * 100, "not a tar")])
def test_not_a_tar(tmp_path, body, words):
    with pytest.raises(BundleError, match=words):
        OpenedBundle.open_path(write(tmp_path, body))


GOOD = {"a.txt": b"hello"}


def ustar_bundle() -> bytes:
    return make_bundle(GOOD, tar_format=tarfile.USTAR_FORMAT)


def refusal(tmp_path, body: bytes) -> str:
    with pytest.raises(BundleError) as raised:
        OpenedBundle.open_path(write(tmp_path, body))
    return str(raised.value)


@pytest.mark.parametrize("front, words", [
    # CVE-2024-6232's shape: records whose keywords run on to the end of the header.
    (pax_header(b"2 " * 40000 + b"6 a=\n"), "malformed pax record at byte 0"),
    (pax_header(pax_record("mtime", "1e400")), "pax mtime of '1e400', not a time"),
    (pax_header(pax_record("mtime", "nan")), "pax mtime of 'nan'"),
    (pax_header(pax_record("size", str(10**15))), "claims 1000000000000000 bytes, more than "
                                                  "the whole bundle"),
    (pax_header(pax_record("size", str(10**30))), "pax size of '1000000000000000000000000000"),
    (pax_header(pax_record("size", "-5")), "pax size of '-5', not a whole number"),
    (pax_header(pax_record("uid", "1_000")), "pax uid of '1_000'"),
    (pax_header(pax_record("path", "9" * 8000)), "runs of digits"),
    (pax_header(pax_record("GNU.sparse.size", "10")), "sparse file"),
    (pax_header(pax_record("comment", "x") + b"\0junk"), "bytes after its last pax record"),
    (pax_header(pax_record("size", "1"), tarfile.XGLTYPE), "global header that sets a size"),
    (pax_header(b"".join(pax_record(f"k{n}", "v") for n in range(65)), tarfile.XGLTYPE),
     "more than 64 records"),
    (raw_header("PaxHeader", 2 * 1024**2, tarfile.XHDTYPE) + bytes(2 * 1024**2),
     "over the 1048576-byte limit"),
    (raw_header("././@LongLink", 2 * 1024**2, tarfile.GNUTYPE_LONGNAME) + bytes(2 * 1024**2),
     "GNU long-name header '././@LongLink' at byte 0 holds 2097152 bytes"),
    (pax_header(pax_record("comment", "x")) * 9, "more than 8 extension headers in a row"),
    (raw_header("data/a", 0) + raw_header("data/b", 0) + raw_header("data/c", -1024),
     "'data/c' at byte 1024 has a negative size (-1024)"),
    (raw_header("data/big", 2**70), "more than a tar member can hold"),
    (raw_header("data/big", 10**9), "claims 1000000000 bytes, more than the whole bundle"),
    (raw_header("data/sparse", 0, tarfile.GNUTYPE_SPARSE), "'data/sparse' at byte 0 is a sparse"),
])
def test_hostile_headers_are_refused_before_tarfile_reads_them(tmp_path, front, words):
    assert words in refusal(tmp_path, front + ustar_bundle())


def test_hostile_mtime_in_the_header_block(tmp_path):
    block = bytearray(raw_header("data/a.txt", 5))
    block[136:148] = b"\x80" + (2**80).to_bytes(11, "big")
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    assert "mtime of 1208925819614629174706176, out of range" in refusal(
        tmp_path, bytes(block) + padded(b"hello") + ustar_bundle())


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_long_names_and_pax_records_of_real_writers_pass(tmp_path, tar_format):
    deep = "d" * 120 + "/" + "é" * 80 + "/2024010112345678901234567890.dat"
    files = {deep: b"x" * 700, "short": b""}
    body = make_bundle(files, tar_format=tar_format)
    with OpenedBundle.open_path(write(tmp_path, body)) as bundle:
        assert bundle.open(bundle.members[f"data/{deep}"]).read() == b"x" * 700


def test_gnu_tar_pax_output_with_a_global_header_passes(tmp_path):
    """What GNU tar writes (--format=pax), with a global header in front as git archive does."""
    source = tmp_path / "src"
    (source / "data" / ("long" * 40)).mkdir(parents=True)
    (source / "data" / ("long" * 40) / "f.bin").write_bytes(b"1" * 3000)
    (source / "metadata.txt").write_text("[]")
    made = subprocess.run(["tar", "--format=pax", "-cf", "-", "-C", str(source), "data",
                           "metadata.txt"], capture_output=True, check=True).stdout
    body = pax_header(pax_record("comment", "0123456789abcdef"), tarfile.XGLTYPE) + made
    with OpenedBundle.open_path(write(tmp_path, body)) as bundle:
        member_name = f"data/{'long' * 40}/f.bin"
        assert bundle.open(bundle.members[member_name]).read() == b"1" * 3000
