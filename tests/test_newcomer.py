"""A newcomer's first hour against real processes: unknown paths, the error version, the upload
client's errors and options, a port already in use, the built-in policy's required fields, and
where the default configuration keeps its files (one home, whatever folder a command runs in)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import requests

from factories import TRANSACTION, file_entry, make_bundle
from harness import free_port
from pacifica.ingest import __version__
from pacifica.ingest.client.bundle_writer import BundleLayout
from pacifica.ingest.client.upload import IngestClient, LocalFileError
from test_upload_cli import FIELDS, upload, upload_command

pytestmark = pytest.mark.e2e


# -- unknown paths and the error JSON ----------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path, hint", [
    ("/upload/x", "POST bundles to /upload"),
    ("/jobs/1/x/y", "GET /jobs and GET /jobs/N"),
    ("/ingest/a/b", "POST bundles to /ingest"),
    ("/move/now", "POST move requests (JSON) to /move"),
    ("/get_state/7", "GET /get_state?job_id=N"),
    ("/get_files/7", "GET /get_files?job_id=N"),
    ("/health/deep", "GET /health"),
    ("/receipt-key/x", "GET /receipt-key"),
    ("/no/such/page", "the endpoints are GET /, POST /upload"),
])
def test_unknown_paths_answer_404_json_naming_the_right_url(stack, method, path, hint):
    reply = requests.request(method, stack.url + path, data=b"x", timeout=30)
    assert reply.status_code == 404, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert body["status"].startswith("404")
    assert body["message"].startswith(f"no such endpoint {path}; ")
    assert hint in body["message"]
    assert body["traceback"] == ""
    assert body["version"] == __version__


def test_known_paths_still_work_and_errors_carry_our_version(stack):
    assert requests.get(stack.url + "/", timeout=30).json() == {
        "message": "Pacifica Ingest Up and Running"}
    for path in ("/get_state?job_id=abc", "/get_files?job_id=abc"):  # fast path and CherryPy
        reply = requests.get(stack.url + path, timeout=30)
        assert reply.status_code == 400
        assert reply.json()["version"] == __version__
    reply = requests.put(stack.url + "/move", timeout=30)  # a known path, another method
    assert reply.status_code == 405 and reply.json()["version"] == __version__
    for page in ("/jobs", "/upload", "/static/ingest.css"):  # pages and files for people
        assert requests.get(stack.url + page, timeout=30).status_code == 200, page
    tus = requests.head(stack.url + "/files/0123", headers={"Tus-Resumable": "1.0.0"}, timeout=30)
    assert tus.status_code == 404  # tus answers for its own sub-paths


# -- the upload client -------------------------------------------------------------------------

def run_client(*args: str) -> subprocess.CompletedProcess:
    """The command with its own --url (no stack default), bounded."""
    return subprocess.run([*upload_command(), "--no-progress", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_refused_port_fails_at_once_with_the_reason(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"f")
    port = free_port()
    for mode in ((), ("--resume", "--state-file", str(tmp_path / "state.json"))):
        result = run_client("--url", f"http://127.0.0.1:{port}", *mode, *FIELDS,
                            str(tmp_path / "f.txt"))
        assert result.returncode == 3, result.stderr
        assert f"nothing listens at http://127.0.0.1:{port} (connection refused)" in result.stderr
        assert "retrying" not in result.stderr.lower()


def test_url_without_scheme_gets_http_and_a_bad_scheme_is_refused(stack, tmp_path):
    (tmp_path / "f.txt").write_bytes(b"plain")
    result = run_client("--url", f"127.0.0.1:{stack.port}", "--timeout", "120",
                        "--poll-interval", "0.2", *FIELDS, str(tmp_path / "f.txt"))
    assert result.returncode == 0, result.stderr
    assert f"--url 127.0.0.1:{stack.port} has no scheme; using http://127.0.0.1:" in result.stderr

    refused = run_client("--url", f"ftp://127.0.0.1:{stack.port}", *FIELDS,
                         str(tmp_path / "f.txt"))
    assert refused.returncode == 2
    assert "the scheme must be http:// or https://" in refused.stderr


def test_unknown_host_and_tls_to_a_plain_server_are_named(stack, tmp_path):
    (tmp_path / "f.txt").write_bytes(b"f")
    unknown = run_client("--url", "http://no-such-host.invalid:8066", *FIELDS,
                         str(tmp_path / "f.txt"))
    assert unknown.returncode == 3
    assert "cannot resolve the host name of http://no-such-host.invalid:8066" in unknown.stderr
    tls = run_client("--url", f"https://127.0.0.1:{stack.port}", *FIELDS,
                     str(tmp_path / "f.txt"))
    assert tls.returncode == 3
    assert "TLS handshake" in tls.stderr and "use http://" in tls.stderr


def test_missing_file_exits_2_naming_it_before_contacting_anyone(tmp_path):
    missing = tmp_path / "gone.dat"
    result = run_client("--url", f"http://127.0.0.1:{free_port()}", *FIELDS, str(missing))
    assert result.returncode == 2
    assert str(missing) in result.stderr and "no such file" in result.stderr


def test_file_deleted_while_sending_is_a_local_error_naming_it(stack, tmp_path):
    (tmp_path / "keep.txt").write_bytes(b"keep")
    doomed = tmp_path / "doomed.txt"
    doomed.write_bytes(b"doomed")
    bundle = BundleLayout.build([str(tmp_path / "keep.txt"), str(doomed)], {"submitter": 10})
    doomed.unlink()  # after hashing, before sending
    client = IngestClient(stack.url)
    with bundle.open() as stream, pytest.raises(LocalFileError, match=str(doomed)):
        client.post_bundle(stream, bundle.length)


def test_verbose_job_bar_and_sizes(stack, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "payload.bin").write_bytes(os.urandom(1_200_000))
    result = upload(stack, "-v", "--progress", "--resume", "--chunk-size", "512k",
                    "--state-file", str(tmp_path / "state.json"), *FIELDS, str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    assert f"GET {stack.url}/: 200" in result.stderr  # -v: each request
    assert result.stderr.count("PATCH ") >= 3  # 1.2 MB in 512 KiB chunks
    assert "step 6/6 ingest metadata 100.0 %" in result.stderr
    assert "% of the job" in result.stderr
    assert "job" in result.stdout and "complete=True" in result.stdout


@pytest.mark.parametrize("text", ["16M", "16m", "1G", "512k", "4Mb", "64 MiB"])
def test_chunk_size_units_are_accepted(text, tmp_path):
    result = run_client("--chunk-size", text, "--bundle-only", str(tmp_path / "b.tar"),
                        *FIELDS, __file__)
    assert result.returncode == 0, result.stderr


def test_chunk_size_nonsense_is_a_usage_error(tmp_path):
    result = run_client("--chunk-size", "16 parsecs", "--bundle-only", str(tmp_path / "b.tar"),
                        __file__)
    assert result.returncode == 2 and "16M" in result.stderr


def test_wait_times_out_naming_the_step(make_stack, tmp_path):
    idle = make_stack(workers=0).start()  # nobody works the job: it stays where it is
    (tmp_path / "f.txt").write_bytes(b"f")
    result = run_client("--url", idle.url, "--timeout", "1", "--poll-interval", "0.2",
                        *FIELDS, str(tmp_path / "f.txt"))
    assert result.returncode == 4, result.stderr
    assert "is not done after 1 s; it was at step 'UPLOADING'" in result.stderr
    assert "/get_state?job_id=" in result.stderr


# -- a port in use -----------------------------------------------------------------------------

def test_port_in_use_says_so_in_one_line_and_exits(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        result = subprocess.run([sys.executable, "-m", "pacifica.ingest", "-p", str(port),
                                 "-a", "127.0.0.1", "--dbsync", "--with-worker"],
                                cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=60, check=False)
    assert result.returncode == 4
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert f"127.0.0.1:{port} is already in use" in lines[0]
    assert "-p" in lines[0] and "-a" in lines[0] and "scripts/run.sh -p" in lines[0]
    assert not (tmp_path / "var").exists()  # nothing started, nothing written


# -- the built-in policy -----------------------------------------------------------------------

def test_policy_refuses_a_bundle_missing_required_fields(stack):
    data = b"no project, no instrument"
    metadata = [TRANSACTION[0], file_entry("p.txt", data)]
    state = stack.ingest(make_bundle({"p.txt": data}, metadata=metadata))
    assert (state["state"], state["task"]) == ("FAILED", "Policy Validation"), state
    assert "Transactions.project, Transactions.instrument" in state["exception"]
    assert "Transactions.submitter" not in state["exception"].split("(")[0]
    assert stack.files(state["job_id"])["files"] == []


def test_policy_required_setting_reaches_the_worker(make_stack):
    relaxed = make_stack(extra_env={"INGEST_POLICY_REQUIRED": "submitter"}).start()
    data = b"just a submitter"
    state = relaxed.ingest(make_bundle({"s.txt": data},
                                       metadata=[TRANSACTION[0], file_entry("s.txt", data)]))
    assert state["state"] == "OK", state
    assert relaxed.archived(state["job_id"]) == {"s.txt": data}


def test_client_surfaces_the_policy_refusal(stack, tmp_path):
    (tmp_path / "f.txt").write_bytes(b"f")
    result = upload(stack, "--no-progress", "--submitter", "10", str(tmp_path / "f.txt"))
    assert result.returncode == 1
    assert "FAILED at Policy Validation" in result.stderr
    assert "Transactions.project" in result.stderr



# -- one home for every command ----------------------------------------------------------------

ORIGINAL_PATH_NAMES = ("VOLUME_PATH", "PEEWEE_URL", "BROKER_URL", "ARCHIVE_PATH", "BACKEND_URL")


def default_env(**extra: str) -> dict:
    """This environment without any setting: the default configuration, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("INGEST_") and key not in ORIGINAL_PATH_NAMES}
    env.update(extra)
    return env


