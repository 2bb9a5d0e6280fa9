"""docker-compose.yml for real: the images built, the whole stack up in containers (podman, see
tests/compose_stack.py), bundles sent to the published frontend port from this host."""
from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from compose_stack import ComposeStack, run
from factories import make_bundle, zero_file_bundle
from pacifica.ingest.archive.local import LocalArchive

# The first test also waits for the module's stack: a cold build of every image.
pytestmark = [pytest.mark.compose, pytest.mark.timeout(3600)]

INGEST_UID = 10001  # the images' USER
JOB_TIMEOUT = 300


@pytest.fixture(scope="module")
def stack():
    """docker-compose.yml + the local override, up and healthy once for the whole module."""
    if os.geteuid() != 0:
        pytest.skip("the compose tests run podman as root (and install it with apt-get)")
    with ComposeStack() as running:
        yield running


def send(stack, method: str, path: str, headers: dict | None = None,
         **options) -> requests.Response:
    """Every request the compose tests make to a stack's frontend: the one place for the
    credentials (an ``Authorization: Bearer`` token once the stack requires a user)."""
    return requests.request(method, stack.url + path, timeout=JOB_TIMEOUT, **options,
                            headers={"Authorization": f"Bearer {stack.token}", **(headers or {})})


def upload(stack, body) -> int:
    """POST a bundle; its job id."""
    reply = send(stack, "POST", "/upload", data=body,
                 headers={"Content-Type": "application/octet-stream"})
    assert reply.status_code == 200, reply.text
    return reply.json()["job_id"]


def state(stack, job_id: int) -> dict:
    """The job state object."""
    reply = send(stack, "GET", "/get_state", params={"job_id": job_id})
    assert reply.status_code == 200, reply.text
    return reply.json()


def wait(stack, job_id: int, timeout: float = JOB_TIMEOUT) -> dict:
    """Poll get_state until the job is done (complete, or FAILED)."""
    deadline = time.monotonic() + timeout
    current = state(stack, job_id)
    while not (current["complete"] or current["state"] == "FAILED"):
        assert time.monotonic() < deadline, f"job {job_id} not done in {timeout}s: {current}" + (
            "".join(f"\n--- {name}:\n{stack.logs(name)[-3000:]}"
                    for name in stack.containers("backend")))
        time.sleep(0.5)
        current = state(stack, job_id)
    return current


def ingest(stack, files: dict[str, bytes]) -> int:
    """Send a bundle of these files, assert it completed OK; its job id."""
    job_id = upload(stack, make_bundle(files))
    done = wait(stack, job_id)
    assert done["state"] == "OK" and done["complete"], done
    return job_id


def archived(stack, job_id: int) -> dict[str, bytes]:
    """What a job stored, read back from the stack's archive volume on this host."""
    reply = send(stack, "GET", "/get_files", params={"job_id": job_id})
    assert reply.status_code == 200, reply.text
    archive = LocalArchive(stack.volume_path("archive"), fsync=False)
    found = {}
    for entry in reply.json()["files"]:
        path = f"{entry['subdir']}/{entry['name']}" if entry["subdir"] else entry["name"]
        with open(archive.path_for(entry["_id"]), "rb") as handle:
            found[path] = handle.read()
    return found


def admin(stack, *args: str):
    """pacifica-ingest-cmd in the frontend container; its JSON answer."""
    frontend = stack.containers("frontend")[0]
    return json.loads(run(["podman", "exec", frontend, "pacifica-ingest-cmd", *args],
                          timeout=120).stdout)


def uids(container: str) -> set[int]:
    """The real and effective uids of every process in a container."""
    found = set()
    for pid in run(["podman", "top", container, "hpid"], timeout=60).stdout.split()[1:]:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            line = next(line for line in handle if line.startswith("Uid:"))
        found.update(int(uid) for uid in line.split()[1:3])
    return found


def test_bundle_travels_through_the_stack_byte_identical(stack):
    files = {"a/b/one.txt": b"one\n" * 1000, "c/two.bin": os.urandom(3 << 20),
             "empty.bin": b""}
    job_id = ingest(stack, files)
    assert archived(stack, job_id) == files


def test_services_run_as_the_non_root_user(stack):
    for service in ("frontend", "backend"):
        for container in stack.containers(service):
            assert uids(container) == {INGEST_UID}, container


def test_scaled_workers_complete_each_of_30_concurrent_bundles_once(stack):
    stack.up("--scale", "backend=3")
    assert len(stack.containers("backend")) == 3
    bundles = [{f"n{number}/file.txt": os.urandom(20_000 + number)} for number in range(30)]
    with ThreadPoolExecutor(max_workers=30) as pool:
        job_ids = list(pool.map(lambda files: ingest(stack, files), bundles))
    assert len(set(job_ids)) == 30
    for job_id, files in zip(job_ids, bundles):
        assert archived(stack, job_id) == files
    attempts = {job["job_id"]: job["attempts"] for job in admin(stack, "jobs", "--json")}
    assert all(attempts[job_id] == 1 for job_id in job_ids), attempts
    took = [container for container in stack.containers("backend")
            if " started attempt 1" in stack.logs(container)]
    assert len(took) > 1, "one worker took every job"


def test_job_completes_across_a_backend_restart(stack):
    size = 3 << 30  # long enough to be cut: a worker stores ~150 MB/s here
    job_id = upload(stack, zero_file_bundle(size))
    deadline = time.monotonic() + JOB_TIMEOUT
    current = state(stack, job_id)
    while current["task"] != "ingest files":
        assert not current["complete"] and current["state"] == "OK", current
        assert time.monotonic() < deadline, current
        time.sleep(0.2)
        current = state(stack, job_id)
    # SIGKILL at once: the running ingest is cut (a warm stop could let it finish first).
    stack.compose("restart", "--timeout", "0", "backend")
    done = wait(stack, job_id)
    assert done["state"] == "OK" and done["complete"], done
    (job,) = [job for job in admin(stack, "jobs", "--json") if job["job_id"] == job_id]
    assert job["attempts"] == 2, "the restart did not cut the job"
    reply = send(stack, "GET", "/get_files", params={"job_id": job_id})
    (entry,) = reply.json()["files"]
    archive = LocalArchive(stack.volume_path("archive"), fsync=False)
    assert os.path.getsize(archive.path_for(entry["_id"])) == size
    stack.wait_healthy()


def test_stack_recovers_after_database_and_broker_restart(stack):
    stack.compose("restart", "db", "broker")
    stack.wait_healthy()
    files = {"after/restart.txt": os.urandom(50_000)}
    assert archived(stack, ingest(stack, files)) == files


def test_backend_turns_unhealthy_when_its_worker_stops(stack):
    container = stack.containers("backend")[0]
    pid = stack.host_pid(container)
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 300
        while stack.health(container) != "unhealthy":
            assert time.monotonic() < deadline, stack.inspect(container)["State"]
            time.sleep(2)
    finally:
        os.kill(pid, signal.SIGCONT)
    stack.wait_healthy()
