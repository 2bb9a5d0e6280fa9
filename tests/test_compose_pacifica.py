"""docker-compose.yml + docker-compose.pacifica.yml for real: our images beside UniqueID, the
Archive Interface, Policy and Metadata (on PostgreSQL), each built from its PyPI package (see
tests/compose_stack.py), a bundle sent from this host through all of them."""
from __future__ import annotations

import os
import time

import pytest
import requests

import pacifica_services as pac
from compose_stack import ComposeStack
from factories import TRANSACTION, file_entry, make_bundle
from test_compose_stack import upload, wait

pytestmark = [pytest.mark.compose, pytest.mark.timeout(3600)]

SUBMITTER, PROJECT, INSTRUMENT = 10, "1234a", 54  # factories.TRANSACTION's
PORTS = {"uniqueid": 8051, "archiveinterface": 8080, "metadata": 8121, "policy": 8181}


@pytest.fixture(scope="module")
def stack():
    """The full Pacifica set, up once for the module."""
    if os.geteuid() != 0:
        pytest.skip("the compose tests run podman as root (and install it with apt-get)")
    with ComposeStack("pacifica") as running:
        yield running


@pytest.fixture(scope="module")
def services(stack) -> dict[str, str]:
    """The Pacifica services' URLs on the stack's network, each answering; Metadata loaded
    with the people Policy asks about."""
    urls = {name: f"http://{stack.address(name)}:{port}" for name, port in PORTS.items()}
    for name, url in urls.items():
        answers(url, name)
    pac.load_people(urls["metadata"], SUBMITTER, PROJECT, INSTRUMENT)
    return urls


def answers(url: str, name: str, timeout: float = 180) -> None:
    """Wait until a Pacifica service answers ``GET /`` (they have no healthcheck)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url + "/", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{name} does not answer on {url}"
        time.sleep(1)


def test_bundle_travels_through_the_pacifica_services(stack, services):
    files = {"a/b/foo.txt": b"foo\n", "c/bar.bin": os.urandom(300_000)}
    done = wait(stack, upload(stack, make_bundle(files)))
    assert done["state"] == "OK" and done["complete"], done
    assert done["task"] == "ingest metadata"

    record = pac.transaction(services["metadata"], done["job_id"])
    assert (record["submitter"], record["project"], record["instrument"]) == (
        SUBMITTER, PROJECT, INSTRUMENT)
    recorded = {f"{entry['subdir']}/{entry['name']}": entry
                for entry in record["files"].values()}
    assert set(recorded) == set(files)
    storage = stack.volume_path("archive")  # the Archive Interface's /srv
    for path, data in files.items():
        with open(os.path.join(storage, str(recorded[path]["_id"])), "rb") as handle:
            assert handle.read() == data, path


def test_policy_refusal_reaches_the_client(stack, services):  # pylint: disable=unused-argument
    metadata = [dict(entry) for entry in TRANSACTION] + [file_entry("x.txt", b"x")]
    metadata[2]["value"] = INSTRUMENT + 1  # an instrument the project does not have
    done = wait(stack, upload(stack, make_bundle({"x.txt": b"x"}, metadata=metadata)))
    assert done["state"] == "FAILED" and done["task"] == "Policy Validation", done
    assert "Invalid values for instrument" in done["exception"], done
