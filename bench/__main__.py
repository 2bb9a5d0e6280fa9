"""``python -m bench``: measure ours, the floor and the original; write JSON lines and Markdown.

    bash bench/run.sh [--runs 3] [--only big,mid,many] [--systems ours-local,ours-pacifica,original]
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import tempfile

from . import bundles, floor, load, ours, plot, report, state
from .measure import ingest_once
from .client import Client

logger = logging.getLogger("bench")
HERE = os.path.dirname(os.path.abspath(__file__))


def machine() -> str:
    """CPU model, cores and memory, for the table's header."""
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} cores {model}, {memory:.0f} GiB, Python {platform.python_version()}"


class Recorder:
    """Appends every measurement to a JSON-lines file as it is taken."""

    def __init__(self, path: str):
        self.path = path
        self.records: list[dict] = []

    def add(self, record: dict) -> None:
        """Keep and write one record."""
        record["at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def run_system(name: str, url: str, pids: dict, archive_root: str, paths: dict, runs: int,
               recorder: Recorder, between=None) -> int:
    """Every selected bundle ``runs`` times on one system; the warm-up job's id (for get_state)."""
    warm = Client(url)
    try:  # the first job pays for imports and connections: keep it out of the figures
        job_id = warm.ingest(bundles.ensure("tiny", os.path.join(HERE, ".cache")))["job_id"]
    finally:
        warm.close()
    for bundle, path in paths.items():
        for run in range(runs):
            if between:
                between()
            settle_s = floor.settle()  # no dirty pages of earlier work flushed inside the run
            figures = ingest_once(url, path, bundle, pids, archive_root)
            recorder.add({"kind": "ingest", "system": name, "run": run, "settle_s": settle_s,
                          **figures})
            logger.info("%-13s %-4s run %d: POST %.2fs, end-to-end %.2fs, %.0f files/s, "
                        "frontend %.1f MiB, worker %.1f MiB%s", name, bundle, run,
                        figures["post_s"], figures["end_to_end_s"], figures["files_s"],
                        figures["rss_mib"]["frontend"], figures["rss_mib"]["worker_largest"],
                        "" if figures["ok"] else f"  NOT OK: {figures['state']} "
                        f"{figures['stored_files']} stored {figures['exception']}")
    return job_id


