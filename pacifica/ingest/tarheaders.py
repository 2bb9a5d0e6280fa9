"""A streaming pre-scan of a tar's 512-byte headers, run before ``tarfile`` reads any of them.

``tarfile`` trusts its headers: a negative size walks it backwards over the same headers
forever, a crafted pax header makes the unpatched stdlib (CVE-2024-6232) take time and
memory quadratic in its size, and pax numbers such as ``mtime=1e400`` or ``size=10**30``
come out as values nothing downstream can use.  This walk visits the headers in exactly
the order ``tarfile`` does (the same field decoding, the same pax and GNU rules for where
the next header is) and refuses, with the member and the reason, anything that could make
that walk costly or its values absurd, on any Python, patched or not.  It reads one header
block at a time plus at most ``MAX_EXTENSION_SIZE`` bytes of an extension header's data,
and its time is linear in the number of headers.

Most bundles hold nothing but plain headers (ustar, GNU or v7; regular files and folders;
no extension headers).  For them ``plain_headers`` is the one pass: it decodes each header
as ``tarfile`` would and yields what the bundle reader needs, so neither the check above nor
``tarfile`` reads the headers again.  It accepts only a strict subset of what both accept
(plain octal numbers, an unsigned checksum, a zero block at the end) and raises ``NotPlain``
at the first header outside it, before any refusal; the caller then runs the full check and
``tarfile`` over the whole bundle, so every refusal and message stays theirs.
"""
from __future__ import annotations

import os
import re
import tarfile
from typing import Iterator

from .errors import BundleError

BLOCK = tarfile.BLOCKSIZE
MAX_EXTENSION_SIZE = 1024**2  # a pax or GNU long-name header's data
MAX_CHAINED_EXTENSIONS = 8  # extension headers in a row before a member's own header
MAX_GLOBAL_RECORDS = 64  # records in all pax global headers together
MAX_NUMBER = 2**63 - 1
# The unpatched stdlib searches every pax header's bytes for ``\d+ hdrcharset=``: each run
# of n digits costs it n*n/2 steps; this bounds their sum per header.
MAX_DIGIT_RUN_COST = 2**25
PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
LONG_NAME_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
PAX_INTEGERS = ("size", "uid", "gid")
PAX_TIMES = ("mtime", "atime", "ctime")
_DIGIT_RUN = re.compile(rb"[0-9]+")
_PAX_TIME = re.compile(rb"-?[0-9]{1,19}(\.[0-9]{0,19})?")
# A number field as ``tarfile.nti`` reads it, strictly: spaces, octal digits, spaces, then
# a NUL and anything (nti stops at the NUL).  No sign, base-256, tab or other whitespace.
_PLAIN_NUMBER = re.compile(rb" *([0-7]*) *(?:\x00.*)?", re.S)
_OTHER_NUMBERS = ((100, 108), (108, 116), (116, 124), (329, 337), (337, 345))  # mode uid gid dev
PLAIN_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE)
ZERO_BLOCK = bytes(BLOCK)
WINDOW = 64 * 1024  # bytes read at once while the headers sit close together


class NotPlain(Exception):
    """A header ``plain_headers`` leaves to ``check_headers`` and ``tarfile``."""


def plain_headers(path: str, file_size: int,
                  max_members: int) -> Iterator[tuple[str, bool, int, int, int, None]]:
    """``(name, is_directory, size, data offset, mtime, None)`` of each header of a tar of plain
    headers, as ``tarfile`` gives them (the name decoded and joined to its ustar prefix,
    a folder's trailing slashes removed); NotPlain at the first header that is not plain,
    or if the tar does not end in a zero block after at least one header.  (The None:
    no header here is of an unsafe kind, a link or a device.)"""
    if tarfile.ENCODING.lower().replace("-", "") != "utf8":
        raise NotPlain("names are not decoded as UTF-8 here")
    descriptor = os.open(path, os.O_RDONLY)
    try:
        window, start, offset, members = b"", 0, 0, 0
        while True:
            at = offset - start
            if at + BLOCK > len(window):
                window, start, at = os.pread(descriptor, WINDOW, offset), offset, 0
            block = window[at:at + BLOCK]
            if len(block) < BLOCK:
                raise NotPlain(f"no whole header at byte {offset}")
            if block == ZERO_BLOCK:
                if not members:
                    raise NotPlain("no header before the end marker")
                return
            size, mtime = _plain_numbers(block)
            kind = block[156:157]
            name = _text(block, 0, 100)
            is_directory = kind == tarfile.DIRTYPE or (kind == tarfile.AREGTYPE
                                                      and name.endswith("/"))
            if is_directory and kind != tarfile.DIRTYPE and size:
                raise NotPlain("a v7 folder with a size")  # check_headers would skip its size
            if size > file_size:
                raise NotPlain("a size larger than the bundle")  # check_headers refuses it
            members += 1
            if members > max_members:
                raise NotPlain("over max_members")  # check_headers refuses it
            if is_directory:
                name = name.rstrip("/")
            prefix = _text(block, 345, 500)
            if prefix:
                name = prefix + "/" + name
            if is_directory:
                yield name.rstrip("/"), True, size, offset + BLOCK, mtime, None
                offset += BLOCK
            else:
                yield name, False, size, offset + BLOCK, mtime, None
                offset += BLOCK + _blocks(size)
    finally:
        os.close(descriptor)


