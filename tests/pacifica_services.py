"""The real Pacifica services and clients, installed from PyPI and run as processes for tests.

Each package gets its own virtualenv (they pin conflicting libraries) under
``$PACIFICA_VENV_ROOT`` (default ``~/.cache/pacifica-ingest/venvs``, shared by every checkout on
a machine).  ``ensure_venv`` installs the pinned versions once; later calls return at once.
When pip cannot install a package, ``PacificaUnavailable`` says why and the tests skip.

What it took to run them on Python 3.11 (found by doing it):
- peewee 4 dropped the ``sqliteext://`` scheme UniqueID uses and the ``text_type`` Metadata
  imports: pin peewee 3.17.9.
- pacifica-metadata imports pytz without declaring it; it needs PostgreSQL (psycopg2).
- Every service needs CherryPy's MethodDispatcher in its cpconfig, and a ``dbsync`` first.
- Policy decides on Metadata's users/projects/instruments and their relations, so those
  records must be loaded into Metadata before Policy says yes.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

import processes
from harness import free_port

logger = logging.getLogger(__name__)

PINS = {
    "uniqueid": ["pacifica-uniqueid==0.5.1", "peewee==3.17.9", "cherrypy==18.10.0"],
    "archiveinterface": ["pacifica-archiveinterface==0.4.2", "peewee==3.17.9",
                         "cherrypy==18.10.0"],
    "metadata": ["pacifica-metadata==0.13.0", "peewee==3.17.9", "cherrypy==18.10.0",
                 "pytz==2025.2", "psycopg2==2.9.13"],
    "policy": ["pacifica-policy==0.8.3", "cherrypy==18.10.0"],
    "cli": ["pacifica-cli==0.5.2", "pacifica-uploader==0.3.1"],
}
# psycopg2 compiles against libpq; where that cannot build, the wheel does the same job.
FALLBACK = {"psycopg2==2.9.13": "psycopg2-binary==2.9.13"}
ENTRY_POINT = {"uniqueid": "pacifica-uniqueid", "archiveinterface": "pacifica-archiveinterface",
               "metadata": "pacifica-metadata", "policy": "pacifica-policy", "cli": "pacifica-cli"}

PG = dict(host=os.environ.get("PACIFICA_PG_HOST", "127.0.0.1"),
          port=os.environ.get("PACIFICA_PG_PORT", "5432"),
          user=os.environ.get("PACIFICA_PG_USER", "postgres"))
READY_TIMEOUT = 90

CPCONFIG = """[global]
log.screen: True
engine.autoreload.on: False
checker.on: False
log.access_file: '{folder}/access.log'
log.error_file: '{folder}/error.log'

[/]
request.dispatch: cherrypy.dispatch.MethodDispatcher()
tools.response_headers.on: True
tools.response_headers.headers: [('Content-Type', 'application/json')]
"""


class PacificaUnavailable(RuntimeError):
    """A Pacifica package could not be installed or started here."""


def venv_root() -> Path:
    """Where the virtualenvs live."""
    if os.environ.get("PACIFICA_VENV_ROOT"):
        return Path(os.environ["PACIFICA_VENV_ROOT"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "pacifica-ingest" / "venvs"


def tool(name: str, program: str) -> str:
    """A program inside a package's virtualenv."""
    return str(venv_root() / name / "bin" / program)


def installed_versions(name: str) -> dict:
    """The pinned versions a ready virtualenv holds (from its marker file)."""
    marker = venv_root() / name / ".pins.json"
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}


def ensure_venv(name: str) -> Path:
    """Create the package's virtualenv with the pinned versions, once (safe in parallel)."""
    folder = venv_root() / name
    marker = folder / ".pins.json"
    wanted = {"pins": PINS[name]}

    def ready() -> bool:
        return installed_versions(name).get("pins") == PINS[name] and Path(
            tool(name, ENTRY_POINT[name])).exists()

    if ready():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{name}.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return folder
        logger.info("installing %s into %s (once)", " ".join(PINS[name]), folder)
        _run([sys.executable, "-m", "venv", "--clear", str(folder)], f"making the {name} venv")
        pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q",
               "--disable-pip-version-check"]
        try:
            _run(pip + PINS[name], f"pip install {' '.join(PINS[name])}")
        except PacificaUnavailable:
            if not any(pin in FALLBACK for pin in PINS[name]):
                raise
            _run(pip + [FALLBACK.get(pin, pin) for pin in PINS[name]],
                 f"pip install {name} with binary fallbacks")
        marker.write_text(json.dumps(wanted))
    return folder


