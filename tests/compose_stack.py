"""`docker-compose up` for real on this machine: podman behind its Docker-compatible API.

No Docker engine and no image registry here, so (as root):

- Debian's podman, runc, debootstrap and docker-compose are installed when missing;
- a drop-in in /etc/containers/containers.conf.d sets ``runtime = "runc"`` (crun refuses the
  hybrid cgroup layout) and ``default_ulimits`` no higher than ours (raising them needs
  CAP_SYS_RESOURCE);
- a Debian base image comes from debootstrap (cached by a hash of what goes in it), a Python
  base from it (``docker/local/Dockerfile.python``, the host's CA bundle for pip), the project's
  images from the project's Dockerfiles (``--build-arg BASE_IMAGE``), MariaDB, RabbitMQ, Redis
  and PostgreSQL from Debian's packages, the Pacifica services from PyPI (``docker/local``);
- ``podman system service`` serves the API on a socket in a temporary folder and Debian's
  docker-compose 1.29 runs docker-compose.yml (plus docker-compose.<variant>.yml) plus the
  local overrides ``docker/local/compose*.yml`` against it.

Podman runs healthchecks from systemd timers, and there is no systemd here: ``HealthTicker``
runs ``podman healthcheck run`` on the stack's containers instead (same command, same retries).

The tests use ``ComposeStack`` as a context manager (tests/test_compose_stack.py);
``python tests/compose_stack.py images [--pacifica]`` only installs, configures and builds.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import requests

import pacifica_services
import processes
from harness import free_port
from images import ROOT

logger = logging.getLogger(__name__)

LOCAL = os.path.join(ROOT, "docker", "local")
CACHE = os.environ.get("INGEST_COMPOSE_CACHE", "/var/cache/pacifica-ingest-compose")
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("INGEST_COMPOSE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Each is the program and its Debian package; iptables: podman's networks need it.
TOOLS = ("podman", "runc", "debootstrap", "docker-compose", "iptables")
PODMAN_CONF = "/etc/containers/containers.conf.d/50-pacifica-ingest-compose.conf"
# Image names: docker-compose.yml's ${INGEST_IMAGE_PREFIX}-frontend/-backend and the rest.
PREFIX = "pacifica-ingest-test"
# No daemon may be started while an image is built (Debian's postinst scripts try to).
POLICY_RC_D = "#!/bin/sh\nexit 101\n"
# psycopg2 (Metadata's PostgreSQL driver) compiles against libpq.
PACIFICA_BUILD_PACKAGES = {"metadata": "gcc python3-dev libpq-dev"}
HEALTH_TICK = 5.0  # seconds between the stack's healthchecks (the images ask 10-60 s)
COMMAND_TIMEOUT = 1800  # a cold image build, the longest single command


def run(command: list[str], timeout: float = COMMAND_TIMEOUT, check: bool = True,
        **options) -> subprocess.CompletedProcess:
    """Run a command to its end, its output captured; a failure names the command and says
    what it printed."""
    logger.info("run: %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                            check=False, **options)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n"
                           f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def install_tools() -> None:
    """Debian's packages of TOOLS (and podman's network helpers) when any is missing."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [tool for tool in TOOLS if shutil.which(tool, path=path) is None]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing,
             "netavark", "aardvark-dns"], env=env)


def configure_podman() -> None:
    """The two machine-wide settings, in a drop-in of their own (other settings untouched)."""
    nofile, nproc = (_at_most(1024, which) for which in (resource.RLIMIT_NOFILE,
                                                          resource.RLIMIT_NPROC))
    wanted = (f"# Written by tests/compose_stack.py: crun refuses hybrid cgroups here, and\n"
              f"# raising limits above the current ones needs CAP_SYS_RESOURCE.\n"
              f"[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", "
              f"\"nproc={nproc}:{nproc}\"]\n\n[engine]\nruntime = \"runc\"\n")
    try:
        with open(PODMAN_CONF, encoding="utf-8") as handle:
            if handle.read() == wanted:
                return
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(PODMAN_CONF), exist_ok=True)
    with open(PODMAN_CONF, "w", encoding="utf-8") as handle:
        handle.write(wanted)