def _plain_numbers(block: bytes) -> tuple[int, int]:
    """The size and mtime of a plain header; NotPlain unless its type is plain, every
    number field plain and its unsigned checksum right."""
    if block[156:157] not in PLAIN_TYPES:
        raise NotPlain("not a regular file or folder")
    checksum = _PLAIN_NUMBER.fullmatch(block, 148, 156)
    if checksum is None or int(checksum[1] or b"0", 8) != (
            sum(block) - sum(block[148:156]) + 8 * 32):
        raise NotPlain("a checksum tarfile would have to look at twice")
    size = _PLAIN_NUMBER.fullmatch(block, 124, 136)
    mtime = _PLAIN_NUMBER.fullmatch(block, 136, 148)
    if size is None or mtime is None or any(
            _PLAIN_NUMBER.fullmatch(block, low, high) is None for low, high in _OTHER_NUMBERS):
        raise NotPlain("a number field that is not plain octal")
    return int(size[1] or b"0", 8), int(mtime[1] or b"0", 8)


def _text(block: bytes, start: int, end: int) -> str:
    """A NUL-terminated text field as ``tarfile.nts`` decodes it."""
    end_of_text = block.find(b"\0", start, end)
    return block[start:end if end_of_text < 0 else end_of_text].decode(
        tarfile.ENCODING, "surrogateescape")


def check_headers(path: str, file_size: int, max_members: int) -> None:
    """Walk every header of the tar at ``path``; raise BundleError on the first hostile one."""
    walk = _Walk(file_size)
    with open(path, "rb") as handle:
        offset = members = 0
        while True:
            handle.seek(offset)
            block = handle.read(BLOCK)
            if len(block) < BLOCK or not any(block) or not _checksum_ok(block):
                return  # where tarfile stops (or fails, with its own message) too
            kind = block[156:157]
            if kind in PAX_TYPES or kind in LONG_NAME_TYPES:
                size = walk.extension(block, offset, handle)
            else:
                members += 1
                if members > max_members:
                    raise BundleError(f"the bundle has more than {max_members} members "
                                      "(the configured limit)")
                size = walk.member(block, offset)
            offset += BLOCK + _blocks(size)


class _Walk:
    """What the headers read so far say about the ones to come."""

    def __init__(self, file_size: int):
        self.file_size = file_size
        self.global_records = 0
        self.pending_size: int | None = None  # a pax extended header's size, for the next one
        self.chained = 0

    def extension(self, block: bytes, offset: int, handle) -> int:
        """Check a pax or GNU long-name header and its data; the data's size."""
        kind = block[156:157]
        label = f"{_kind_name(kind)} header {_name(block)!r} at byte {offset}"
        size = self._size(block, label)
        if size > MAX_EXTENSION_SIZE:
            raise _refuse(label, f"holds {size} bytes, over the {MAX_EXTENSION_SIZE}-byte "
                                 "limit for tar extension headers")
        self.chained += 1
        if self.chained > MAX_CHAINED_EXTENSIONS:
            raise _refuse(label, f"is one of more than {MAX_CHAINED_EXTENSIONS} extension "
                                 "headers in a row")
        if kind in PAX_TYPES:
            handle.seek(offset + BLOCK)
            data = handle.read(_blocks(size))  # tarfile parses the padding too
            fields = _pax_fields(data, label)
            if kind == tarfile.XGLTYPE:
                self.global_records += len(fields)
                if self.global_records > MAX_GLOBAL_RECORDS:
                    raise _refuse(label, f"pax global headers hold more than "
                                         f"{MAX_GLOBAL_RECORDS} records together")
                if "size" in fields:  # tarfile would apply it to some later members only
                    raise _refuse(label, "is a pax global header that sets a size")
            elif "size" in fields:
                self.pending_size = self._bounded(int(fields["size"]), label)
        return size

    def member(self, block: bytes, offset: int) -> int:
        """Check a member's own header; the size of the data that follows it."""
        kind = block[156:157]
        label = f"{_name(block)!r} at byte {offset}"
        if kind == tarfile.GNUTYPE_SPARSE:
            raise _refuse(label, "is a sparse file; a bundle may hold only regular files "
                                 "and directories")
        size = self._size(block, label) if self.pending_size is None else self.pending_size
        mtime = _number(block[136:148], label, "mtime")
        if abs(mtime) > MAX_NUMBER:
            raise _refuse(label, f"has an mtime of {mtime}, out of range")
        self.pending_size, self.chained = None, 0
        if kind in tarfile.REGULAR_TYPES or kind not in tarfile.SUPPORTED_TYPES:
            return size
        return 0  # tarfile reads no data after a link, directory or device header

    def _size(self, block: bytes, label: str) -> int:
        size = _number(block[124:136], label, "size")
        if size < 0:
            raise _refuse(label, f"has a negative size ({size})")
        return self._bounded(size, label)

    def _bounded(self, size: int, label: str) -> int:
        if size > MAX_NUMBER:
            raise _refuse(label, f"claims {size} bytes, more than a tar member can hold")
        if size > self.file_size:
            raise _refuse(label, f"claims {size} bytes, more than the whole bundle "
                                 f"({self.file_size} bytes): the bundle is truncated or the "
                                 "header is false")
        return size


