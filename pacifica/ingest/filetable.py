"""A bundle's file table: its tar members and metadata's Files entries in a temporary SQLite
database, so the worker's memory does not grow with the number of files.

A bundle may hold a million files.  Their names, offsets, sizes and hashes are written here
as the tar headers and metadata.txt are read, matched up with SQL (each entry to its member,
every problem found), and read back in file-id order, a row at a time, to store the files
and record them.  The database is SQLite's own anonymous temporary file (``connect("")``):
a few MiB of page cache, the rest on disk, deleted when closed or when the process dies.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Iterator

from .errors import MetadataError, Problems
from .metadata import FileEntry, sent_on

BATCH = 2000  # rows written per executemany
CACHE_KIB = 2048  # SQLite page cache of the table

SCHEMA = """
CREATE TABLE names (name BLOB PRIMARY KEY, kind TEXT NOT NULL, size INTEGER,
                    position INTEGER, mtime REAL) WITHOUT ROWID;
CREATE TABLE files (seq INTEGER PRIMARY KEY, idx INTEGER NOT NULL, name BLOB NOT NULL,
                    subdir BLOB NOT NULL, size INTEGER NOT NULL, hashtype TEXT NOT NULL,
                    hashsum TEXT NOT NULL, mtime BLOB, first BLOB NOT NULL, second BLOB,
                    clip1 BLOB NOT NULL, clip2 BLOB, member BLOB, clipped BLOB,
                    entry TEXT NOT NULL);
