"""What the Docker images run, read from the Dockerfiles, so tests run the very same commands.

There is no Docker engine here: an image's ENTRYPOINT + CMD run on this host instead, with the
image's ``/app`` (where the Dockerfiles copy the checkout) mapped to this checkout.
"""
from __future__ import annotations

import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_ROOT = "/app/"


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined."""
    with open(os.path.join(ROOT, dockerfile), encoding="utf-8") as handle:
        text = re.sub(r"\\\n", " ", handle.read())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def exec_form(dockerfile: str, keyword: str) -> list[str]:
    """The JSON (exec-form) arguments of the last ENTRYPOINT/CMD/HEALTHCHECK CMD."""
    values = [rest for name, rest in instructions(dockerfile) if name == keyword]
    assert values, f"{dockerfile} has no {keyword}"
    value = values[-1]
    if keyword == "HEALTHCHECK":
        value = value[value.index(" CMD ") + len(" CMD "):]
    return json.loads(value)


def on_this_host(argument: str) -> str:
    """An image path under /app/ turned into the same file of this checkout."""
    if argument.startswith(IMAGE_ROOT):
        return os.path.join(ROOT, argument[len(IMAGE_ROOT):])
    return argument


def image_command(dockerfile: str) -> list[str]:
    """ENTRYPOINT + CMD of an image, runnable on this host."""
    command = exec_form(dockerfile, "ENTRYPOINT") + exec_form(dockerfile, "CMD")
    return [on_this_host(argument) for argument in command]


def healthcheck_command(dockerfile: str) -> list[str]:
    """The image's HEALTHCHECK command, runnable on this host."""
    return [on_this_host(argument) for argument in exec_form(dockerfile, "HEALTHCHECK")]
