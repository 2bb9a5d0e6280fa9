"""docker-compose.yml + docker-compose.redis.yml for real: Redis as the broker (see
tests/compose_stack.py), bundles sent from this host before and after a broker restart."""
from __future__ import annotations

import os

import pytest

from compose_stack import ComposeStack
from test_compose_stack import archived, ingest

pytestmark = [pytest.mark.compose, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def stack():
    """The stack on Redis, up once for the module."""
    if os.geteuid() != 0:
        pytest.skip("the compose tests run podman as root (and install it with apt-get)")
    with ComposeStack("redis") as running:
        yield running


def test_bundles_travel_through_redis_across_a_broker_restart(stack):
    files = {"before/restart.bin": os.urandom(100_000)}
    assert archived(stack, ingest(stack, files)) == files
    stack.compose("restart", "broker")
    stack.wait_healthy()
    files = {"after/restart.bin": os.urandom(100_000)}
    assert archived(stack, ingest(stack, files)) == files