def _run(command: list[str], what: str, **options) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False,
                            **options)
    if result.returncode != 0:
        raise PacificaUnavailable(f"{what} failed (exit {result.returncode}): "
                                  f"{(result.stderr or result.stdout)[-2000:]}")
    return result


class Service:
    """One running Pacifica service: its URL, process, folder and log."""

    def __init__(self, name: str, url: str, process: subprocess.Popen, folder: Path):
        self.name, self.url, self.process, self.folder = name, url, process, folder
        self.cleanups: list = []
        self.storage = ""  # the archive interface's storage root

    @property
    def log_path(self) -> Path:
        """The combined stdout/stderr of the process."""
        return self.folder / f"{self.name}.log"

    def log_tail(self, size: int = 4000) -> str:
        """The end of its log, for failure messages."""
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM its process group, SIGKILL if it lingers, then run the cleanups."""
        processes.end(self.process, signal.SIGTERM, grace=15)
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception:  # pylint: disable=broad-except
                logger.warning("cleanup of %s failed", self.name, exc_info=True)
        self.cleanups = []


def _start(name: str, folder: Path, command, env: dict, attempts: int = 3) -> Service:
    """Start a service on a free port and wait for ``GET /``; retry if the port was taken."""
    folder.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, HOME=str(folder), PYTHONUNBUFFERED="1", **env)
    problem = ""
    for _ in range(attempts):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with open(folder / f"{name}.log", "ab") as log:
            process = processes.spawn(command(port), cwd=folder, env=full_env, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        service = Service(name, url, process, folder)
        problem = _wait_ready(service)
        if not problem:
            return service
        service.stop()
    raise PacificaUnavailable(f"{name} did not start: {problem}")


def _wait_ready(service: Service) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            return f"exited with {service.process.returncode}:\n{service.log_tail()}"
        with contextlib.suppress(requests.RequestException):
            if requests.get(service.url + "/", timeout=2).status_code == 200:
                return ""
        time.sleep(0.2)
    return f"no answer on {service.url} after {READY_TIMEOUT}s:\n{service.log_tail()}"


def _configure(folder: Path, prefix: str, config: str) -> dict:
    """Write the service's INI and cpconfig; return the environment that points at them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.ini").write_text(config)
    (folder / "cpconfig.ini").write_text(CPCONFIG.format(folder=folder))
    return {f"{prefix}_CONFIG": str(folder / "config.ini"),
            f"{prefix}_CPCONFIG": str(folder / "cpconfig.ini")}


def start_uniqueid(base: Path) -> Service:
    """pacifica-uniqueid on a SQLite file; ids of each mode count from 1."""
    folder = base / "uniqueid"
    env = _configure(folder, "UNIQUEID", "[database]\n"
                     f"peewee_url = sqliteext:///{folder}/uniqueid.sqlite3\n"
                     "connect_attempts = 3\nconnect_wait = 1\n")
    _run([tool("uniqueid", "pacifica-uniqueid-cmd"), "dbsync"], "uniqueid dbsync",
         env=dict(os.environ, HOME=str(folder), **env), cwd=folder)
    return _start("uniqueid", folder, lambda port: [
        tool("uniqueid", "pacifica-uniqueid"), "-p", str(port), "-a", "127.0.0.1"], env)


def start_archiveinterface(base: Path) -> Service:
    """pacifica-archiveinterface, POSIX backend: ``PUT /<id>`` lands at ``<storage>/<id>``."""
    folder = base / "archiveinterface"
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    env = _configure(folder, "ARCHIVEINTERFACE", "[posix]\nuse_id2filename = false\n")
    service = _start("archiveinterface", folder, lambda port: [
        tool("archiveinterface", "pacifica-archiveinterface"), "-p", str(port), "-a",
        "127.0.0.1", "-t", "posix", "--prefix", str(storage)], env)
    service.storage = str(storage)
    return service


def _postgres(statement: str) -> None:
    """One autocommit statement on PostgreSQL, through the metadata venv's psycopg2."""
    script = ("import sys, psycopg2\n"
              "c = psycopg2.connect(host=sys.argv[1], port=sys.argv[2], user=sys.argv[3], "
              "dbname='postgres')\nc.autocommit = True\nc.cursor().execute(sys.argv[4])\n")
    _run([tool("metadata", "python"), "-c", script, PG["host"], PG["port"], PG["user"],
          statement], f"PostgreSQL: {statement}")


