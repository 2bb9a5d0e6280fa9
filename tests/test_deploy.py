"""The images' start commands, run on this host: the frontend under gunicorn (and uWSGI),
the worker as Dockerfile.backend starts it, and the healthchecks."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

import processes
from factories import make_bundle, zero_file_bundle
from harness import Stack
from images import ROOT, healthcheck_command, image_command
from test_e2e_ingest import assert_archived

pytestmark = pytest.mark.e2e

# gunicorn's worker timeout, made short: an upload lasting longer must still get through.
SHORT_WORKER_TIMEOUT = 2


@pytest.fixture(scope="module")
def gunicorn_stack(tmp_path_factory):
    """Frontend and worker started exactly as the two images start them."""
    stack = Stack(str(tmp_path_factory.mktemp("gunicorn")),
                  frontend_command=image_command("Dockerfile.frontend"),
                  worker_command=image_command("Dockerfile.backend"),
                  extra_env={"GUNICORN_TIMEOUT": str(SHORT_WORKER_TIMEOUT),
                             "WEB_CONCURRENCY": "2"})
    try:
        yield stack.start()
    finally:
        stack.stop()


def test_frontend_image_command_runs_gunicorn(gunicorn_stack):
    log = gunicorn_stack.log("frontend")
    assert "Starting gunicorn" in log
    assert "Using worker: pacifica.ingest.web.gunicorn_worker.IngestThreadWorker" in log


def test_upload_through_gunicorn(gunicorn_stack):
    files = {"a/b/foo.txt": b"foo\n", "big.bin": os.urandom(3 * 1024 * 1024 + 7),
             "empty": b""}
    state = gunicorn_stack.ingest(make_bundle(files))
    assert state["state"] == "OK" and state["complete"], state
    assert_archived(gunicorn_stack, state["job_id"], files)


def test_chunked_upload_through_gunicorn(gunicorn_stack):
    body = make_bundle({"chunked.txt": b"no Content-Length" * 1000})
    pieces = (body[offset:offset + 7000] for offset in range(0, len(body), 7000))
    state = gunicorn_stack.wait(gunicorn_stack.upload(pieces)["job_id"])
    assert state["state"] == "OK", state


def test_upload_longer_than_the_worker_timeout_is_not_cut(gunicorn_stack):
    """gthread workers keep beating while a thread streams: a slow client gets through."""
    pieces = 10
    body = zero_file_bundle(pieces * 4096, chunk=4096, pause=SHORT_WORKER_TIMEOUT * 3 / pieces)
    state = gunicorn_stack.wait(gunicorn_stack.upload(body)["job_id"])
    assert state["state"] == "OK", state
    assert "WORKER TIMEOUT" not in gunicorn_stack.log("frontend")


def peak_memory(pid: int) -> int:
    """Peak resident memory (VmHWM) of a process, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_gunicorn_streams_uploads_without_buffering(gunicorn_stack):
    size = 128 * 1024 * 1024
    workers = processes.children(gunicorn_stack.frontend.pid)
    assert workers, "gunicorn has no worker processes"
    before = {pid: peak_memory(pid) for pid in workers}
    state = gunicorn_stack.upload(zero_file_bundle(size))
    growth = max(peak_memory(pid) - before[pid] for pid in workers)
    assert growth < size // 4, f"a gunicorn worker grew by {growth} bytes for a {size}-byte body"
    state = gunicorn_stack.wait(state["job_id"])
    assert state["state"] == "OK", state


def run_healthcheck(dockerfile: str, env: dict) -> subprocess.CompletedProcess:
    """The image's HEALTHCHECK command, on this host."""
    return subprocess.run(healthcheck_command(dockerfile), env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_frontend_healthcheck(gunicorn_stack):
    assert run_healthcheck("Dockerfile.frontend", gunicorn_stack.env).returncode == 0
    down = dict(gunicorn_stack.env, INGEST_BIND=f"127.0.0.1:{gunicorn_stack.port + 1}")
    assert run_healthcheck("Dockerfile.frontend", down).returncode != 0


UWSGI = shutil.which("uwsgi", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                    os.environ.get("PATH", "")]))


@pytest.mark.skipif(UWSGI is None, reason="uwsgi is not installed (pip install uwsgi)")
def test_upload_through_uwsgi(make_stack):
    stack = make_stack(frontend_command=[UWSGI, "--ini", os.path.join(ROOT, "docker",
                                                                       "uwsgi.ini")])
    stack.start()
    files = {"u/w.sgi": os.urandom(2 * 1024 * 1024), "tiny": b"t"}
    state = stack.ingest(make_bundle(files))
    assert state["state"] == "OK", state
    assert_archived(stack, state["job_id"], files)
    state = stack.ingest(zero_file_bundle(32 * 1024 * 1024))
    assert state["state"] == "OK", state
    # uWSGI hands the application no bytes of a chunked body: refused, never stored empty.
    reply = stack.session.post(stack.url + "/upload", data=iter([make_bundle(files)]),
                               timeout=60)
    assert reply.status_code == 400 and "Content-Length" in reply.json()["message"]
    # `docker stop` signals the master alone; with die-on-term it takes its workers along.
    stack.frontend.terminate()
    assert stack.frontend.wait(timeout=60) == 0