"""
DIRECTORY, MEMBER, OTHER = "d", "f", "o"  # names.kind: a folder, a file under data/, else


def _b(text: str | None) -> bytes | None:
    """Names are kept as UTF-8 bytes, lone surrogates and all (tarfile gives undecodable
    name bytes as surrogates, JSON escapes can make any): equal strings, equal bytes."""
    return None if text is None else text.encode("utf-8", "surrogatepass")


def _s(blob: bytes | None) -> str | None:
    return None if blob is None else blob.decode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Member:
    """A regular file in the bundle."""

    name: str  # normalised: 'data/a/b/foo.txt'
    size: int
    offset: int  # where its bytes start in the bundle file
    mtime: float


@dataclass(frozen=True)
class PlacedFile:
    """One Files entry matched with its member, in file-id order (``seq`` from 0)."""

    seq: int
    member: Member
    size: int
    hashtype: str
    hashsum: str
    mtime: str | None  # as metadata.txt gives it


class FileTable:
    """The names in one tar and the Files entries of its metadata.txt."""

    def __init__(self):
        self.db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(SCHEMA)
        self.db.execute("BEGIN")
        self._files: list[tuple] = []
        self.file_count = 0

    def close(self) -> None:
        """Drop the table (its file goes with it)."""
        self.db.close()

    # -- the tar ---------------------------------------------------------------------------

    def forget_names(self) -> None:
        """Drop every name written so far (the tar is read again another way)."""
        self.db.execute("DELETE FROM names")

    def add_directory(self, name: str) -> None:
        """A folder (or the tar's root): a later file of the same name is a duplicate."""
        self.db.execute("INSERT OR IGNORE INTO names (name, kind) VALUES (?, ?)",
                        (_b(name), DIRECTORY))

    def add_name(self, member: Member, kind: str) -> bool:
        """A regular file's header; False if the name was seen before in this tar."""
        try:
            self.db.execute("INSERT INTO names VALUES (?, ?, ?, ?, ?)",
                            (_b(member.name), kind, member.size, member.offset, member.mtime))
        except sqlite3.IntegrityError:
            return False
        return True

    def member(self, name: str) -> Member | None:
        """A regular file under data/ by its normalised name."""
        row = self.db.execute("SELECT name, size, position, mtime FROM names "
                              "WHERE name = ? AND kind = ?", (_b(name), MEMBER)).fetchone()
        return None if row is None else Member(_s(row[0]), *row[1:])

    def members(self) -> Iterator[Member]:
        """Every regular file under data/, by name."""
        for row in self.db.execute("SELECT name, size, position, mtime FROM names "
                                   "WHERE kind = ? ORDER BY name", (MEMBER,)):
            yield Member(_s(row[0]), *row[1:])

    def member_count(self) -> int:
        """How many regular files the bundle holds under data/."""
        return self.db.execute("SELECT COUNT(*) FROM names WHERE kind = ?",
                               (MEMBER,)).fetchone()[0]

    # -- metadata.txt ----------------------------------------------------------------------

    def add_file(self, entry: FileEntry, candidates: list[tuple[str, str]], raw: dict) -> None:
        """A checked Files entry (``raw`` as metadata.txt has it) with the members it may
        name, best first, as ``(member name, subdir relative to data/)``."""
        first, second = candidates[0], candidates[1] if len(candidates) > 1 else (None, None)
        self._files.append((self.file_count, entry.index, _b(entry.name), _b(entry.subdir),
                            entry.size, entry.hashtype, entry.hashsum, _b(entry.mtime),
                            _b(first[0]), _b(second[0]), _b(first[1]), _b(second[1]),
                            json.dumps(raw, separators=(",", ":"))))
        self.file_count += 1
        if len(self._files) >= BATCH:
            self._flush_files()

    def _flush_files(self) -> None:
        self.db.executemany("INSERT INTO files (seq, idx, name, subdir, size, hashtype, hashsum, "
                            "mtime, first, second, clip1, clip2, entry) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._files)
        self._files = []

    def place(self) -> None:
        """Settle each entry's member (docs/PROTOCOL.md); MetadataError naming every entry
        without one or claiming one twice, every unlisted member, every size that differs."""
        self._flush_files()
        self.db.execute(
            "UPDATE files SET member = CASE "
            " WHEN EXISTS (SELECT 1 FROM names WHERE name = first AND kind = ?) THEN first"
            " WHEN EXISTS (SELECT 1 FROM names WHERE name = second AND kind = ?) THEN second END",
            (MEMBER, MEMBER))
        self.db.execute("UPDATE files SET clipped = CASE WHEN member = first THEN clip1 "
                        "ELSE clip2 END")
        self.db.execute("CREATE INDEX files_member ON files (member, seq)")
        problems = Problems()
        for index, name, subdir, first, second, member, earlier in self.db.execute(
                "SELECT idx, name, subdir, first, second, member, "
                " (SELECT idx FROM files AS g WHERE g.member = f.member AND g.seq < f.seq "
                "  ORDER BY g.seq LIMIT 1) FROM files AS f "
                "WHERE member IS NULL OR EXISTS (SELECT 1 FROM files AS g "
                " WHERE g.member = f.member AND g.seq < f.seq) ORDER BY seq"):
            name, subdir, member = _s(name), _s(subdir), _s(member)
            if member is None:
                label = f"{subdir.rstrip('/')}/{name}" if subdir.strip("/") else name
                tried = " or ".join(_s(name) for name in (first, second) if name)
                problems.append(f"{label}: listed in metadata.txt but the bundle has no "
                                f"member {tried}")
            else:
                problems.append(f"{member}: listed twice in metadata.txt (entries "
                                f"{earlier} and {index})")
        for (extra,) in self.db.execute(
                "SELECT name FROM names WHERE kind = ? AND NOT EXISTS (SELECT 1 FROM files "
                "WHERE member = names.name) ORDER BY name", (MEMBER,)):
            problems.append(f"{_s(extra)}: in the bundle but not listed in metadata.txt")
        if not problems:
            for member, declared, found in self.db.execute(
                    "SELECT member, f.size, n.size FROM files AS f JOIN names AS n "
                    "ON n.name = f.member ORDER BY seq"):
                if declared != found:
                    problems.append(f"{_s(member)}: size mismatch, metadata says {declared} bytes, "
                                    f"bundle has {found}")
        if problems:
            raise MetadataError("metadata.txt does not match the bundle's files:", problems)

    def total_size(self) -> int:
        """The bytes the Files entries declare."""
        return self.db.execute("SELECT COALESCE(SUM(size), 0) FROM files").fetchone()[0]

    def placed(self) -> Iterator[PlacedFile]:
        """The placed files in file-id order, read a row at a time."""
        for row in self.db.execute(
                "SELECT seq, n.name, n.size, n.position, n.mtime, f.size, hashtype, hashsum, "
                "f.mtime FROM files AS f JOIN names AS n ON n.name = f.member ORDER BY seq"):
            yield PlacedFile(row[0], Member(_s(row[1]), *row[2:5]), *row[5:8], _s(row[8]))

    def final(self, others: list[tuple[int, dict]], first_id: int) -> Iterator[dict]:
        """The metadata list in its own order: ``others`` (the entries that are not Files,
        with their positions) and each Files entry with its ``_id`` and clipped subdir."""
        pending = iter(others)
        other = next(pending, None)
        for index, seq, clipped, text in self.db.execute(
                "SELECT idx, seq, clipped, entry FROM files ORDER BY seq"):
            while other is not None and other[0] < index:
                yield other[1]
                other = next(pending, None)
            yield dict(json.loads(text), _id=first_id + seq, subdir=_s(clipped))
        while other is not None:
            yield other[1]
            other = next(pending, None)


class FinalMetadata:
    """The list sent on to Policy and Metadata (see ``metadata.sent_on``), read from a file
    table each time it is iterated, so a million entries are never all held."""

    def __init__(self, table: FileTable, others: list[tuple[int, dict]], first_id: int,
                 job_id: int):
        self._table, self._others = table, others
        self._first_id, self._job_id = first_id, job_id

    def __iter__(self) -> Iterator[dict]:
        return sent_on(self._table.final(self._others, self._first_id), self._job_id)
