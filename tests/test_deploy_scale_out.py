"""Scale-out on a real distributed engine: one frontend (gunicorn) and three workers, each
started as the images start them, on MariaDB with RabbitMQ or Redis; 30 bundles at once."""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pymysql
import pytest

from factories import make_bundle
from harness import MARIADB, Stack, chosen_broker
from images import healthcheck_command, image_command

pytestmark = pytest.mark.e2e

BUNDLES = 30
WORKERS = 3
BROKER_PORTS = {"rabbitmq": 5672, "redis": 6379}


def answers(port: int) -> bool:
    """Something listens on 127.0.0.1:port."""
    try:
        subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], check=True,
                       capture_output=True, timeout=5)
        return True
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False


def bundle_files(number: int) -> dict[str, bytes]:
    """Distinct files per bundle, some of them the same bytes as in other bundles."""
    return {
        f"run{number}/raw.bin": os.urandom(20_000 + 997 * number),
        f"run{number}/notes.txt": f"bundle {number}\n".encode(),
        "shared/calibration.dat": b"same bytes in every bundle" * 100,
    }


@pytest.fixture(params=sorted(BROKER_PORTS))
def scaled_stack(request, tmp_path):
    """Gunicorn frontend + 3 workers (the images' commands) on MariaDB and the broker."""
    broker = request.param
    if chosen_broker() not in ("filesystem", broker):
        pytest.skip(f"this pass is for the {chosen_broker()} broker")
    for port in (MARIADB["port"], BROKER_PORTS[broker]):
        if not answers(port):
            pytest.skip(f"nothing answers on 127.0.0.1:{port}")
    stack = Stack(str(tmp_path / broker), database="mariadb", broker=broker, workers=WORKERS,
                  frontend_command=image_command("Dockerfile.frontend"),
                  worker_command=image_command("Dockerfile.backend"),
                  # one client sends all 30 at once: lift the per-user upload cap for it
                  extra_env={"INGEST_INGEST_MAX_UPLOADS": "32",
                             "INGEST_INGEST_MAX_UPLOADS_PER_USER": "32"})
    try:
        yield stack.start()
    finally:
        stack.stop()


def job_rows(stack: Stack) -> dict[int, dict]:
    """Every job row, read straight from MariaDB."""
    connection = pymysql.connect(database=stack.database.name,
                                 cursorclass=pymysql.cursors.DictCursor, **MARIADB)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, attempts, owner, state, complete FROM ingest_jobs")
            return {row["id"]: row for row in cursor.fetchall()}
    finally:
        connection.close()


def worker_of(pool_process: int) -> int:
    """The Celery worker (main process) a pool process belongs to."""
    with open(f"/proc/{pool_process}/stat", encoding="ascii", errors="replace") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


def test_thirty_concurrent_bundles_on_three_workers(scaled_stack):
    stack = scaled_stack
    bundles = {number: bundle_files(number) for number in range(BUNDLES)}
    with ThreadPoolExecutor(max_workers=BUNDLES) as pool:
        answers_ = list(pool.map(lambda n: stack.upload(make_bundle(bundles[n])), bundles))
    job_of = {number: answer["job_id"] for number, answer in zip(bundles, answers_)}
    assert len(set(job_of.values())) == BUNDLES, "a job id was given twice"

    for job_id in job_of.values():
        state = stack.wait(job_id, timeout=240)
        assert state["state"] == "OK" and state["complete"], state

    # Each job ran once: one attempt, and its files recorded once.
    rows = job_rows(stack)
    assert {job_id: rows[job_id]["attempts"] for job_id in job_of.values()} == {
        job_id: 1 for job_id in job_of.values()}
    file_ids = []
    for number, job_id in job_of.items():
        listing = stack.files(job_id)["files"]
        assert sorted(f"{entry['subdir']}/{entry['name']}" for entry in listing) == sorted(
            bundles[number]), job_id
        for entry in listing:
            data = bundles[number][f"{entry['subdir']}/{entry['name']}"]
            assert entry["hashsum"] == hashlib.sha1(data).hexdigest()
            with open(stack.archive_path(entry["_id"]), "rb") as handle:
                assert handle.read() == data, (job_id, entry)
            file_ids.append(entry["_id"])
    assert len(file_ids) == len(set(file_ids)) == sum(len(files) for files in bundles.values())

    # The archive holds each file exactly once: nothing else, no leftover partial copies.
    assert stack.archive_files() == sorted(stack.archive_path(i) for i in file_ids)

    # The work was spread: jobs ran in more than one of the worker processes.
    workers = {worker.pid for worker in stack.workers}
    used = {worker_of(int(rows[job_id]["owner"].rsplit(":", 1)[1]))
            for job_id in job_of.values()}
    assert used <= workers and len(used) >= 2, (used, workers)

    # And a worker answers the image's healthcheck over this broker.
    with open(os.path.join(stack.base, "worker0.log"), encoding="utf-8", errors="replace") as log:
        name = re.search(r"(\S+@\S+) ready\.", log.read()).group(1)  # the whole log, not its tail
    check = subprocess.run(healthcheck_command("Dockerfile.backend"), capture_output=True,
                           text=True, timeout=60, check=False,
                           env=dict(stack.env, INGEST_WORKER_NAME=name))
    assert check.returncode == 0, check.stdout + check.stderr
