"""Medians, ratios to the floor and to the original, the Markdown tables and the target checks."""
from __future__ import annotations

import statistics

from . import floor as floors_
from .bundles import CURVES, SHAPES

SYSTEMS = {"ours-local": "ours, local archive",
           "ours-hashing": "ours, local archive, hash_on_arrival on",
           "ours-mariadb": "ours, local archive, MariaDB",
           "ours-pacifica": "ours, Archive Interface", "original": "original 0.4.1"}
GUNICORN = "ours-gunicorn-"  # + WEB_CONCURRENCY: the frontend as Dockerfile.frontend runs it
CEILING = "ceiling-gunicorn-"  # + WEB_CONCURRENCY: bench/state.py's server-alone run
FLOOR_PARTS = ("cp_s", "sync_s", "tar_s", "sha1sum_s", "syncfs_s", "settle_s", "floor_s")


def median(rows: list[dict], key: str) -> float | None:
    """Median of a figure over runs (None without runs)."""
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.median(values) if values else None


def _rss(rows: list[dict], name: str) -> float | None:
    values = [row["rss_mib"][name] for row in rows if row.get("rss_mib")]
    return max(values) if values else None


def load_label(system: str) -> str:
    """How a get_state row names the frontend it measured."""
    if system.startswith(GUNICORN):
        return f"ours, gunicorn as the image runs it, WEB_CONCURRENCY={system[len(GUNICORN):]}"
    if system.startswith(CEILING):
        return (f"gunicorn alone (same settings, a constant answer), "
                f"WEB_CONCURRENCY={system[len(CEILING):]}")
    if system == "ours-local":
        return "ours, one CherryPy process"
    return SYSTEMS.get(system, system)


def summarise(records: list[dict]) -> dict:
    """Medians by (system, bundle) over the successful runs, floors by bundle, load, skips."""
    runs: dict = {}
    floor_rows: dict = {}
    load: dict = {}
    skipped = []
    for record in records:
        if record["kind"] == "floor":
            floor_rows.setdefault(record["bundle"], []).append(record)
        elif record["kind"] == "ingest":
            runs.setdefault((record["system"], record["bundle"]), []).append(record)
        elif record["kind"] == "load":
            load[(record["system"], record["streaming"])] = record
        elif record["kind"] == "skipped":
            skipped.append(record)
    medians = {}
    for key, rows in runs.items():
        good = [row for row in rows if row["ok"]]
        medians[key] = {
            "runs": len(rows), "failed": len(rows) - len(good),
            **{k: median(good, k) for k in ("post_s", "end_to_end_s", "mb_s", "files_s")},
            "frontend_mib": _rss(good, "frontend"), "worker_mib": _rss(good, "worker"),
            "worker_largest_mib": _rss(good, "worker_largest"),
            "worker_per_run": [row["rss_mib"]["worker_largest"] for row in rows],
        }
    floors = {bundle: {"floor": rows[0]["floor"],
                       **{k: median(rows, k) for k in FLOOR_PARTS if median(rows, k) is not None}}
              for bundle, rows in floor_rows.items()}
    return {"medians": medians, "floors": floors, "load": load, "skipped": skipped}


def curve_points(summary: dict) -> dict[str, list[dict]]:
    """The growth curves measured: {"files"|"size": [{x, bundle, figures...}]} in order.

    Empty unless a point of the curves alone (not big, mid or many) was measured.
    """
    medians, floors = summary["medians"], summary["floors"]
    if not any(system == "ours-local" and bundle not in ("big", "mid", "many")
               for system, bundle in medians):
        return {}
    out: dict[str, list[dict]] = {}
    for axis, points in CURVES.items():
        rows = []
        for label, bundle in points.items():
            row = medians.get(("ours-local", bundle))
            if not row:
                continue
            shape = SHAPES[bundle]
            rows.append({"label": label, "bundle": bundle, "files": shape.files,
                         "x": shape.files if axis == "files" else shape.payload,
                         "floor_s": floors.get(bundle, {}).get("floor_s"), **row})
        out[axis] = rows
    return out


