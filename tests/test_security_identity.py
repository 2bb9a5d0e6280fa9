"""Identity and ownership against real frontends and workers: who a request comes from (proxy
header from trusted peers only, API tokens, require_user) and who may see a job or an upload.

127.0.0.2 plays the untrusted client: the frontend listens on 127.0.0.1 and Linux loopback
carries the whole 127/8, so the peer address is 127.0.0.2, outside the default
``[auth] trusted_proxies`` (127.0.0.1, ::1).
"""
from __future__ import annotations

import base64
import json
import sqlite3
import time

import pytest
import requests
from requests.adapters import HTTPAdapter

import pacifica_services as pac
from factories import make_bundle
from harness import Stack
from images import image_command
from test_deploy_files import BASE, needs_compose, resolved
from pacifica.ingest import schema

pytestmark = pytest.mark.e2e

HEADER = "X-Http-Authed-User"
TUS = {"Tus-Resumable": "1.0.0"}
ADMIN = "boss"


class SourceAddress(HTTPAdapter):
    """Connect from a chosen local address (the peer the server sees)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


class Client:
    """Requests from one peer address with fixed headers (one user's point of view)."""

    def __init__(self, stack: Stack, peer: str = "127.0.0.1", **headers):
        self.url = stack.url
        self.session = requests.Session()
        self.session.mount("http://", SourceAddress(peer))
        self.session.headers.update(headers)

    def call(self, method: str, path: str, **options) -> requests.Response:
        """Any request; the answer as it comes."""
        return self.session.request(method, self.url + path, timeout=60, **options)

    def upload(self, body: bytes | None = None) -> requests.Response:
        """POST a bundle."""
        return self.call("POST", "/upload", data=body or make_bundle({"a.txt": b"a"}),
                         headers={"Content-Type": "application/octet-stream"})

    def state(self, job_id: int) -> requests.Response:
        """GET /get_state (answered by the fast WSGI path)."""
        return self.call("GET", "/get_state", params={"job_id": job_id})

    def files(self, job_id: int) -> requests.Response:
        """GET /get_files (answered by CherryPy)."""
        return self.call("GET", "/get_files", params={"job_id": job_id})

    def tus_create(self, length: int = 100) -> requests.Response:
        """POST /files/: a new resumable upload."""
        return self.call("POST", "/files/", headers={**TUS, "Upload-Length": str(length)})


def as_user(stack: Stack, user: str, peer: str = "127.0.0.1") -> Client:
    """A client the trusted proxy (or a peer claiming to be one) names ``user``."""
    return Client(stack, peer, **{HEADER: user})


def bearer(stack: Stack, token: str, peer: str = "127.0.0.1") -> Client:
    """A client sending an API token."""
    return Client(stack, peer, Authorization=f"Bearer {token}")


def basic(stack: Stack, user: str, token: str) -> Client:
    """A client sending HTTP Basic with the token as password."""
    pair = base64.b64encode(f"{user}:{token}".encode()).decode()
    return Client(stack, Authorization=f"Basic {pair}")


def assert_error(reply: requests.Response, status: int, words: str) -> dict:
    """A JSON error of this status whose message says ``words``."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["Content-Type"].startswith("application/json"), reply.headers
    body = reply.json()
    assert body["status"].startswith(str(status)) and words in body["message"], body
    return body


def assert_unknown_job(reply: requests.Response, job_id: int) -> None:
    """The same 404 as for a job id that was never given out."""
    body = assert_error(reply, 404, f"job ID {job_id} does not exist.")
    assert body["message"] == f"job ID {job_id} does not exist."


def new_token(stack: Stack, user: str) -> str:
    """``pacifica-ingest-cmd token create --user USER``: the printed token."""
    return stack.admin("token", "create", "--user", user).stdout.strip()


def wait_as(client: Client, job_id: int, timeout: float = 120) -> dict:
    """Poll get_state as this client until the job is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.state(job_id)
        assert reply.status_code == 200, reply.text
        if reply.json()["complete"]:
            return reply.json()
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {reply.text}")


@pytest.fixture(scope="module")
def open_stack(tmp_path_factory):
    """Default user allowed (require_user false); ``boss`` is an admin, and so is ``root``
    (the default user's name) when a proxy or a token vouches for it."""
    stack = Stack(str(tmp_path_factory.mktemp("identity-open")),
                  extra_env={"INGEST_AUTH_ADMINS": f"{ADMIN}, root"})
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def closed_stack(tmp_path_factory):
    """require_user: every request must say who it comes from."""
    stack = Stack(str(tmp_path_factory.mktemp("identity-closed")),
                  extra_env={"INGEST_AUTH_REQUIRE_USER": "true", "INGEST_AUTH_ADMINS": ADMIN})
    try:
        yield stack.start()
    finally:
        stack.stop()


def test_proxy_header_is_believed_from_a_trusted_peer(open_stack):
    alice = as_user(open_stack, "alice")
    reply = alice.upload()
    assert reply.status_code == 200, reply.text
    state = wait_as(alice, reply.json()["job_id"])
    assert state["state"] == "OK", state
    assert alice.files(state["job_id"]).json()["transaction"]["user"] == "alice"


def test_proxy_header_from_an_untrusted_peer_is_refused(open_stack):
    mallory = as_user(open_stack, "alice", peer="127.0.0.2")
    job_id = as_user(open_stack, "alice").upload().json()["job_id"]
    for reply in (mallory.upload(), mallory.state(job_id), mallory.files(job_id),
                  mallory.tus_create()):
        assert_error(reply, 400, "trusted_proxies")
    # The same peer without the header is an ordinary anonymous client.
    anonymous = Client(open_stack, peer="127.0.0.2")
    assert anonymous.upload().status_code == 200
    assert_unknown_job(anonymous.state(job_id), job_id)


@pytest.mark.parametrize("headers", [{"X_Http_Authed_User": "alice"},
                                     {HEADER: "mallory", "X_Http_Authed_User": "alice"},
                                     {"X_Http_Authed_User": "alice", HEADER: "mallory"}])
def test_underscore_spelling_of_the_header_is_refused(open_stack, headers):
    client = Client(open_stack, **headers)
    job_id = as_user(open_stack, "alice").upload().json()["job_id"]
    for reply in (client.upload(), client.state(job_id), client.files(job_id),
                  client.tus_create()):
        assert_error(reply, 400, "X_Http_Authed_User")


def test_other_underscored_headers_are_ignored(open_stack):
    reply = Client(open_stack, X_Something_Else="1").upload()
    assert reply.status_code == 200, reply.text


def test_jobs_are_visible_to_their_owner_and_admins_only(open_stack):
    alice = as_user(open_stack, "alice")
    job_id = alice.upload().json()["job_id"]
    wait_as(alice, job_id)
    never = job_id + 1_000_000
    for stranger in (as_user(open_stack, "bob"), Client(open_stack)):  # default user too
        assert_unknown_job(stranger.state(job_id), job_id)
        assert_unknown_job(stranger.files(job_id), job_id)
        assert_unknown_job(stranger.state(never), never)
    for allowed in (alice, as_user(open_stack, ADMIN)):
        assert allowed.state(job_id).json()["job_id"] == job_id
        assert allowed.files(job_id).json()["transaction"]["user"] == "alice"


def test_default_user_is_not_an_admin(open_stack):
    root = Client(open_stack)
    job_id = root.upload().json()["job_id"]
    assert root.state(job_id).status_code == 200  # its own jobs, as before
    assert_unknown_job(as_user(open_stack, "bob").state(job_id), job_id)
    bob_job = as_user(open_stack, "bob").upload().json()["job_id"]
    assert_unknown_job(root.state(bob_job), bob_job)  # anonymous, though "root" is listed
    assert as_user(open_stack, "root").state(bob_job).status_code == 200  # vouched for


def test_tus_uploads_answer_their_owner_and_admins_only(open_stack):
    alice = as_user(open_stack, "alice")
    created = alice.tus_create(10)
    assert created.status_code == 201, created.text
    path = "/files/" + created.headers["Location"].rsplit("/", 1)[1]
    unknown = "/files/" + "0" * 32
    patch = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    for stranger in (as_user(open_stack, "bob"), Client(open_stack)):
        for target in (path, unknown):
            head = stranger.call("HEAD", target, headers=TUS)
            assert head.status_code == 404, head.status_code
            assert_error(stranger.call("PATCH", target, data=b"12345", headers=patch), 404,
                         "does not exist")
            assert_error(stranger.call("DELETE", target, headers=TUS), 404, "does not exist")
    boss = as_user(open_stack, ADMIN)
    assert boss.call("HEAD", path, headers=TUS).headers["Upload-Offset"] == "0"
    assert alice.call("PATCH", path, data=b"12345", headers=patch).status_code == 204
    assert boss.call("HEAD", path, headers=TUS).headers["Upload-Offset"] == "5"
    assert alice.call("DELETE", path, headers=TUS).status_code == 204


def test_token_commands_create_list_revoke(open_stack):
    token = new_token(open_stack, "carol")
    other = new_token(open_stack, "carol")
    assert token.startswith("pit_") and len(token) > 40 and token != other
    listed = json.loads(open_stack.admin("token", "list", "--user", "carol").stdout)
    assert [row["user"] for row in listed] == ["carol", "carol"]
    assert token[:12] in {row["prefix"] for row in listed}
    everything = open_stack.admin("token", "list").stdout
    assert token not in everything and other not in everything
    revoked = json.loads(open_stack.admin("token", "revoke", token[:12]).stdout)
    assert revoked["user"] == "carol" and revoked["revoked"]
    by_id = [row for row in listed if row["prefix"] == other[:12]][0]["id"]
    assert json.loads(open_stack.admin("token", "revoke", str(by_id)).stdout)["revoked"]
    missing = open_stack.admin("token", "revoke", "999999", check=False)
    assert missing.returncode == 1 and "no token" in missing.stderr
    bad_user = open_stack.admin("token", "create", "--user", "a:b", check=False)
    assert bad_user.returncode == 1 and "':'" in bad_user.stderr


def test_bearer_and_basic_tokens_identify_their_user_from_any_peer(open_stack):
    token = new_token(open_stack, "dave")
    dave = bearer(open_stack, token, peer="127.0.0.2")
    reply = dave.upload()
    assert reply.status_code == 200, reply.text
    job_id = reply.json()["job_id"]
    assert wait_as(dave, job_id)["state"] == "OK"
    assert dave.files(job_id).json()["transaction"]["user"] == "dave"
    assert basic(open_stack, "dave", token).state(job_id).status_code == 200
    assert_unknown_job(bearer(open_stack, new_token(open_stack, "erin")).state(job_id), job_id)
    # A wrong token, a name that is not the token's, or a revoked token: 401, never the default.
    for client in (bearer(open_stack, token + "x"), bearer(open_stack, "not-a-token"),
                   basic(open_stack, "erin", token),
                   Client(open_stack, Authorization="Basic !!!"),
                   Client(open_stack, Authorization="Digest username=dave")):
        for reply in (client.state(job_id), client.files(job_id), client.upload()):
            assert_error(reply, 401, "")
            assert "Bearer" in reply.headers["WWW-Authenticate"]
    open_stack.admin("token", "revoke", token[:12])
    assert_error(dave.state(job_id), 401, "unknown or revoked")
    assert_error(dave.upload(), 401, "unknown or revoked")


def test_require_user_refuses_anonymous_requests(closed_stack):
    anonymous = Client(closed_stack)
    job_id = as_user(closed_stack, "alice").upload().json()["job_id"]
    replies = (anonymous.upload(), anonymous.state(job_id), anonymous.files(job_id),
               anonymous.tus_create(), anonymous.call("POST", "/move", json=[]))
    for reply in replies:
        assert_error(reply, 401, "Authorization: Bearer")
        challenge = reply.headers["WWW-Authenticate"]
        assert 'Basic realm="pacifica-ingest"' in challenge and "Bearer" in challenge
    assert anonymous.call("GET", "/").status_code == 200
    assert anonymous.call("OPTIONS", "/files/").status_code == 204
    token = new_token(closed_stack, "frank")
    frank = bearer(closed_stack, token, peer="127.0.0.2")
    reply = frank.upload()
    assert reply.status_code == 200, reply.text
    assert frank.state(reply.json()["job_id"]).status_code == 200


@pytest.mark.pacifica
@pytest.mark.timeout(900)
def test_pacifica_cli_basic_auth_with_a_token(closed_stack, tmp_path):
    try:
        pac.ensure_venv("cli")
    except pac.PacificaUnavailable as err:
        pytest.skip(f"pacifica-cli could not be installed here: {err}")
    token = new_token(closed_stack, "grace")
    source = tmp_path / "src"
    (source / "a").mkdir(parents=True)
    (source / "a" / "x.txt").write_bytes(b"from pacifica-cli with a token\n")
    run = pac.cli_upload(tmp_path / "cli", source, ["a"], closed_stack.url,
                         pac.prefilled_template(10, "1234a", 54, "token"),
                         auth=("grace", token))
    assert run.returncode == 0, run.stdout + run.stderr
    final = json.loads(run.stdout[run.stdout.index("{"):])
    assert final["state"] == "OK" and final["complete"], final
    files = bearer(closed_stack, token).files(final["job_id"]).json()
    assert files["transaction"]["user"] == "grace"
    wrong = pac.cli_upload(tmp_path / "cli-wrong", source, ["a"], closed_stack.url,
                           pac.prefilled_template(10, "1234a", 54, "token"),
                           auth=("grace", token + "x"), timeout=120)
    assert wrong.returncode != 0


def test_dbsync_upgrades_a_1_0_database(make_stack):
    stack = make_stack(database="sqlite")
    stack.admin("dbsync")
    path = stack.database.url.split(":///", 1)[1]
    with sqlite3.connect(path) as connection:  # what a 1.0 database looks like
        connection.execute("DROP TABLE ingest_api_tokens")
        connection.execute("UPDATE ingest_schema_version SET value = 0 WHERE part = 'minor'")
    assert stack.admin("dbchk", "--equal", check=False).returncode == 1
    stack.admin("dbsync")
    assert stack.admin("dbchk", "--equal").returncode == 0
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT value FROM ingest_schema_version WHERE part = 'minor'"
                                  ).fetchone()[0] == schema.SCHEMA_MINOR
    assert new_token(stack, "henry").startswith("pit_")


