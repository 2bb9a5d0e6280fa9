"""Our service inside a Pacifica deployment: the real UniqueID, Archive Interface, Metadata
and Policy from PyPI, and the real pacifica-cli uploading to our frontend.

The packages are installed (pinned) on first use; see tests/pacifica_services.py.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import uuid

import pytest
import requests

import pacifica_services as pac
from factories import TRANSACTION, file_entry, make_bundle
from harness import Stack, free_port

# The first run installs five virtualenvs inside a fixture; later runs take seconds.
pytestmark = [pytest.mark.pacifica, pytest.mark.timeout(900)]

SUBMITTER, PROJECT, INSTRUMENT = 10, "1234a", 54
# Short retries so the failure tests end quickly; the services answer on loopback.
FAST_RETRIES = {"INGEST_HTTP_RETRIES": "2", "INGEST_HTTP_BACKOFF": "0.05"}


INSTALL_FAILURE: list[str] = []  # pytest sets a failed session fixture up again per test


@pytest.fixture(scope="session")
def pacifica_installed():
    """Every pinned package installed, or the whole module skipped saying why."""
    if not INSTALL_FAILURE:
        try:
            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                list(pool.map(pac.ensure_venv, pac.PINS))
            return
        except pac.PacificaUnavailable as err:
            INSTALL_FAILURE.append(str(err))
    pytest.skip(f"the Pacifica packages could not be installed here: {INSTALL_FAILURE[0]}")


@pytest.fixture(scope="session")
def core(pacifica_installed, tmp_path_factory):
    """UniqueID and the Archive Interface (POSIX), started once."""
    base = tmp_path_factory.mktemp("pacifica-core")
    started = {}
    try:
        started["uniqueid"] = pac.start_uniqueid(base)
        started["archive"] = pac.start_archiveinterface(base)
        yield started
    finally:
        for service in reversed(list(started.values())):
            service.stop()


@pytest.fixture(scope="session")
def services(core, tmp_path_factory):
    """All four: the core ones plus Metadata (on PostgreSQL) and Policy asking it."""
    base = tmp_path_factory.mktemp("pacifica-chain")
    started = {}
    try:
        started["metadata"] = pac.start_metadata(base)
        pac.load_people(started["metadata"].url, SUBMITTER, PROJECT, INSTRUMENT)
        started["policy"] = pac.start_policy(base, started["metadata"].url)
        yield {**core, **started}
    finally:
        for service in reversed(list(started.values())):
            service.stop()


def remote_env(services, *, policy=True, metadata=True, **more) -> dict:
    """The settings that point our service at the real Pacifica services."""
    env = {"UNIQUEID_URL": services["uniqueid"].url,
           "ARCHIVEINTERFACE_URL": services["archive"].url, **FAST_RETRIES}
    if policy:
        env["POLICY_INGEST_URL"] = services["policy"].url + "/ingest"
    if metadata:
        env["METADATA_INGEST_URL"] = services["metadata"].url + "/ingest"
    env.update(more)
    return env


def started_stack(tmp_path_factory, name: str, env: dict):
    stack = Stack(str(tmp_path_factory.mktemp(name)), extra_env=env).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def ids_and_archive(core, tmp_path_factory):
    """Our service with remote ids and archive, its own policy and metadata tables."""
    yield from started_stack(tmp_path_factory, "remote-ids-archive",
                             remote_env(core, policy=False, metadata=False))


@pytest.fixture(scope="module")
def move_root(tmp_path_factory):
    """The folder ``full_chain``'s /move may take files from ([move] allowed_roots)."""
    return tmp_path_factory.mktemp("move-sources")


@pytest.fixture(scope="module")
def full_chain(services, move_root, tmp_path_factory):
    """Our service with all four seams remote."""
    yield from started_stack(tmp_path_factory, "remote-all",
                             remote_env(services, INGEST_MOVE_ALLOWED_ROOTS=str(move_root)))


def stored(services, file_id: int) -> bytes:
    """A file as the Archive Interface keeps it (POSIX backend: <storage>/<id>)."""
    with open(os.path.join(services["archive"].storage, str(file_id)), "rb") as handle:
        return handle.read()


def access_count(service: pac.Service, method: str, path: str) -> int:
    """How many ``method path`` requests a service has logged."""
    try:
        with open(service.folder / "access.log", encoding="utf-8", errors="replace") as handle:
            return sum(f'"{method} {path}' in line for line in handle)
    except FileNotFoundError:
        return 0


FILES = {
    "a/b/foo.txt": b"foo\n",
    "a/c/bar.bin": os.urandom(300_000),
    "日本語/スペース と & 😀.txt": "こんにちは".encode(),
    "empty.dat": b"",
}