def _fmt(value, digits=2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(ours, theirs) -> float | None:
    return ours / theirs if ours and theirs else None


def markdown(summary: dict, header: str) -> str:
    """The tables the README quotes: ingests, get_state, growth curves, targets."""
    lines = [header]
    for table in (_ingest_table(summary), _load_table(summary["load"]), _curve_table(summary)):
        if table:
            lines += ["", *table]
    for record in summary["skipped"]:
        lines += ["", f"Skipped: {record['bundle']}: {record['reason']}"]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {measured} | {verdict} |"
              for name, measured, verdict in targets(summary)]
    return "\n".join(lines) + "\n"


def _ingest_table(summary: dict) -> list[str]:
    medians, floors = summary["medians"], summary["floors"]
    lines = ["| system | bundle | POST s | end-to-end s | MB/s | files/s | frontend MiB | "
             "worker MiB | × floor | × original time | files/s × original |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for bundle in ("big", "mid", "many"):
        floor = floors.get(bundle)
        if floor:
            lines.append(f"| floor ({floor['floor']}) | {bundle} | – | {_fmt(floor['floor_s'])} "
                         f"({floors_.describe(floor)}) | – | – | – | – | 1.00 | – | – |")
        original = medians.get(("original", bundle))
        for system in SYSTEMS:
            row = medians.get((system, bundle))
            if not row:
                continue
            failed = f" ({row['failed']} of {row['runs']} failed)" if row["failed"] else ""
            lines.append(
                f"| {SYSTEMS[system]}{failed} | {bundle} | {_fmt(row['post_s'])} | "
                f"{_fmt(row['end_to_end_s'])} | {_fmt(row['mb_s'], 1)} | "
                f"{_fmt(row['files_s'], 0)} | "
                f"{_fmt(row['frontend_mib'], 1)} | {_fmt(row['worker_largest_mib'], 1)} | "
                f"{_fmt(_ratio(row['end_to_end_s'], floor and floor['floor_s']))} | "
                f"{_fmt(_ratio(row['end_to_end_s'], original and original['end_to_end_s']))} | "
                f"{_fmt(_ratio(row['files_s'], original and original['files_s']))} |")
    return lines if len(lines) > 2 else []


def _load_table(load: dict) -> list[str]:
    if not load:
        return []
    streamed = next((row for (_, streaming), row in load.items() if streaming), None)
    what = (f"{streamed['stream_bytes'] / 1024**3:.2f} GiB upload streaming at "
            f"{streamed['stream_mb_s']} MB/s" if streamed else "upload streaming")
    lines = [f"| get_state (wrk, 32 connections) | idle req/s | idle p50 ms | idle p99 ms | "
                 f"req/s, {what} | p50 ms | p99 ms | errors | "
                 "req/s × original (idle / streaming) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    systems = sorted({system for system, _ in load},
                     key=lambda s: (s == "original", s.startswith(CEILING),
                                    s.startswith(GUNICORN), s))
    for system in systems:
        idle, busy = load.get((system, False), {}), load.get((system, True), {})
        ratios = [_ratio(row.get("rps"), load.get(("original", streaming), {}).get("rps"))
                  for streaming, row in ((False, idle), (True, busy))]
        errors = " ".join(f"{row['non_2xx']} {row['socket_errors']}".strip()
                          for row in (idle, busy) if row) or "–"
        lines.append(f"| {load_label(system)} | {_fmt(idle.get('rps'), 0)} | "
                     f"{_fmt(idle.get('p50_ms'))} | {_fmt(idle.get('p99_ms'))} | "
                     f"{_fmt(busy.get('rps'), 0)} | {_fmt(busy.get('p50_ms'))} | "
                     f"{_fmt(busy.get('p99_ms'))} | {errors} | "
                     f"{_fmt(ratios[0], 1)} / {_fmt(ratios[1], 1)} |")
    return lines


def _curve_table(summary: dict) -> list[str]:
    points = curve_points(summary)
    if not points:
        return []
    lines = ["| growth (ours, local archive) | bundle | end-to-end s | cost per unit | "
                 "floor s | × floor | worker MiB, each run | frontend MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for axis, rows in points.items():
        for row in rows:
            if axis == "files":
                unit = _per(row["end_to_end_s"], row["files"] / 1000, "s per 1k files")
            else:
                unit = _per(row["end_to_end_s"], row["x"] / 1024**3, "s per GiB")
            runs = ", ".join(_fmt(value, 1) for value in row["worker_per_run"])
            lines.append(f"| {axis}: {row['label']} | {row['bundle']} | "
                         f"{_fmt(row['end_to_end_s'])} | {unit} | {_fmt(row['floor_s'])} | "
                         f"{_fmt(_ratio(row['end_to_end_s'], row['floor_s']))} | {runs} | "
                         f"{_fmt(row['frontend_mib'], 1)} |")
    return lines


def _per(seconds, units, name) -> str:
    return f"{seconds / units:,.3f} {name}" if seconds and units else "–"


def targets(summary: dict) -> list[tuple[str, str, str]]:
    """Each target of the performance issues with the figure that decides it."""
    medians, floors, load = summary["medians"], summary["floors"], summary["load"]
    out = []

    def check(name, value, limit, better="lower", unit=""):
        if value is None or limit is None:
            out.append((name, "not measured", "–"))
            return
        met = value <= limit if better == "lower" else value >= limit
        out.append((name, f"{value:,.2f}{unit} (limit {limit:,.2f}{unit})", "yes" if met else "NO"))

    big = medians.get(("ours-local", "big"), {})
    many = medians.get(("ours-local", "many"), {})
    check("many, local: end-to-end ÷ floor (tar -xf + sha1sum + syncfs) ≤ 1.1",
          _ratio(many.get("end_to_end_s"), floors.get("many", {}).get("floor_s")), 1.1)
    check("big, local: end-to-end ÷ floor (cp + sha1sum) ≤ 1.2",
          _ratio(big.get("end_to_end_s"), floors.get("big", {}).get("floor_s")), 1.2)
    remote = medians.get(("ours-pacifica", "many"), {}).get("files_s")
    original = medians.get(("original", "many"), {}).get("files_s")
    check("many, Archive Interface: files/s ≥ 3 × original", _ratio(remote, original), 3,
          "higher", "×")
    check("frontend peak RSS, big upload ≤ 60 MiB", big.get("frontend_mib"), 60, unit=" MiB")
    local = [medians.get(("ours-local", b), {}) for b in ("big", "mid", "many")]
    fronts = [row["frontend_mib"] for row in local if row.get("frontend_mib")]
    check("frontend RSS flat in bundle size (max − min over big, mid, many, MiB)",
          max(fronts) - min(fronts) if len(fronts) > 1 else None, 10, unit=" MiB")
    few = [row["worker_largest_mib"] for (system, bundle), row in medians.items()
           if system == "ours-local" and SHAPES[bundle].files == 4 and row["worker_largest_mib"]]
    most = medians.get(("ours-local", "files-100k"), {}).get("worker_largest_mib")
    check("worker peak RSS, 100,000 files − 4 files ≤ 10 MiB",
          most - min(few) if most and few else None, 10, unit=" MiB")
    check("worker peak RSS, 1,000,000 files of 1 byte < 150 MiB (`--curves 1M`)",
          medians.get(("ours-local", "files-1M"), {}).get("worker_largest_mib"), 150,
          unit=" MiB")
    theirs = load.get(("original", True), {}).get("rps")
    for system in sorted(s for s, streaming in load if streaming and s.startswith(GUNICORN)):
        row = load[(system, True)]
        name = f"get_state, gunicorn WEB_CONCURRENCY={system[len(GUNICORN):]}, upload streaming"
        check(f"{name}: req/s ≥ 10 × original", _ratio(row["rps"], theirs), 10, "higher", "×")
        check(f"{name}: p99 ≤ 25 ms", row["p99_ms"], 25, unit=" ms")
    check("get_state, one CherryPy process, upload streaming: p99 ≤ 50 ms",
          load.get(("ours-local", True), {}).get("p99_ms"), 50, unit=" ms")
    return out
