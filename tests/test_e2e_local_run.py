"""The newcomer's path: `pacifica-ingest --dbsync --with-worker` on the embedded defaults alone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from factories import make_bundle
from harness import free_port


def test_one_command_serves_a_working_ingest(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("INGEST_") and key not in (
               "VOLUME_PATH", "PEEWEE_URL", "BROKER_URL", "ARCHIVE_PATH")}
    process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "pacifica.ingest", "--dbsync", "--with-worker", "-p", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/", timeout=2).ok:
                    break
            except requests.RequestException:
                assert time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.2)
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
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