def test_upload_with_uniqueid_ids_into_the_archive_interface(core, ids_and_archive):
    uniqueid = core["uniqueid"].url
    job_before = pac.take_id(uniqueid, "upload_job")
    file_before = pac.take_id(uniqueid, "file")

    state = ids_and_archive.ingest(make_bundle(FILES))

    job_after = pac.take_id(uniqueid, "upload_job")
    file_after = pac.take_id(uniqueid, "file")
    assert state["state"] == "OK", state
    assert (state["task"], state["task_percent"], state["complete"]) == ("ingest metadata",
                                                                         "100.0", True)
    assert job_before < state["job_id"] < job_after
    listing = ids_and_archive.files(state["job_id"])["files"]
    assert sorted(f["_id"] for f in listing) == list(range(file_before + 1, file_after))
    for entry in listing:
        path = f"{entry['subdir']}/{entry['name']}" if entry["subdir"] else entry["name"]
        assert stored(core, entry["_id"]) == FILES[path], path


def test_bad_file_names_what_is_already_in_the_archive_interface(core, ids_and_archive):
    files = {"good.txt": b"good", "bad.txt": b"bytes that do not match"}
    entries = TRANSACTION + [file_entry("good.txt", b"good"),
                             file_entry("bad.txt", b"other bytes", size=len(files["bad.txt"]))]
    state = ids_and_archive.ingest(make_bundle(files, metadata=entries))

    assert state["state"] == "FAILED", state
    assert state["task"] == "ingest files"
    assert "data/bad.txt: sha1 mismatch" in state["exception"]
    kept = re.search(r"may already be in the Archive Interface (\S+) and could not be removed "
                     r"\(file ids (\d+)\.\.(\d+)\)", state["exception"])
    assert kept, state["exception"]
    assert kept.group(1) == core["archive"].url
    first, last = int(kept.group(2)), int(kept.group(3))
    assert last == first + 1
    assert stored(core, first) == b"good"  # the Archive Interface has no delete