def _at_most(value: int, which: int) -> int:
    """``value``, or this process's soft limit ``which`` when that is lower."""
    soft = resource.getrlimit(which)[0]
    return value if soft == resource.RLIM_INFINITY else min(value, soft)


def image_exists(name: str) -> bool:
    """Whether podman holds this image."""
    return run(["podman", "image", "exists", name], check=False, timeout=60).returncode == 0


def debian_base() -> str:
    """A minimal Debian image from debootstrap: built once per content hash, its tarball kept
    under CACHE so a wiped podman store re-imports it in seconds."""
    recipe = json.dumps({"suite": DEBIAN_SUITE, "variant": "minbase", "mirror": DEBIAN_MIRROR,
                         "policy-rc.d": POLICY_RC_D}, sort_keys=True)
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    name = f"localhost/{PREFIX}-debian:{DEBIAN_SUITE}-{key}"
    if image_exists(name):
        return name
    tarball = os.path.join(CACHE, f"debian-{DEBIAN_SUITE}-{key}.tar")
    if not os.path.exists(tarball):
        os.makedirs(CACHE, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as work:
            rootfs = os.path.join(work, "rootfs")
            run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, rootfs, DEBIAN_MIRROR])
            policy = os.path.join(rootfs, "usr", "sbin", "policy-rc.d")
            with open(policy, "w", encoding="utf-8") as handle:
                handle.write(POLICY_RC_D)
            os.chmod(policy, 0o755)
            run(["tar", "-C", rootfs, "-cf", tarball + ".part", "."])
            os.replace(tarball + ".part", tarball)
    run(["podman", "import", tarball, name])
    return name


def build(role: str, dockerfile: str, context: str, base: str, **args: str) -> str:
    """``podman build`` of one image on ``base`` (podman's layer cache makes a rebuild quick),
    in Docker's format: the OCI format has no HEALTHCHECK, podman would drop it."""
    name = f"localhost/{PREFIX}-{role}:latest"
    options = [f"--build-arg={key}={value}" for key, value in {"BASE_IMAGE": base, **args}.items()]
    run(["podman", "build", "--format", "docker", *options, "-t", name, "-f", dockerfile,
         context])
    return name


def build_images(pacifica: bool = False) -> dict[str, str]:
    """Every image the stack runs, by role (with the Pacifica services' when asked)."""
    debian = debian_base()
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(HOST_CA_BUNDLE, os.path.join(context, "ca-certificates.crt"))
        python = build("python", os.path.join(LOCAL, "Dockerfile.python"), context, debian)
    images = {"python": python}
    for role in ("frontend", "backend"):
        images[role] = build(role, os.path.join(ROOT, f"Dockerfile.{role}"), ROOT, python)
    for role in ("mariadb", "rabbitmq", "redis") + (("postgres",) if pacifica else ()):
        images[role] = build(role, os.path.join(LOCAL, f"Dockerfile.{role}"), LOCAL, debian)
    if pacifica:
        images.update(build_pacifica_images(python))
    return images


def build_pacifica_images(python: str) -> dict[str, str]:
    """UniqueID, the Archive Interface, Metadata and Policy from the versions (and CherryPy
    configuration) tests/pacifica_services.py runs."""
    with open(os.path.join(ROOT, "docker", "constraints.txt"), encoding="utf-8") as handle:
        pymysql = next(line.strip() for line in handle if line.startswith("PyMySQL=="))
    images = {}
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(os.path.join(LOCAL, "pacifica-entrypoint.sh"), context)
        with open(os.path.join(context, "cpconfig.ini"), "w", encoding="utf-8") as handle:
            handle.write(pacifica_services.CPCONFIG.format(folder="/tmp"))
        for service in ("uniqueid", "archiveinterface", "metadata", "policy"):
            packages = list(pacifica_services.PINS[service])
            if service == "uniqueid":
                packages.append(pymysql)  # its database is MariaDB here
            images[service] = build(service, os.path.join(LOCAL, "Dockerfile.pacifica"),
                                    context, python, SERVICE=service,
                                    PACKAGES=" ".join(packages),
                                    BUILD_PACKAGES=PACIFICA_BUILD_PACKAGES.get(service, ""))
    return images


