"""``POST /move`` takes only what it may: off until ``[move] allowed_roots`` is set, then only
regular files beneath a root, reached without any symbolic link, outside the service's own
files, whose bytes match the metadata; the archived copy is read from the descriptor held
since the check, so a path swapped during the move changes nothing."""
from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest

from factories import TRANSACTION, file_entry, make_bundle
from harness import chosen_database
from pacifica.ingest.archive import FileSource
from pacifica.ingest.extent import Extent
from pacifica.ingest.archive.local import KERNEL_COPY_MIN, LocalArchive
from pacifica.ingest.move_sources import MoveRefused, MoveSources

pytestmark = pytest.mark.e2e

SETTING_NAMES = ("[move] allowed_roots", "INGEST_MOVE_ALLOWED_ROOTS")


def incoming(stack) -> str:
    """A fresh folder beneath the stack's allowed root."""
    folder = os.path.join(stack.base, "incoming", uuid.uuid4().hex[:8])
    os.makedirs(folder)
    return folder


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def run_move(stack, entries: list) -> dict:
    """POST /move (answered 200) and wait for the job's outcome."""
    reply = stack.move(TRANSACTION + entries)
    assert reply.status_code == 200, reply.text
    return stack.wait(reply.json()["job_id"])


def assert_refused(state: dict, task: str, words: str) -> None:
    assert state["state"] == "FAILED", state
    assert state["task"] == task, state
    assert words in state["exception"], state["exception"]
    assert "Traceback" not in state["exception"]


# -- off by default -----------------------------------------------------------------------

def test_move_is_refused_with_403_and_no_job_until_roots_are_set(stack, tmp_path):
    source = write(str(tmp_path / "a.bin"), b"a")
    last_job = stack.ingest(make_bundle({"x.txt": b"x"}))["job_id"]

    reply = stack.move(TRANSACTION + [file_entry("a.bin", b"a", source=source)])

    assert reply.status_code == 403, reply.text
    answer = reply.json()
    assert answer["status"].startswith("403")
    for name in SETTING_NAMES:
        assert name in answer["message"]
    assert stack.session.get(stack.url + "/get_state", params={"job_id": last_job + 1},
                             timeout=30).status_code == 404  # no job was made


def test_the_worker_refuses_a_move_queued_past_the_frontend(stack, tmp_path):
    """``retry --move`` queues a move without the frontend: the worker refuses it itself."""
    source = write(str(tmp_path / "a.bin"), b"a")
    request = tmp_path / "move.json"
    request.write_text(json.dumps(TRANSACTION + [file_entry("a.bin", b"a", source=source)]))
    failed = make_bundle({"x.txt": b"x"}, metadata=TRANSACTION + [file_entry("x.txt", b"y")])
    job_id = stack.ingest(failed)["job_id"]  # retry takes a FAILED job without --force
    before = stack.archive_files()

    stack.admin("retry", "--job_id", str(job_id), "--move", "--path", str(request))
    state = stack.wait(job_id)

    assert_refused(state, "load metadata", SETTING_NAMES[0])
    assert SETTING_NAMES[1] in state["exception"]
    assert stack.archive_files() == before


# -- refused sources ----------------------------------------------------------------------

def outside_file(stack, tmp_path):
    return write(str(tmp_path / "shadow"), b"secret"), b"secret"


def dot_dot(stack, tmp_path):
    folder = incoming(stack)
    climb = os.path.relpath(write(str(tmp_path / "shadow"), b"secret"), folder)
    return f"{folder}/{climb}", b"secret"


def relative(stack, tmp_path):
    return "incoming/a.bin", b"a"


def link_last(stack, tmp_path):
    link = os.path.join(incoming(stack), "a.bin")
    os.symlink(write(str(tmp_path / "shadow"), b"secret"), link)
    return link, b"secret"