def main(argv=None) -> int:
    """Parse options, run everything selected, print the table."""
    parser = argparse.ArgumentParser(prog="bash bench/run.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per bundle (median reported)")
    parser.add_argument("--only", default="big,mid,many", help="bundles: big, mid, many")
    parser.add_argument("--systems", default="ours-local,ours-pacifica,original",
                        help="ours-local, ours-pacifica (real Archive Interface + UniqueID), "
                             "original (pacifica-ingest 0.4.1)")
    parser.add_argument("--load-seconds", type=int, default=10,
                        help="wrk duration on get_state, each of idle and streaming (0: skip)")
    parser.add_argument("--web-concurrency", default="2,4",
                        help="gunicorn processes (as Dockerfile.frontend runs it) to measure "
                             "get_state with")
    parser.add_argument("--stream", default="big", choices=sorted(bundles.SHAPES),
                        help="bundle uploaded while get_state is measured")
    parser.add_argument("--stream-rate", type=float, default=50,
                        help="MB/s of that upload (slower if it would end before wrk does)")
    parser.add_argument("--curves", default=",".join(bundles.CURVE_POINTS),
                        help="growth-curve points on ours-local: files 1k,10k,100k (1 KiB "
                             "each); bundle bytes 64M,1G,4G (4 files); '' for none")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    names = [n for n in args.only.split(",") if n]
    systems = [s for s in args.systems.split(",") if s]
    labels = [c for c in args.curves.split(",") if c]
    unknown = set(names) - set(bundles.SHAPES) | set(systems) - set(report.SYSTEMS) | (
        set(labels) - set(bundles.CURVE_POINTS))
    if unknown:
        parser.error(f"unknown bundle, system or curve point: {', '.join(sorted(unknown))}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(args.out, exist_ok=True)
    recorder = Recorder(os.path.join(args.out, f"{stamp}.jsonl"))
    paths = {name: bundles.ensure(name, os.path.join(HERE, ".cache")) for name in names}
    workdir = args.workdir or tempfile.mkdtemp(prefix="ingest-bench-")
    curves = {name: bundles.ensure(name, os.path.join(HERE, ".cache"))
              for name in dict.fromkeys(bundles.CURVE_POINTS[label] for label in labels)
              if name not in paths and _fits(name, workdir, recorder)}
    state_load = None  # (bundle streamed, its rate in B/s, wrk seconds)
    if args.load_seconds and load.available():
        state_load = (bundles.ensure(args.stream, os.path.join(HERE, ".cache")),
                      args.stream_rate * 1e6, args.load_seconds)
    elif args.load_seconds:
        logger.warning("wrk is not installed (apt-get install wrk): get_state load skipped")
    try:
        for name, path in dict(paths, **curves).items():
            for run in range(args.runs):
                figures = floor.measure(path, bundles.SHAPES[name],
                                        os.path.join(workdir, "floor"))
                recorder.add({"kind": "floor", "bundle": name, "run": run, **figures})
                logger.info("floor         %-4s run %d: %s = %.2fs (%s)", name, run,
                            figures["floor"], figures["floor_s"], floor.describe(figures))
        if "ours-local" in systems:
            _ours(os.path.join(workdir, "ours-local"), None, "ours-local",
                  dict(paths, **curves), args.runs, recorder, state_load)
            for processes in [int(n) for n in args.web_concurrency.split(",") if n]:
                if state_load:  # the frontend as the image runs it: get_state only
                    name = f"{report.GUNICORN}{processes}"
                    _ours(os.path.join(workdir, name), None, name, {}, args.runs, recorder,
                          state_load, web_concurrency=processes)
        if "ours-pacifica" in systems or "original" in systems:
            _pacifica(workdir, systems, paths, args.runs, recorder, state_load)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = report.summarise(recorder.records)
    header = (f"Benchmark of {datetime.date.today().isoformat()} on {machine()}; "
              f"median of {args.runs} run(s)")
    table = report.markdown(summary, header)
    for target in (os.path.join(args.out, f"{stamp}.md"), os.path.join(args.out, "latest.md")):
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(table)
    print(table)
    png = os.path.join(args.out, f"{stamp}.png")
    if plot.curves(report.curve_points(summary), png, header):
        shutil.copyfile(png, os.path.join(args.out, "latest.png"))
        print(f"Plot: {png}")
    print(f"JSON lines: {recorder.path}")
    return 0


def _fits(name: str, workdir: str, recorder: Recorder) -> bool:
    """Whether the disk holds the bundle, its copy on the volume and in the archive."""
    shape = bundles.SHAPES[name]
    cached = os.path.exists(bundles.path_of(name, os.path.join(HERE, ".cache")))
    need = shape.payload * (3 if cached else 4) + 1024**3
    free = min(shutil.disk_usage(workdir).free, shutil.disk_usage(HERE).free)
    if free >= need:
        return True
    reason = (f"needs {need / 1024**3:.1f} GiB free (bundle, volume copy, archive copy), "
              f"{free / 1024**3:.1f} GiB free")
    logger.warning("skipping %s: %s", name, reason)
    recorder.add({"kind": "skipped", "bundle": name, "reason": reason})
    return False


def _ours(workdir, services, name, paths, runs, recorder, state_load, archive_root=None,
          between=None, web_concurrency=None) -> None:
    stack = ours.start(workdir, services, web_concurrency)
    try:
        root = archive_root or stack.archive
        os.makedirs(root, exist_ok=True)
        job = run_system(name, stack.url, ours.pids(stack), root, paths, runs, recorder,
                         between or (lambda: ours.clean(stack)))
        if state_load:
            _state(name, stack.url, job, state_load, recorder)
    finally:
        stack.stop()


def _state(name, url, job, state_load, recorder) -> None:
    stream, rate, seconds = state_load
    state.measure(name, url, job, stream, seconds, rate, recorder.add)


def _pacifica(workdir, systems, paths, runs, recorder, state_load) -> None:
    from . import services, original  # pylint: disable=import-outside-toplevel
    services.ensure_venv()
    backends = services.Backends(os.path.join(workdir, "pacifica")).start()
    try:
        if "ours-pacifica" in systems:
            _ours(os.path.join(workdir, "ours-pacifica"), backends.service_env(), "ours-pacifica",
                  paths, runs, recorder, None,  # same frontend as ours-local: no get_state
                  archive_root=backends.archive_root, between=backends.clean_archive)
        if "original" in systems:
            theirs = original.Original(backends).start()

            def between():
                backends.clean_archive()
                theirs.clean()
            job = run_system("original", theirs.url, theirs.pids(), backends.archive_root, paths,
                             runs, recorder, between)
            if state_load:
                _state("original", theirs.url, job, state_load, recorder)
    finally:
        backends.stop()


if __name__ == "__main__":
    raise SystemExit(main())