def test_identity_rules_under_gunicorn_as_the_image_runs_it(make_stack):
    stack = make_stack(frontend_command=image_command("Dockerfile.frontend"),
                       extra_env={"WEB_CONCURRENCY": "1", "INGEST_AUTH_REQUIRE_USER": "true"})
    stack.admin("dbsync")
    stack.start_frontend()
    alice = as_user(stack, "alice")
    job_id = alice.upload().json()["job_id"]
    assert alice.state(job_id).status_code == 200
    assert_unknown_job(as_user(stack, "bob").state(job_id), job_id)
    assert_unknown_job(as_user(stack, "bob").files(job_id), job_id)
    assert_error(as_user(stack, "alice", peer="127.0.0.2").state(job_id), 400, "trusted_proxies")
    for headers in ({"X_Http_Authed_User": "alice"},
                    {HEADER: "mallory", "X_Http_Authed_User": "alice"}):
        assert_error(Client(stack, **headers).state(job_id), 400, "X_HTTP_AUTHED_USER")
        assert_error(Client(stack, **headers).upload(), 400, "X_HTTP_AUTHED_USER")
    reply = Client(stack).upload()
    assert_error(reply, 401, "Authorization")
    assert "Bearer" in reply.headers["WWW-Authenticate"]
    token = new_token(stack, "alice")
    assert bearer(stack, token, peer="127.0.0.2").state(job_id).status_code == 200


@needs_compose
def test_compose_frontend_requires_a_user():
    env = resolved(BASE)["services"]["frontend"]["environment"]
    assert env["INGEST_AUTH_REQUIRE_USER"] == "true"


def test_a_bad_trusted_proxy_stops_the_process_with_a_clear_message(make_stack):
    stack = make_stack()
    stack.env["INGEST_AUTH_TRUSTED_PROXIES"] = "127.0.0.1, proxy.example"
    result = stack.admin("dbsync", check=False)
    assert result.returncode == 2
    assert "'proxy.example' is not an address or a CIDR" in result.stderr
    assert "Traceback" not in result.stderr