def start_metadata(base: Path) -> Service:
    """pacifica-metadata on a fresh PostgreSQL database (dropped again on stop)."""
    folder = base / "metadata"
    database = f"pacifica_md_{uuid.uuid4().hex[:10]}"
    _postgres(f'CREATE DATABASE "{database}"')
    drop = lambda: _postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # noqa: E731
    try:
        env = _configure(folder, "METADATA", "[database]\n"
                         f"peewee_url = postgresql://{PG['user']}@{PG['host']}:{PG['port']}/"
                         f"{database}\nconnect_attempts = 3\nconnect_wait = 1\n"
                         "[notifications]\ndisabled = True\n")
        _run([tool("metadata", "pacifica-metadata-cmd"), "dbsync"], "metadata dbsync",
             env=dict(os.environ, HOME=str(folder), **env), cwd=folder)
        service = _start("metadata", folder, lambda port: [
            tool("metadata", "pacifica-metadata"), "-p", str(port), "-a", "127.0.0.1"], env)
    except BaseException:
        drop()
        raise
    service.cleanups.append(drop)
    return service


def start_policy(base: Path, metadata_url: str) -> Service:
    """pacifica-policy asking ``metadata_url``; its ingest check is ``POST /ingest``."""
    folder = base / "policy"
    env = _configure(folder, "POLICY", f"[metadata]\nendpoint_url = {metadata_url}\n"
                                       f"status_url = {metadata_url}/groups\n")
    env["METADATA_URL"] = metadata_url
    return _start("policy", folder, lambda port: [
        tool("policy", "pacifica-policy"), "-p", str(port), "-a", "127.0.0.1", "-c",
        env["POLICY_CPCONFIG"]], env)


def load_people(metadata_url: str, submitter: int, project: str, instrument: int) -> None:
    """The records Policy needs to let ``submitter`` upload to ``project`` from ``instrument``.

    The user is a member of the project, the instrument belongs to the project, and the user is
    the instrument's custodian (pacifica-cli's instrument query needs that last one).
    """
    records = [
        ("users", {"_id": submitter, "first_name": "Test", "last_name": f"User {submitter}",
                   "network_id": f"user{submitter}", "email_address": f"u{submitter}@example.com"}),
        ("projects", {"_id": project, "title": f"Project {project}"}),
        ("instruments", {"_id": instrument, "name": f"Instrument {instrument}",
                         "display_name": f"Instrument {instrument}",
                         "name_short": f"i{instrument}", "active": True}),
        ("project_user", {"user": submitter, "project": project,
                          "relationship_name": "member_of"}),
        ("project_instrument", {"project": project, "instrument": instrument,
                                "relationship_name": "upload_required"}),
        ("instrument_user", {"user": submitter, "instrument": instrument,
                             "relationship_name": "custodian"}),
    ]
    for table, record in records:
        reply = requests.put(f"{metadata_url}/{table}", json=[record], timeout=30)
        if reply.status_code != 200:
            raise PacificaUnavailable(f"loading {table} into Metadata: {reply.status_code} "
                                      f"{reply.text[:500]}")


def transaction(metadata_url: str, transaction_id: int) -> dict:
    """What Metadata holds about a transaction: submitter, project, files, key values."""
    reply = requests.get(f"{metadata_url}/transactioninfo/by_id/{transaction_id}", timeout=30)
    reply.raise_for_status()
    return reply.json()


def take_id(uniqueid_url: str, mode: str) -> int:
    """Reserve one id of ``mode`` from UniqueID: everything handed out before is below it."""
    reply = requests.get(f"{uniqueid_url}/getid", params={"range": 1, "mode": mode}, timeout=30)
    reply.raise_for_status()
    return int(reply.json()["startIndex"])


