"""Job state writes on each real database: repeating the same values still counts as running."""
from __future__ import annotations

import socket

import pytest

from harness import Database
from pacifica.ingest import db, jobs, schema
from pacifica.ingest.config import DatabaseSettings


def mariadb_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 3306), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", "mariadb"])
def database(request, tmp_path):
    if request.param == "mariadb" and not mariadb_answers():
        pytest.skip("MariaDB does not answer on 127.0.0.1:3306")
    made = Database(request.param, str(tmp_path))
    db.bind(DatabaseSettings(url=made.url))
    schema.sync()
    yield made
    db.database_proxy.close()
    made.drop()


def test_same_progress_twice_in_one_second_is_still_running(database):
    jobs.create(1, "user")
    assert [jobs.advance(1, jobs.Step.OPEN_TAR, 0.0) for _ in range(3)] == [True] * 3
    assert jobs.finish(1)
    assert not jobs.advance(1, jobs.Step.OPEN_TAR, 0.0)  # a finished job is left alone


def test_only_one_claim_of_a_waiting_job_wins(database):
    jobs.create(2, "user")
    jobs.set_fields(2, queue_state=jobs.WAITING)
    assert [jobs.claim_for_queue(2) for _ in range(3)] == [True, False, False]