class PodmanService:
    """``podman system service`` on a socket in a temporary folder, for docker-compose."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="podman-api-")
        self.socket = os.path.join(self.folder, "podman.sock")
        self.log = open(os.path.join(self.folder, "service.log"), "wb")  # pylint: disable=consider-using-with
        self.process = processes.spawn(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("podman system service did not open its socket")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        """DOCKER_HOST for clients."""
        return f"unix://{self.socket}"

    def stop(self) -> None:
        """End the service and remove its folder."""
        processes.end(self.process)
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class HealthTicker(threading.Thread):
    """Runs the healthchecks of a compose project's containers every HEALTH_TICK seconds (what
    podman leaves to systemd timers)."""

    def __init__(self, project: str):
        super().__init__(daemon=True, name=f"health-{project}")
        self.project = project
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(HEALTH_TICK):
            ids = project_objects("ps", self.project, ["--filter", "status=running"])
            checks = [threading.Thread(target=run, daemon=True, args=(
                ["podman", "healthcheck", "run", ident],), kwargs=dict(check=False, timeout=120))
                for ident in ids]
            for check in checks:
                check.start()
            for check in checks:
                check.join()

    def stop(self) -> None:
        """Stop ticking (and wait for the running round)."""
        self.halt.set()
        self.join(timeout=180)


def project_objects(kind: str, project: str, extra: list[str] | None = None) -> list[str]:
    """Names of a compose project's containers (``ps``), volumes or networks."""
    label = f"label=com.docker.compose.project={project}"
    if kind == "ps":
        command = ["podman", "ps", "-a", "--filter", label, "--format", "{{.Names}}"]
    else:
        command = ["podman", kind, "ls", "--filter", label, "--format", "{{.Name}}"]
    output = run(command + list(extra or []), check=False, timeout=60).stdout
    return [line for line in output.split() if line]


TOKEN_USER = "root"  # the user the requests acted as before require_user (Policy sees it)


