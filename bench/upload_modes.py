"""Time the upload command end to end: one POST vs resumable (tus) chunks, and bundle writing.

    .venv/bin/python bench/upload_modes.py [--size-mb 512] [--files 8] [--chunk 64MiB]

Starts a real stack (tests/harness.py) on the embedded defaults in a temporary folder, makes
a directory of random files, and prints seconds and MB/s from command start to job complete.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from harness import Stack  # noqa: E402  pylint: disable=wrong-import-position

FIELDS = ["--submitter", "10", "--project", "1234a", "--instrument", "54"]


def timed(command: list[str]) -> float:
    """Seconds one run takes; fails loudly on a non-zero exit."""
    start = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    return time.monotonic() - start


def main() -> None:
    """Run each mode once and print its rate."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--chunk", default="64MiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="upload-bench-") as base:
        source = os.path.join(base, "input")
        os.makedirs(source)
        each = args.size_mb * 1024 * 1024 // args.files
        for number in range(args.files):
            with open(os.path.join(source, f"f{number}.bin"), "wb") as handle:
                for _ in range(each // (1 << 20)):
                    handle.write(os.urandom(1 << 20))
        stack = Stack(os.path.join(base, "stack")).start()
        command = [sys.executable, "-m", "pacifica.ingest.client", "--url", stack.url,
                   "--no-progress", "--poll-interval", "0.2", *FIELDS]
        try:
            runs = {
                "bundle-only (hash + write tar)": [*command, "--bundle-only",
                                                   os.path.join(base, "b.tar"), source],
                "POST /upload, to complete": [*command, source],
                f"--resume (tus, {args.chunk} chunks), to complete": [
                    *command, "--resume", "--chunk-size", args.chunk, "--state-file",
                    os.path.join(base, "state.json"), source],
            }
            for name, argv in runs.items():
                seconds = timed(argv)
                print(f"{name:45s} {seconds:7.2f} s  {args.size_mb / seconds:7.1f} MB/s")
                stack.clean()
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
