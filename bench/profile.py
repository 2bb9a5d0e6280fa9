"""Profile our frontend and worker with py-spy while one bundle is ingested.

    .venv/bin/python -m bench.profile --bundle many [--database mariadb] [--out bench/results]

Writes collapsed stacks (``<name>.txt``, for flamegraph tools) and prints the hottest
frames of each process.  Needs ``pip install py-spy`` in .venv and root (ptrace).
"""
from __future__ import annotations

import argparse
import collections
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import bundles, ours
from .client import Client

HERE = os.path.dirname(os.path.abspath(__file__))


def top_frames(collapsed: str, count: int = 25) -> list[tuple[int, str]]:
    """The functions with the most samples on the stack (inclusive), from collapsed stacks."""
    inclusive: collections.Counter = collections.Counter()
    total = 0
    with open(collapsed, encoding="utf-8") as handle:
        for line in handle:
            stack, _, samples = line.rstrip("\n").rpartition(" ")
            number = int(samples)
            total += number
            for frame in set(stack.split(";")):
                inclusive[frame] += number
    return [(total, "TOTAL")] + [(n, frame) for frame, n in inclusive.most_common(count)]


def _py_spy() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.path.exists(beside) else shutil.which("py-spy") or "py-spy"


def main() -> None:
    """Start our stack, attach py-spy to both processes, ingest once, print the profile."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", default="many", choices=sorted(bundles.SHAPES))
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "mariadb"),
                        help="our database (mariadb: 127.0.0.1:3306, a fresh schema)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    path = bundles.ensure(args.bundle, os.path.join(HERE, ".cache"))
    workdir = tempfile.mkdtemp(prefix="ingest-profile-")
    stack = ours.start(workdir, database=args.database)
    spies = []
    try:
        Client(stack.url).ingest(bundles.ensure("tiny", os.path.join(HERE, ".cache")))
        os.makedirs(args.out, exist_ok=True)
        for name, pid in ours.pids(stack).items():
            target = os.path.join(args.out, f"profile-{args.bundle}-{name}.txt")
            spies.append((name, target, subprocess.Popen(
                [_py_spy(), "record", "--pid", str(pid), "--subprocesses", "--rate",
                 str(args.rate), "--format", "raw", "--output", target, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        time.sleep(1.0)
        figures = Client(stack.url).ingest(path)
        print(f"POST {figures['post_s']:.2f}s end-to-end {figures['end_to_end_s']:.2f}s "
              f"{figures['state']['state']}")
    finally:
        for _, _, spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    for name, target, _ in spies:
        print(f"\n== {name}: {target}")
        for samples, frame in top_frames(target):
            print(f"{samples:8d}  {frame}")


if __name__ == "__main__":
    main()