def command(name: str, *args: str, cwd, env: dict, timeout: float = 120):
    """A console script of this venv, run in ``cwd``."""
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), name), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_no_command_but_dbsync_creates_the_database(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = default_env(INGEST_HOME=str(home))
    database = home / "var" / "ingest.sqlite3"
    refusals = [command("pacifica-ingest-cmd", "jobs", cwd=elsewhere, env=env),
                command("pacifica-ingest-cmd", "dbchk", cwd=elsewhere, env=env),
                command("pacifica-ingest", "-p", str(free_port()), cwd=elsewhere, env=env),
                command(sys.executable, "-m", "celery", "-A", "pacifica.ingest.tasks", "worker",
                        "--without-gossip", "--without-mingle", "--without-heartbeat",
                        cwd=elsewhere, env=env),
                command(sys.executable, "-c", "import pacifica.ingest.wsgi", cwd=elsewhere,
                        env=env)]  # what gunicorn and uwsgi load
    for result in refusals:
        assert result.returncode != 0, result.args
        assert f"INFO pacifica.ingest.startup: database sqlite:///{database}, volume " \
               f"{home / 'var' / 'volume'}" in result.stderr, result.stderr
        assert f"no database at {database}" in result.stderr, result.stderr
        assert "`pacifica-ingest-cmd dbsync`" in result.stderr
    assert not database.exists()
    assert list(elsewhere.iterdir()) == []  # nothing written where the commands ran

    made = command("pacifica-ingest-cmd", "dbsync", cwd=elsewhere, env=env)
    assert made.returncode == 0 and database.exists(), made.stderr
    listing = command("pacifica-ingest-cmd", "jobs", "--json", cwd=tmp_path, env=env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.strip() == "[]"
    assert list(elsewhere.iterdir()) == []


def test_a_config_file_anchors_paths_in_its_folder_and_urls_are_redacted(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "ingest.cfg").write_text("[ingest]\nvolume_path = bundles\n")
    env = default_env()
    made = command("pacifica-ingest-cmd", "-c", str(folder / "ingest.cfg"), "dbsync",
                   cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    assert (folder / "var" / "ingest.sqlite3").exists()
    assert f"volume {folder / 'bundles'}" in made.stderr
    mysql = command("pacifica-ingest-cmd", "dbchk", cwd=tmp_path, env=default_env(
        PEEWEE_URL="mysql://bob:hunter2@127.0.0.1:1/x", DATABASE_CONNECT_ATTEMPTS="1"))
    assert "database mysql://127.0.0.1:1/x" in mysql.stderr and "hunter2" not in mysql.stderr


# -- pacifica-cli against the embedded service -------------------------------------------------

@pytest.fixture
def cli():
    """The real pacifica-cli (installed once into its own virtualenv)."""
    import pacifica_services  # pylint: disable=import-outside-toplevel
    try:
        pacifica_services.ensure_venv("cli")
    except pacifica_services.PacificaUnavailable as err:
        pytest.skip(f"pacifica-cli could not be installed here: {err}")
    return pacifica_services


@pytest.mark.pacifica
@pytest.mark.timeout(600)
def test_pacifica_cli_with_its_ordinary_configuration(stack, cli, tmp_path):
    source = tmp_path / "src"
    (source / "run7").mkdir(parents=True)
    (source / "run7" / "scan.dat").write_bytes(b"scan 7\n")
    home = tmp_path / "home"
    configured = cli.cli_configure(home, stack.url)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    assert f"upload_policy_url = {stack.url}/uploader" in (
        home / ".pacifica_cli" / "config.ini").read_text()

    run = cli.cli_upload_ordinary(home, source, ["--logon", "10", "--project", "1234a",
                                                 "--instrument", "54", "run7"])
    assert run.returncode == 0, run.stdout + run.stderr
    final = json.loads(run.stdout[run.stdout.index("{"):])
    assert final["state"] == "OK" and final["complete"], final
    listing = stack.files(final["job_id"])
    assert [(f["subdir"], f["name"]) for f in listing["files"]] == [
        ("Project ID 1234a/run7", "scan.dat")]
    transaction = listing["transaction"]
    assert (str(transaction["submitter"]), str(transaction["project"]),
            str(transaction["instrument"])) == ("10", "1234a", "54"), transaction
    assert transaction["key_values"] == {"User of Record": "10"}

    # without an instrument the built-in policy has none to offer: the CLI says which is missing
    missing = cli.cli_upload_ordinary(home, source, ["--logon", "10", "--project", "1234a",
                                                     "run7"])
    assert missing.returncode != 0
    assert "Could not find value for instrument" in missing.stdout + missing.stderr


@pytest.mark.pacifica
@pytest.mark.timeout(600)
def test_pacifica_cli_with_a_prefilled_template(stack, cli, tmp_path):
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "a" / "x.txt").write_bytes(b"prefilled\n")
    run = cli.cli_upload(tmp_path / "cli", source, ["a"], stack.url,
                         cli.prefilled_template(10, "1234a", 54, "prefilled"))
    assert run.returncode == 0, run.stdout + run.stderr
    final = json.loads(run.stdout[run.stdout.index("{"):])
    assert final["state"] == "OK" and final["complete"], final
    assert stack.files(final["job_id"])["transaction"]["key_values"] == {"Tag": "prefilled"}


@pytest.mark.parametrize("query, expected", [
    ({"user": 10, "columns": ["_id", "first_name"], "from": "users", "where": {}},
     [{"_id": 10, "first_name": ""}]),
    ({"user": -1, "columns": ["_id"], "from": "users", "where": {"network_id": "ada"}},
     [{"_id": "ada"}]),
    ({"user": 10, "columns": ["_id", "title"], "from": "projects", "where": {"_id": "1234a"}},
     [{"_id": "1234a", "title": ""}]),
    ({"user": 10, "columns": ["_id"], "from": "instruments", "where": {}}, []),
])
def test_uploader_answers_what_the_query_names(stack, query, expected):
    reply = requests.post(stack.url + "/uploader", json=query, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json() == expected


@pytest.mark.parametrize("body", ["[1]", '{"from": 7}', '{"from": "users", "where": []}',
                                  '{"from": "users", "columns": "x"}', "not json"])
def test_uploader_refuses_a_malformed_query_with_json(stack, body):
    reply = requests.post(stack.url + "/uploader", data=body, timeout=30,
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["traceback"] == ""


# -- a body too short to be a tar --------------------------------------------------------------

def test_a_five_byte_body_is_not_a_tar_not_a_truncated_one(stack):
    state = stack.ingest(b"hello")
    assert (state["state"], state["task"]) == ("FAILED", "open tar"), state
    assert state["exception"].startswith("the upload is not a tar archive: 5 bytes is too short"), \
        state
    assert "truncated" not in state["exception"] and "member" not in state["exception"]