def test_archive_interface_down_fails_naming_its_url(core, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    stack = Stack(str(tmp_path / "dead-archive"), extra_env={
        "UNIQUEID_URL": core["uniqueid"].url, "ARCHIVEINTERFACE_URL": dead,
        **FAST_RETRIES})
    try:
        state = stack.start().ingest(make_bundle({"x.txt": b"x"}))
    finally:
        stack.stop()
    assert state["state"] == "FAILED", state
    assert state["task"] == "ingest files"
    assert f"the Archive Interface at {dead} could not be reached" in state["exception"]
    assert "(after 3 tries)" in state["exception"]
    assert "may already be" not in state["exception"]  # never connected: nothing got there


def test_full_chain_lands_in_archive_and_metadata(services, full_chain):
    files = {"a/b/foo.txt": b"foo\n", "raw/run 1.bin": os.urandom(50_000),
             "data/x.bin": b"under a folder named data"}
    state = full_chain.ingest(make_bundle(files))

    assert state["state"] == "OK", state
    assert (state["task"], state["task_percent"]) == ("ingest metadata", "100.0")
    record = pac.transaction(services["metadata"].url, state["job_id"])
    assert (record["submitter"], record["project"], record["instrument"]) == (
        SUBMITTER, PROJECT, INSTRUMENT)
    assert record["key_values"] == {"Tag": "foo"}
    recorded = {f"{f['subdir']}/{f['name']}": f for f in record["files"].values()}
    assert set(recorded) == set(files)
    for path, data in files.items():
        entry = recorded[path]
        assert entry["size"] == len(data)
        assert stored(services, entry["_id"]) == data, path


def test_policy_refusal_fails_with_policys_own_message(services, full_chain):
    entries = [dict(e) for e in TRANSACTION] + [file_entry("a.txt", b"a")]
    entries[2]["value"] = 55  # an instrument the project does not have
    asked = access_count(services["policy"], "POST", "/ingest")
    files_before = set(os.listdir(services["archive"].storage))

    state = full_chain.ingest(make_bundle({"a.txt": b"a"}, metadata=entries))

    assert state["state"] == "FAILED", state
    assert state["task"] == "Policy Validation"
    assert "policy rejected the upload (412): Precondition Failed: Invalid values for " \
           "instrument" in state["exception"]
    assert access_count(services["policy"], "POST", "/ingest") == asked + 1  # a 4xx: no retry
    assert set(os.listdir(services["archive"].storage)) == files_before


def test_metadata_refusal_fails_and_names_the_archived_files(services, full_chain):
    entry = file_entry("no-times.txt", b"no times")
    del entry["mtime"], entry["ctime"]  # Metadata requires both for every file
    asked = access_count(services["metadata"], "PUT", "/ingest")

    state = full_chain.ingest(make_bundle({"no-times.txt": b"no times"},
                                          metadata=TRANSACTION + [entry]))

    assert state["state"] == "FAILED", state
    assert state["task"] == "ingest metadata"
    assert f"Metadata at {services['metadata'].url}/ingest failed (500)" in state["exception"]
    assert "KeyError: 'mtime'" in state["exception"]
    assert "may already be in the Archive Interface" in state["exception"]
    assert access_count(services["metadata"], "PUT", "/ingest") == asked + 3  # 5xx: retried


def test_pacifica_cli_uploads_through_our_frontend(services, full_chain, tmp_path):
    source = tmp_path / "src"
    files = {"a/b/foo.txt": b"foo\n", "a/日本 & 😀.txt": "本".encode(),
             "data/x.bin": os.urandom(20_000)}
    for path, data in files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_bytes(data)

    run = pac.cli_upload(tmp_path / "cli", source, ["a", "data"], full_chain.url,
                         pac.prefilled_template(SUBMITTER, PROJECT, INSTRUMENT, "cli"))

    assert run.returncode == 0, run.stdout + run.stderr
    final = json.loads(run.stdout[run.stdout.index("{"):])
    assert (final["state"], final["task"], final["task_percent"]) == (
        "OK", "ingest metadata", "100.0")
    record = pac.transaction(services["metadata"].url, final["job_id"])
    assert record["key_values"] == {"Tag": "cli"}
    recorded = {f"{f['subdir']}/{f['name']}": f for f in record["files"].values()}
    assert set(recorded) == set(files)
    for path, data in files.items():
        assert stored(services, recorded[path]["_id"]) == data, path


def test_move_patches_files_into_the_archive_interface(services, full_chain, move_root):
    folder = move_root / "patched"
    folder.mkdir()
    files = {"run/a.bin": os.urandom(10_000), "run/b.txt": b"bee"}
    entries = [dict(e) for e in TRANSACTION]
    for path, data in files.items():
        source = folder / path.replace("/", "-")
        source.write_bytes(data)
        entries.append(file_entry(path, data, mimetype="application/octet-stream",
                                  source=str(source)))
    patches = access_count(services["archive"], "PATCH", "/")

    reply = full_chain.move(entries)
    assert reply.status_code == 200, reply.text
    state = full_chain.wait(reply.json()["job_id"])

    assert state["state"] == "OK", state
    assert access_count(services["archive"], "PATCH", "/") == patches + len(files)
    assert (state["task"], state["task_percent"]) == ("ingest metadata", "100.0")
    record = pac.transaction(services["metadata"].url, state["job_id"])
    recorded = {f"{f['subdir']}/{f['name']}": f for f in record["files"].values()}
    assert set(recorded) == set(files)
    for path, data in files.items():
        assert stored(services, recorded[path]["_id"]) == data, path
    assert not list(folder.glob("run-*"))  # the Archive Interface moved them


@pytest.mark.parametrize("make, words", [
    (lambda folder: None, "does not exist"),
    (lambda folder: (folder / "gone").symlink_to("/etc/hostname"), "is a symbolic link"),
    (lambda folder: (folder / "gone").write_bytes(b"longer than claimed"), "size mismatch"),
], ids=["missing", "link", "size"])
def test_a_source_that_fails_the_check_is_never_sent_to_the_archive_interface(
        services, full_chain, move_root, make, words):
    folder = move_root / f"unsent-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    make(folder)
    patches = access_count(services["archive"], "PATCH", "/")
    entries = TRANSACTION + [file_entry("gone.bin", b"gone", source=str(folder / "gone"))]
    reply = full_chain.move(entries)
    assert reply.status_code == 200, reply.text
    state = full_chain.wait(reply.json()["job_id"])

    assert state["state"] == "FAILED", state
    assert state["task"] == "move files"
    assert f"'{folder / 'gone'}': " in state["exception"]
    assert words in state["exception"]
    assert access_count(services["archive"], "PATCH", "/") == patches


def test_a_transaction_metadata_already_holds_counts_as_recorded(services, full_chain):
    """An earlier try got through (lost answer, redelivered task): not a failure, no loss."""
    uniqueid, data = services["uniqueid"].url, b"recorded before"
    job_id = pac.take_id(uniqueid, "upload_job") + 1  # the ids our next job will get
    file_id = pac.take_id(uniqueid, "file") + 1
    entry = file_entry("again.txt", data)
    earlier = TRANSACTION + [dict(entry, _id=file_id, subdir=""),
                             {"destinationTable": "Transactions._id", "value": job_id}]
    assert requests.put(services["metadata"].url + "/ingest", json=earlier,
                        timeout=30).json() == {"status": "success"}

    state = full_chain.ingest(make_bundle({"again.txt": data}, metadata=TRANSACTION + [entry]))

    assert state["job_id"] == job_id
    assert state["state"] == "OK", state
    assert stored(services, file_id) == data


def test_someone_elses_transaction_with_our_id_is_a_refusal(services, full_chain):
    uniqueid = services["uniqueid"].url
    job_id = pac.take_id(uniqueid, "upload_job") + 1
    other = TRANSACTION + [dict(file_entry("theirs.txt", b"theirs"), _id=10**9 + job_id),
                           {"destinationTable": "Transactions._id", "value": job_id}]
    assert requests.put(services["metadata"].url + "/ingest", json=other,
                        timeout=30).json() == {"status": "success"}

    state = full_chain.ingest(make_bundle({"ours.txt": b"ours"}))

    assert state["job_id"] == job_id
    assert state["state"] == "FAILED", state
    assert state["task"] == "ingest metadata"
    assert "the Metadata service refused the transaction (400): Could not insert records " \
           f"[ID: {job_id}] due to duplicated ID values" in state["exception"]
    assert "may already be in the Archive Interface" in state["exception"]