def cli_upload(folder: Path, source_dir: Path, paths: list[str], ingest_url: str,
               uploader_json: list, timeout: float = 180,
               auth: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    """``pacifica-cli upload PATHS`` from ``source_dir`` to our frontend, waiting for the end.

    The CLI is configured by files, not its interactive ``configure``: an endpoint INI and
    the metadata template (every value prefilled, so it queries no policy server).  With
    ``auth`` (user, password) it sends HTTP Basic (its ``basic`` authentication type).
    """
    user, password = auth or ("", "")
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "cli.ini"
    ini.write_text("[globals]\ninteractive = False\n[endpoints]\n"
                   f"upload_url = {ingest_url}/upload\n"
                   f"upload_status_url = {ingest_url}/get_state\n"
                   "upload_policy_url = http://127.0.0.1:9/uploader\n"
                   "upload_validation_url = http://127.0.0.1:9/ingest\n"
                   "download_url = http://127.0.0.1:9\n"
                   "download_policy_url = http://127.0.0.1:9/status/transactions/by_id\n"
                   "ca_bundle = True\n"
                   f"[authentication]\ntype = {'basic' if auth else 'None'}\n"
                   f"username = {user}\npassword = {password}\ncert =\nkey =\n")
    template = folder / "uploader.json"
    template.write_text(json.dumps(uploader_json))
    return subprocess.run([tool("cli", "pacifica-cli"), "--config", str(template),
                           "--config-ini", str(ini), "upload", *paths],
                          cwd=source_dir, env=dict(os.environ, HOME=str(folder)),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def cli_configure(home: Path, ingest_url: str) -> subprocess.CompletedProcess:
    """``pacifica-cli configure`` as a person runs it, answering every endpoint question with
    our service (``<url>/upload``, ``/get_state``, ``/uploader``, ...), the CA bundle and the
    authentication with their defaults; it writes ``<home>/.pacifica_cli/config.ini``."""
    answers = [f"{ingest_url}/upload", f"{ingest_url}/get_state", f"{ingest_url}/uploader",
               f"{ingest_url}/ingest", ingest_url, f"{ingest_url}/status/transactions/by_id",
               "", ""]
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([tool("cli", "pacifica-cli"), "configure"], input="\n".join(answers)
                          + "\n", env=dict(os.environ, HOME=str(home)), cwd=home,
                          capture_output=True, text=True, timeout=120, check=False)


def ordinary_template() -> list:
    """The metadata template of pacifica-cli's own documentation: every value left for the
    Policy's /uploader (or the command line) to fill; the files go under ``Project ID <p>/``."""
    def item(table: str, meta_id: str, source: str, fields: list, display: str, **extra):
        return {"destinationTable": table, "metaID": meta_id, "sourceTable": source,
                "queryFields": fields, "displayFormat": display, "value": "",
                "valueField": "_id", "displayType": "select", "displayTitle": meta_id,
                "queryDependency": {}, **extra}
    people = ["first_name", "last_name", "_id"]
    return [item("Transactions.submitter", "logon", "users", people,
                 "{_id} - {first_name} {last_name}", displayType="logged_on"),
            item("Transactions.project", "project", "projects", ["_id", "title"],
                 "{_id} - {title}", queryDependency={"instrument_id": "instrument"}),
            item("Transactions.instrument", "instrument", "instruments",
                 ["_id", "name_short", "display_name"], "{_id} {name_short} - {display_name}"),
            item("TransactionKeyValue", "user-of-record", "users", people,
                 "{_id} - {first_name} {last_name}", key="User of Record",
                 queryDependency={"project_id": "project"}),
            item("NothingReally", "directory-project", "projects", ["_id"], "Project ID {_id}",
                 displayType="directoryTree", directoryOrder=0,
                 queryDependency={"_id": "project"})]


def cli_upload_ordinary(home: Path, source_dir: Path, args: list[str],
                        timeout: float = 180) -> subprocess.CompletedProcess:
    """``pacifica-cli upload ARGS`` with the configuration ``cli_configure`` wrote and the
    template in its usual place (``~/.pacifica_cli/uploader.json``)."""
    (home / ".pacifica_cli" / "uploader.json").write_text(json.dumps(ordinary_template()))
    return subprocess.run([tool("cli", "pacifica-cli"), "upload", *args], cwd=source_dir,
                          env=dict(os.environ, HOME=str(home)), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def prefilled_template(submitter: int, project: str, instrument: int, tag: str) -> list:
    """pacifica-cli's uploader.json with every value set (strings, as its schema wants).

    ``query_results: []`` must be present, or the CLI fails in ``remove_results``.
    """
    def item(table: str, meta_id: str, value, **extra) -> dict:
        return {"destinationTable": table, "metaID": meta_id, "value": str(value),
                "query_results": [], **extra}
    return [item("Transactions.submitter", "logon", submitter),
            item("Transactions.project", "project", project),
            item("Transactions.instrument", "instrument", instrument),
            item("TransactionKeyValue", "tag", tag, key="Tag")]