def link_middle(stack, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    write(str(tmp_path / "elsewhere" / "a.bin"), b"secret")
    link = os.path.join(incoming(stack), "run")
    os.symlink(tmp_path / "elsewhere", link)
    return f"{link}/a.bin", b"secret"


def archived_file(stack, tmp_path):
    """Another job's file in the archive."""
    done = stack.ingest(make_bundle({"theirs.txt": b"theirs"}))
    file_id = stack.files(done["job_id"])["files"][0]["_id"]
    return stack.archive_path(file_id), b"theirs"


def volume_file(stack, tmp_path):
    return write(os.path.join(stack.volume, "planted.bin"), b"planted"), b"planted"


def database_file(stack, tmp_path):
    path = stack.database.url.split(":///", 1)[1]
    with open(path, "rb") as handle:
        return path, handle.read()


def fifo(stack, tmp_path):
    path = os.path.join(incoming(stack), "pipe")
    os.mkfifo(path)
    return path, b""


def directory(stack, tmp_path):
    return incoming(stack), b""


def nul_byte(stack, tmp_path):
    return os.path.join(incoming(stack), "a\0.bin"), b"a"


def missing(stack, tmp_path):
    return os.path.join(incoming(stack), "never-arrived"), b"a"


REFUSED = [
    (outside_file, "load metadata", "not beneath a directory [move] allowed_roots lists"),
    (dot_dot, "load metadata", "'.' and '..' are not allowed"),
    (relative, "load metadata", "a source must be an absolute path"),
    (nul_byte, "load metadata", "contains a NUL byte"),
    (link_last, "move files", "a.bin': is a symbolic link; a move follows none"),
    (link_middle, "move files", "/run is a symbolic link; a move follows none"),
    (archived_file, "move files", "lies among the service's own files"),
    (volume_file, "move files", "lies among the service's own files"),
    (fifo, "move files", "not a regular file"),
    (directory, "move files", "not a regular file"),
    (missing, "move files", "never-arrived': does not exist"),
]
if chosen_database() == "sqlite":
    REFUSED.append((database_file, "move files", "lies among the service's own files"))


@pytest.mark.parametrize("build, task, words", REFUSED, ids=[case[0].__name__ for case in REFUSED])
def test_a_source_it_may_not_take_fails_the_job_and_archives_nothing(move_stack, tmp_path, build,
                                                                     task, words):
    source, claimed = build(move_stack, tmp_path)
    before = move_stack.archive_files()

    state = run_move(move_stack, [file_entry("a.bin", claimed, source=source)])

    assert_refused(state, task, words)
    assert repr(source) in state["exception"]  # named as the client sent it
    assert move_stack.archive_files() == before


@pytest.mark.parametrize("claim, words", [
    ({"size": 6}, "size mismatch, metadata says 6 bytes, the file has 5"),
    ({"hashsum": hashlib.sha1(b"other").hexdigest()}, "sha1 mismatch"),
])
def test_bytes_that_differ_from_the_metadata_roll_back_the_whole_move(move_stack, claim, words):
    folder = incoming(move_stack)
    good = write(os.path.join(folder, "good.bin"), os.urandom(3000))
    bad = write(os.path.join(folder, "bad.bin"), b"12345")
    before = move_stack.archive_files()
    entries = [file_entry("good.bin", open(good, "rb").read(), source=good),
               file_entry("bad.bin", b"12345", source=bad, **claim)]

    state = run_move(move_stack, entries)

    assert_refused(state, "move files", words)
    assert move_stack.archive_files() == before  # good.bin, stored first, was taken out again
    assert os.path.exists(good) and os.path.exists(bad)


# -- a good move ----------------------------------------------------------------------------

def test_a_good_move_archives_a_copy_of_exactly_the_source_bytes(move_stack):
    folder = incoming(move_stack)
    payloads = {"small.txt": b"small", "big.bin": os.urandom(KERNEL_COPY_MIN + 4321)}
    sources = {name: write(os.path.join(folder, name), data) for name, data in payloads.items()}

    state = run_move(move_stack, [file_entry(f"run/{name}", data, source=sources[name])
                                  for name, data in payloads.items()])

    assert state["state"] == "OK", state
    assert move_stack.archived(state["job_id"]) == {f"run/{name}": data
                                                    for name, data in payloads.items()}
    for entry in move_stack.files(state["job_id"])["files"]:
        stored = os.stat(move_stack.archive_path(entry["_id"]))
        original = os.stat(sources[entry["name"]])
        assert stored.st_nlink == 1 and stored.st_ino != original.st_ino  # a copy, not a link
    for name, data in payloads.items():  # the local archive leaves the original in place
        with open(sources[name], "rb") as handle:
            assert handle.read() == data


# -- a path swapped while the move holds the file -------------------------------------------

@pytest.mark.parametrize("swapped", ["file", "directory"])
def test_a_link_swapped_in_after_the_check_is_not_followed(tmp_path, swapped):
    """The archive stores the file held since the check, whatever the path names by then."""
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "run").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "a.bin").write_bytes(b"secret!")
    data = os.urandom(7000)
    path = str(write(str(root / "run" / "a.bin"), data))
    moves = MoveSources((str(root),))
    archive = LocalArchive(str(tmp_path / "archive"))

    with moves.open(path, len(data)) as held:
        if swapped == "file":
            os.rename(path, root / "run" / "was-a.bin")
            os.symlink(elsewhere / "a.bin", path)
        else:
            os.rename(root / "run", root / "was-run")
            os.symlink(elsewhere, root / "run")
        archive.move(9, path, FileSource(label=path, size=len(data), mtime=0.0,
                                         hashtype="sha1", hashsum=hashlib.sha1(data).hexdigest(),
                                         opener=held.reader, extent=Extent(held.fd, 0)))

    with open(archive.path_for(9), "rb") as stored:
        assert stored.read() == data
    with pytest.raises(MoveRefused, match="is a symbolic link"):
        with moves.open(path, len(b"secret!")):
            pass


def test_a_root_that_is_gone_refuses_with_a_message(tmp_path):
    moves = MoveSources((str(tmp_path / "not-mounted"),))

    with pytest.raises(MoveRefused, match="the allowed root it lies beneath cannot be opened"):
        with moves.open(str(tmp_path / "not-mounted" / "a.bin"), 1):
            pass
