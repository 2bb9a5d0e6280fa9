"""``python -m bench``: measure ours, the floors and the original; JSON lines, Markdown, a plot.

    bash bench/run.sh [--runs 3] [--only big,mid,many,floor,state,curves]
                      [--systems ours-local,ours-mariadb,ours-pacifica,original]

Parts (``--only``, default all): ``big``, ``mid``, ``many`` ingest that bundle on every
system; ``floor`` measures the floor of each bundle ours-local ingests (of big, mid and many
when no bundle is named), each run just before the service's run of the same bundle;
``state`` runs wrk on get_state idle and while an upload streams, on one CherryPy process,
gunicorn as Dockerfile.frontend runs it (``--web-concurrency``) and the original; ``curves``
ingests the growth-curve bundles (``--curves``) on ours-local and plots them.
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
import time

from . import bundles, floor, load, ours, plot, report, state
from .measure import ingest_once
from .client import Client

logger = logging.getLogger("bench")
HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, ".cache")


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


PARTS = ("big", "mid", "many", "floor", "state", "curves")


class Plan:
    """What the options ask for: bundles per system, floors, curve points, state shapes."""

    def __init__(self, args, parser):
        parts = [p for p in args.only.split(",") if p]
        systems = [s for s in args.systems.split(",") if s]
        labels = [c for c in args.curves.split(",") if c] if "curves" in parts else []
        unknown = (set(parts) - set(PARTS)) | (set(systems) - set(report.SYSTEMS)) | (
            set(labels) - set(bundles.CURVE_POINTS))
        if unknown:
            parser.error(f"unknown part, system or curve point: {', '.join(sorted(unknown))}")
        self.parts, self.systems, self.runs = parts, systems, args.runs
        self.main = [name for name in ("big", "mid", "many") if name in parts]
        self.curves = [bundles.CURVE_POINTS[label] for label in labels]
        local = list(dict.fromkeys(self.main + self.curves))
        self.local = local if "ours-local" in systems else []
        self.floors = (local or ["big", "mid", "many"]) if "floor" in parts else []
        self.state = "state" in parts
        self.web_concurrency = [int(n) for n in args.web_concurrency.split(",") if n]


def warm(url: str) -> int:
    """Ingest the tiny bundle (imports, connections) outside the figures; its job id."""
    client = Client(url)
    try:
        return client.ingest(bundles.ensure("tiny", CACHE))["job_id"]
    finally:
        client.close()


def run_system(name: str, url: str, pids: dict, archive_root: str, paths: dict, runs: int,
               recorder: Recorder, before=None) -> None:
    """Every bundle in ``paths`` ``runs`` times on one system, ``before(bundle, run)`` each."""
    for bundle, path in paths.items():
        for run in range(runs):
            if before:
                before(bundle, run)
            settle_s = floor.settle()
            figures = ingest_once(url, path, bundle, pids, archive_root)
            recorder.add({"kind": "ingest", "system": name, "run": run, "settle_s": settle_s,
                          **figures})
            logger.info("%-13s %-10s run %d: POST %.2fs, end-to-end %.2fs, %.0f files/s, "
                        "frontend %.1f MiB, worker %.1f MiB%s", name, bundle, run,
                        figures["post_s"], figures["end_to_end_s"], figures["files_s"],
                        figures["rss_mib"]["frontend"], figures["rss_mib"]["worker_largest"],
                        "" if figures["ok"] else f"  NOT OK: {figures['state']} "
                        f"{figures['stored_files']} stored {figures['exception']}")


class Bench:
    """One benchmark run: the plan, the scratch folder, the recorder."""

    def __init__(self, plan: Plan, args, recorder: Recorder, workdir: str):
        self.plan, self.args, self.recorder, self.workdir = plan, args, recorder, workdir
        self.backends = None  # services.Backends while the Pacifica systems run
        self.scratch = os.path.join(workdir, "floor")
        self.stream = bundles.ensure(args.stream, CACHE) if plan.state else None
        self.load_seconds = args.load_seconds if plan.state and load.available() else 0
        if plan.state and not load.available():
            logger.warning("wrk is not installed (apt-get install wrk): get_state load skipped")
        self.paths = {}
        for name in dict.fromkeys(plan.main + plan.local + plan.floors):
            if self._fits(name):
                self.paths[name] = bundles.ensure(name, CACHE)

    def _fits(self, name: str) -> bool:
        """Whether the disk holds the bundle, its copy on the volume and in the archive."""
        shape = bundles.SHAPES[name]
        need = shape.payload * 3 + (0 if os.path.exists(bundles.path_of(name, CACHE))
                                    else shape.payload) + 1024**3
        free = min(shutil.disk_usage(self.workdir).free, shutil.disk_usage(HERE).free)
        if free >= need:
            return True
        reason = (f"needs {need / 1024**3:.1f} GiB free (bundle, volume copy, archive copy), "
                  f"{free / 1024**3:.1f} GiB free")
        logger.warning("skipping %s: %s", name, reason)
        self.recorder.add({"kind": "skipped", "bundle": name, "reason": reason})
        return False

    def floor(self, bundle: str, run: int) -> None:
        """One floor run of ``bundle`` (if floors were asked for it)."""
        if bundle not in self.plan.floors or bundle not in self.paths:
            return
        os.makedirs(self.scratch, exist_ok=True)
        figures = floor.measure(self.paths[bundle], bundles.SHAPES[bundle], self.scratch)
        self.recorder.add({"kind": "floor", "bundle": bundle, "run": run, **figures})
        logger.info("floor         %-10s run %d: %s = %.2fs (%s)", bundle, run, figures["floor"],
                    figures["floor_s"], floor.describe(figures))

    def run(self) -> None:
        """Every selected part, system by system."""
        plan = self.plan
        for bundle in plan.floors:  # the floors no ours-local run is paired with
            if bundle not in plan.local:
                for run in range(plan.runs):
                    self.floor(bundle, run)
        if plan.local or (plan.state and "ours-local" in plan.systems):
            self.ours("ours-local", {b: self.paths[b] for b in plan.local if b in self.paths},
                      before=self.floor, get_state=True,
                      settings=bundles.LIMITS_FOR.get("files-1M") if "files-1M" in plan.local
                      else None)
        if plan.state and self.load_seconds and "ours-local" in plan.systems:
            for processes in plan.web_concurrency:
                self.ours(f"{report.GUNICORN}{processes}", {}, web_concurrency=processes,
                          get_state=True)
                state.ceiling(processes, self.workdir, self.load_seconds, self.recorder.add)
        main = {b: self.paths[b] for b in plan.main if b in self.paths}
        if "ours-hashing" in plan.systems and main:  # the frontend hashes big members
            self.ours("ours-hashing", main, settings={"INGEST_INGEST_HASH_ON_ARRIVAL": "true"})
        if "ours-mariadb" in plan.systems and main:
            self.ours("ours-mariadb", main, database="mariadb")
        wanted = ("ours-pacifica" in plan.systems and main) or ("original" in plan.systems and (
            main or (plan.state and self.load_seconds)))
        if wanted:
            self.pacifica(main)

    def ours(self, name: str, paths: dict, services=None, archive_root=None, before=None,
             web_concurrency=None, database="sqlite", get_state=False, settings=None) -> None:
        """Start our stack, ingest ``paths``, then get_state load if asked; stop it."""
        stack = ours.start(os.path.join(self.workdir, name), services, web_concurrency, database,
                           settings)
        try:
            root = archive_root or stack.archive
            os.makedirs(root, exist_ok=True)
            job = warm(stack.url)

            def between(bundle, run):
                if before:
                    before(bundle, run)
                if archive_root:
                    self.backends.clean_archive()
                else:
                    ours.clean(stack)
            run_system(name, stack.url, ours.pids(stack), root, paths, self.plan.runs,
                       self.recorder, between)
            if self.load_seconds and get_state:
                state.measure(name, stack.url, job, self.stream, self.load_seconds,
                              self.args.stream_rate * 1e6, self.recorder.add)
        finally:
            stack.stop()
            ours.clean(stack)  # the last run's archive (up to 4 GiB) is not needed any more

    def pacifica(self, main: dict) -> None:
        """The real Pacifica back ends: ours on the Archive Interface, then the original."""
        from . import services, original  # pylint: disable=import-outside-toplevel
        services.ensure_venv()
        self.backends = services.Backends(os.path.join(self.workdir, "pacifica")).start()
        try:
            if "ours-pacifica" in self.plan.systems and main:
                self.ours("ours-pacifica", main, self.backends.service_env(),
                          archive_root=self.backends.archive_root)
            if "original" in self.plan.systems:
                theirs = original.Original(self.backends).start()

                def between(_bundle, _run):
                    self.backends.clean_archive()
                    theirs.clean()
                job = warm(theirs.url)
                run_system("original", theirs.url, theirs.pids(), self.backends.archive_root,
                           main, self.plan.runs, self.recorder, between)
                if self.load_seconds:
                    state.measure("original", theirs.url, job, self.stream, self.load_seconds,
                                  self.args.stream_rate * 1e6, self.recorder.add)
        finally:
            self.backends.stop()


def main(argv=None) -> int:
    """Parse options, run everything selected, write and print the tables and the plot."""
    parser = argparse.ArgumentParser(prog="bash bench/run.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per bundle (median reported)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help="parts: big, mid, many (bundles), floor, state, curves")
    parser.add_argument("--systems", default=",".join(report.SYSTEMS),
                        help="ours-local (and its gunicorn shape for state), ours-hashing (the "
                             "same with hash_on_arrival on), ours-mariadb (the "
                             "same on MariaDB), ours-pacifica "
                             "(real Archive Interface + UniqueID), "
                             "original (pacifica-ingest 0.4.1)")
    parser.add_argument("--curves", default=",".join(bundles.DEFAULT_CURVES),
                        help="growth-curve points: files 1k,10k,100k (1 KiB each), 1M "
                             "(1 byte each; only when named); bundle bytes 64M,1G,4G (4 files)")
    parser.add_argument("--web-concurrency", default="2,4",
                        help="gunicorn processes to measure get_state with (state)")
    parser.add_argument("--load-seconds", type=int, default=10,
                        help="wrk duration on get_state, each of idle and streaming (0: skip)")
    parser.add_argument("--stream", default="big", choices=sorted(bundles.SHAPES),
                        help="bundle uploaded while get_state is measured")
    parser.add_argument("--stream-rate", type=float, default=50,
                        help="MB/s of that upload (slower if it would end before wrk does)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--workdir", default=None,
                        help="scratch folder: volume, archive and floors (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    plan = Plan(args, parser)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(args.out, exist_ok=True)
    recorder = Recorder(os.path.join(args.out, f"{stamp}.jsonl"))
    workdir = args.workdir or tempfile.mkdtemp(prefix="ingest-bench-")
    os.makedirs(workdir, exist_ok=True)
    started, load_before, failed = time.monotonic(), _load(), False
    try:
        Bench(plan, args, recorder, workdir).run()
    except Exception:  # pylint: disable=broad-except
        logger.exception("the benchmark stopped early: the tables hold what was measured")
        failed = True
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = report.summarise(recorder.records)
    header = (f"Benchmark of {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
              f"on {machine()}; median of {args.runs} run(s); `--only {args.only}`; took "
              f"{(time.monotonic() - started) / 60:.1f} min; load average (1 / 5 / 15 min) "
              f"{load_before} at the start, {_load()} at the end"
              + ("; STOPPED EARLY (see the log)" if failed else ""))
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
    return 1 if failed else 0


def _load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
