"""Scale-out benchmark: one gunicorn frontend and N workers (the images' start commands) on
MariaDB + RabbitMQ or Redis; upload B bundles at once and time until every job is done.

    .venv/bin/python bench/scale_out.py --broker rabbitmq --workers 1 3 --bundles 60 --size 1048576

Prints one line per worker count: bundles/s and MB/s from the first upload to the last job done.
Checks the same things as tests/test_deploy_scale_out.py (every job OK once, unique file ids).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

from factories import make_bundle  # noqa: E402  pylint: disable=wrong-import-position
from harness import Stack  # noqa: E402  pylint: disable=wrong-import-position
from images import image_command  # noqa: E402  pylint: disable=wrong-import-position

logger = logging.getLogger("bench.scale_out")


def run(broker: str, workers: int, bundles: int, size: int, concurrency: int) -> dict:
    """One measurement; returns the figures."""
    payloads = [make_bundle({f"b{n}/data.bin": os.urandom(size), f"b{n}/meta.txt": b"m"})
                for n in range(bundles)]
    with tempfile.TemporaryDirectory(prefix="bench-scale-out-") as base:
        stack = Stack(base, database="mariadb", broker=broker, workers=workers,
                      concurrency=concurrency,
                      frontend_command=image_command("Dockerfile.frontend"),
                      worker_command=image_command("Dockerfile.backend"))
        try:
            stack.start()
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=min(bundles, 10)) as pool:  # requests pool size
                job_ids = list(pool.map(lambda body: stack.upload(body)["job_id"], payloads))
            uploaded = time.monotonic()
            for job_id in job_ids:
                state = stack.wait(job_id, timeout=1800)
                if state["state"] != "OK":
                    raise SystemExit(f"job {job_id} failed: {state}")
            done = time.monotonic()
            file_ids = [entry["_id"] for job_id in job_ids for entry in stack.files(job_id)["files"]]
            if len(file_ids) != len(set(file_ids)) or len(file_ids) != 2 * bundles:
                raise SystemExit("file ids were given twice or files are missing")
        finally:
            stack.stop()
    total = sum(len(body) for body in payloads)
    return {"broker": broker, "workers": workers, "concurrency": concurrency,
            "bundles": bundles, "bytes": total, "upload_s": uploaded - started,
            "total_s": done - started, "bundles_per_s": bundles / (done - started),
            "mb_per_s": total / 1e6 / (done - started)}


def main() -> None:
    """Parse options, run each worker count, print the figures."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("rabbitmq", "redis"), default="rabbitmq")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--bundles", type=int, default=60)
    parser.add_argument("--size", type=int, default=1 << 20, help="bytes of data per bundle")
    parser.add_argument("--concurrency", type=int, default=2, help="processes per worker")
    args = parser.parse_args()
    for count in args.workers:
        figures = run(args.broker, count, args.bundles, args.size, args.concurrency)
        logger.info("%(broker)s workers=%(workers)d x%(concurrency)d bundles=%(bundles)d "
                    "bytes=%(bytes)d upload=%(upload_s).1fs total=%(total_s).1fs "
                    "%(bundles_per_s).1f bundles/s %(mb_per_s).1f MB/s", figures)


if __name__ == "__main__":
    main()