class ComposeStack:
    """The project's compose files (plus the local override) running on podman."""

    def __init__(self, variant: str = ""):
        """``variant``: "" for docker-compose.yml alone, "pacifica" or "redis" to add
        docker-compose.<variant>.yml (and its local override)."""
        self.project = f"ingest{os.getpid()}{variant}"
        self.port = free_port()
        self.pacifica = variant == "pacifica"
        self.files = ["docker-compose.yml", "docker/local/compose.yml"]
        if variant:
            self.files[1:1] = [f"docker-compose.{variant}.yml"]
            self.files.append(f"docker/local/compose.{variant}.yml")
        self.env = {"INGEST_PORT": str(self.port), "INGEST_IMAGE_PREFIX": PREFIX}
        self.service: PodmanService | None = None
        self.ticker: HealthTicker | None = None
        self.token = ""  # docker-compose.yml requires a user: the tests send this API token

    @property
    def url(self) -> str:
        """The published frontend."""
        return f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 600, check: bool = True
                ) -> subprocess.CompletedProcess:
        """docker-compose against the podman service, with this stack's files and settings."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("INGEST_")}
        env.update(self.env, DOCKER_HOST=self.service.url, COMPOSE_PROJECT_NAME=self.project)
        command = ["docker-compose"]
        for name in self.files:
            command += ["-f", os.path.join(ROOT, name)]
        return run([*command, *args], cwd=ROOT, env=env, timeout=timeout, check=check)

    def start(self) -> "ComposeStack":
        """Install and configure podman, build the images, bring the stack up healthy."""
        install_tools()
        configure_podman()
        build_images(self.pacifica)
        self.service = PodmanService()
        self.ticker = HealthTicker(self.project)
        self.ticker.start()
        try:
            self.up()
            self.token = self.create_token(TOKEN_USER)
        except BaseException:
            self.stop()
            raise
        return self

    def create_token(self, user: str) -> str:
        """An API token made inside the frontend container, as an operator does."""
        made = self.compose("exec", "-T", "frontend", "pacifica-ingest-cmd", "token", "create",
                            "--user", user)
        return made.stdout.strip().splitlines()[-1]

    def up(self, *args: str) -> None:
        """``docker-compose up -d`` (images already built), then wait until all is healthy."""
        self.compose("up", "-d", "--no-build", *args)
        self.wait_healthy()

    def containers(self, service: str | None = None) -> list[str]:
        """Names of the stack's containers (of one service)."""
        extra = ["--filter", f"label=com.docker.compose.service={service}"] if service else []
        return project_objects("ps", self.project, extra)

    def inspect(self, container: str) -> dict:
        """podman inspect of one container."""
        return json.loads(run(["podman", "inspect", container], timeout=60).stdout)[0]

    def health(self, container: str) -> str:
        """healthy / unhealthy / starting, or the container's status when it has no check."""
        state = self.inspect(container)["State"]
        if state.get("Status") != "running":
            return state.get("Status", "unknown")
        return (state.get("Health") or {}).get("Status") or "running"

    def wait_healthy(self, timeout: float = 300) -> None:
        """Every container running and, when it has a healthcheck, healthy; and the frontend
        answering on the published port."""
        deadline = time.monotonic() + timeout
        while True:
            states = {name: self.health(name) for name in self.containers()}
            if states and all(state in ("healthy", "running") for state in states.values()):
                try:
                    if requests.get(self.url + "/", timeout=10).status_code == 200:
                        return
                except requests.RequestException:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"stack not healthy in {timeout}s: {states}\n"
                                     + self.compose("logs", "--tail=40", check=False).stdout)
            time.sleep(2)

    def volume_path(self, volume: str) -> str:
        """Where a named volume of the stack lives on this host."""
        return run(["podman", "volume", "inspect", f"{self.project}_{volume}", "--format",
                    "{{.Mountpoint}}"], timeout=60).stdout.strip()

    @staticmethod
    def logs(container: str) -> str:
        """A container's output."""
        result = run(["podman", "logs", container], timeout=60)
        return result.stdout + result.stderr

    def address(self, service: str) -> str:
        """The address of a service's (first) container on the stack's network."""
        networks = self.inspect(self.containers(service)[0])["NetworkSettings"]["Networks"]
        return next(iter(networks.values()))["IPAddress"]

    def host_pid(self, container: str) -> int:
        """The host's pid of a container's first process."""
        return int(self.inspect(container)["State"]["Pid"])

    def stop(self) -> None:
        """Everything down: containers, networks, volumes (even when compose fails), then the
        health ticker and the podman service."""
        try:
            if self.service is not None:
                self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20",
                             check=False)
        finally:
            if self.ticker is not None:
                self.ticker.stop()
            for name in self.containers():
                run(["podman", "rm", "-f", "-t", "5", name], check=False, timeout=120)
            for kind in ("volume", "network"):
                for name in project_objects(kind, self.project):
                    run(["podman", kind, "rm", "-f", name], check=False, timeout=120)
            if self.service is not None:
                self.service.stop()
            self._end_monitors()

    def _end_monitors(self) -> None:
        """podman's per-container and per-exec monitors (conmon) of this project linger for an
        exit delay after their container is gone: end them with it."""
        marker = f" -n {self.project}_"
        leftovers = [pid for pid in processes.descendants()
                     if marker in processes.command_line(pid)]
        processes.kill_all(leftovers)

    def __enter__(self) -> "ComposeStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """``images [--pacifica]``: install and configure podman, build every image."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if argv[:1] == ["images"]:
        install_tools()
        configure_podman()
        for role, name in build_images(pacifica=argv[1:] == ["--pacifica"]).items():
            logger.info("%s: %s", role, name)
        return 0
    logger.error("usage: compose_stack.py images [--pacifica]")
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
