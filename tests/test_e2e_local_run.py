"""The newcomer's path: `pacifica-ingest --dbsync --with-worker` on the embedded defaults alone."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

import processes
from factories import make_bundle
from harness import free_port


def _start_one_command(folder) -> tuple[subprocess.Popen, str]:
    """`pacifica-ingest --dbsync --with-worker` in ``folder`` on its defaults (home: ``folder``),
    once it answers."""
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("INGEST_") and key not in (
               "VOLUME_PATH", "PEEWEE_URL", "BROKER_URL", "ARCHIVE_PATH")}
    env["INGEST_HOME"] = str(folder)  # the defaults' var/ in the test's folder, not the checkout
    process = processes.spawn(
        [sys.executable, "-m", "pacifica.ingest", "--dbsync", "--with-worker", "-p", str(port)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/", timeout=2).ok:
                return process, url
        except requests.RequestException:
            if time.monotonic() > deadline or process.poll() is not None:
                processes.end(process)
                raise AssertionError("the service did not come up") from None
            time.sleep(0.2)


def _workers_in(folder) -> list[int]:
    """Celery processes of this session that run in ``folder``."""
    found = []
    for pid in processes.descendants():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == str(folder) and "celery" in processes.command_line(pid):
            found.append(pid)
    return found


def test_one_command_serves_a_working_ingest(tmp_path):
    process, url = _start_one_command(tmp_path)
    try:
        files = {"hello/world.txt": b"hello, archive\n"}
        job_id = requests.post(url + "/upload", data=make_bundle(files), timeout=60).json()["job_id"]
        deadline = time.monotonic() + 90
        state = {}
        while time.monotonic() < deadline:
            state = requests.get(url + "/get_state", params={"job_id": job_id}, timeout=10).json()
            if state["complete"]:
                break
            time.sleep(0.2)
        assert state["state"] == "OK" and state["complete"], state
        listing = requests.get(url + "/get_files", params={"job_id": job_id}, timeout=10).json()
        file_id = listing["files"][0]["_id"]
        stored = tmp_path / "var" / "archive" / "0" / "0" / str(file_id)
        assert stored.read_bytes() == files["hello/world.txt"]
        assert (tmp_path / "var" / "ingest.sqlite3").exists()
    finally:
        processes.end(process)


def test_one_command_takes_its_worker_down_when_killed(tmp_path):
    """SIGKILL of the frontend leaves no worker behind (the worker gets a parent-death signal)."""
    process, _ = _start_one_command(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not _workers_in(tmp_path):
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.2)
        process.kill()  # the frontend alone: its worker leads a group of its own
        process.wait(timeout=30)
        deadline = time.monotonic() + 60
        while _workers_in(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _workers_in(tmp_path) == [], "the worker outlived its frontend"
    finally:
        processes.kill_all(_workers_in(tmp_path))
        processes.end(process)