def _pax_fields(data: bytes, label: str) -> dict[str, bytes]:
    """Parse pax records strictly and check their numbers (linear in ``data``)."""
    cost = sum((match.end() - match.start()) ** 2 for match in _DIGIT_RUN.finditer(data))
    if cost > MAX_DIGIT_RUN_COST or data.count(b"hdrcharset=") > 1:
        raise _refuse(label, "holds runs of digits or repeated keywords that would stall "
                             "Python's tar reader")
    fields: dict[str, bytes] = {}
    position = 0
    while position < len(data) and data[position] != 0:
        space = data.find(b" ", position, position + 21)
        digits = data[position:space] if space > position else b""
        if not digits.isdigit():
            raise _refuse(label, f"has a malformed pax record at byte {position}: it does not "
                                 "start with its length")
        end = position + int(digits)
        equals = data.find(b"=", space + 1, end - 1)
        if end > len(data) or data[end - 1:end] != b"\n" or equals <= space + 1:
            raise _refuse(label, f"has a malformed pax record at byte {position}: not "
                                 "'<length> <keyword>=<value>\\n'")
        key = data[space + 1:equals].decode("utf-8", "replace")
        fields[key] = data[equals + 1:end - 1]
        position = end
    if data[position:].strip(b"\0"):
        raise _refuse(label, f"has bytes after its last pax record (at byte {position})")
    for key, value in fields.items():
        _check_pax_field(key, value, label)
    return fields


def _check_pax_field(key: str, value: bytes, label: str) -> None:
    if key.startswith("GNU.sparse."):
        raise _refuse(label, "describes a sparse file; a bundle may hold only regular files "
                             "and directories")
    if key in PAX_INTEGERS and not (value.isdigit() and len(value) <= 19
                                    and int(value) <= MAX_NUMBER):
        raise _refuse(label, f"has a pax {key} of {_shown(value)}, not a whole number "
                             "below 2**63")
    if key in PAX_TIMES and not (_PAX_TIME.fullmatch(value)  # so finite, no 'inf' or 'nan'
                                 and abs(float(value)) <= MAX_NUMBER):
        raise _refuse(label, f"has a pax {key} of {_shown(value)}, not a time in seconds "
                             "(decimal digits, at most 19 before the point)")


def _number(field: bytes, label: str, what: str) -> int:
    try:
        return tarfile.nti(field)  # tarfile's own decoding, so both read the same number
    except tarfile.HeaderError as err:
        raise _refuse(label, f"has an unreadable {what} field") from err


def _checksum_ok(block: bytes) -> bool:
    try:
        return tarfile.nti(block[148:156]) in tarfile.calc_chksums(block)
    except tarfile.HeaderError:
        return False


def _blocks(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _name(block: bytes) -> str:
    name = block[0:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
    return (prefix + b"/" + name if prefix else name).decode("utf-8", "replace")


def _kind_name(kind: bytes) -> str:
    return "pax" if kind in PAX_TYPES else "GNU long-name"


def _shown(value: bytes) -> str:
    text = value[:40].decode("utf-8", "replace")
    return repr(text + ("..." if len(value) > 40 else ""))


def _refuse(label: str, reason: str) -> BundleError:
    return BundleError(f"the bundle is not acceptable: {label} {reason}")
