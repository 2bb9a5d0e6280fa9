"""Medians, ratios to the floor and to the original, the Markdown table and the target checks."""
from __future__ import annotations

import statistics

from . import floor as floors_

SYSTEMS = {"ours-local": "ours, local archive", "ours-pacifica": "ours, Archive Interface",
           "original": "original 0.4.1"}
FLOOR_PARTS = ("cp_s", "sync_s", "tar_s", "sha1sum_s", "syncfs_s", "settle_s", "floor_s")


def median(rows: list[dict], key: str) -> float | None:
    """Median of a figure over runs (None without runs)."""
    values = [row[key] for row in rows if row.get(key) is not None]
    return statistics.median(values) if values else None


def _rss(rows: list[dict], name: str) -> float | None:
    values = [row["rss_mib"][name] for row in rows if row.get("rss_mib")]
    return max(values) if values else None


def summarise(records: list[dict]) -> dict:
    """{(system, bundle): medians} over the successful runs, plus floors by bundle."""
    summary: dict = {"runs": {}, "floor": {}, "load": {}}
    for record in records:
        if record["kind"] == "floor":
            summary["floor"].setdefault(record["bundle"], []).append(record)
        elif record["kind"] == "ingest":
            summary["runs"].setdefault((record["system"], record["bundle"]), []).append(record)
        elif record["kind"] == "load":
            summary["load"][record["system"]] = record
    medians = {}
    for key, rows in summary["runs"].items():
        good = [row for row in rows if row["ok"]]
        medians[key] = {
            "runs": len(rows), "failed": len(rows) - len(good),
            **{k: median(good, k) for k in ("post_s", "end_to_end_s", "mb_s", "files_s")},
            "frontend_mib": _rss(good, "frontend"), "worker_mib": _rss(good, "worker"),
            "worker_largest_mib": _rss(good, "worker_largest"),
        }
    floors = {bundle: {"floor": rows[0]["floor"],
                       **{k: median(rows, k) for k in FLOOR_PARTS if median(rows, k) is not None}}
              for bundle, rows in summary["floor"].items()}
    return {"medians": medians, "floors": floors, "load": summary["load"]}


def _fmt(value, digits=2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(ours, theirs) -> float | None:
    return ours / theirs if ours and theirs else None


def markdown(summary: dict, header: str) -> str:
    """The short table the README quotes."""
    medians, floors = summary["medians"], summary["floors"]
    lines = [header, "",
             "| system | bundle | POST s | end-to-end s | MB/s | files/s | frontend MiB | "
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
                f"{_fmt(row['end_to_end_s'])} | {_fmt(row['mb_s'], 1)} | {_fmt(row['files_s'], 0)} | "
                f"{_fmt(row['frontend_mib'], 1)} | {_fmt(row['worker_largest_mib'], 1)} | "
                f"{_fmt(_ratio(row['end_to_end_s'], floor and floor['floor_s']))} | "
                f"{_fmt(_ratio(row['end_to_end_s'], original and original['end_to_end_s']))} | "
                f"{_fmt(_ratio(row['files_s'], original and original['files_s']))} |")
    load = summary["load"]
    if load:
        lines += ["", "| get_state (wrk, 32 connections, upload streaming) | requests/s | p50 ms | "
                      "p99 ms | errors | × original |", "|---|---:|---:|---:|---:|---:|"]
        original = load.get("original")
        for system in SYSTEMS:
            row = load.get(system)
            if row:
                lines.append(f"| {SYSTEMS[system]} | {_fmt(row['rps'], 0)} | "
                             f"{_fmt(row['p50_ms'])} | {_fmt(row['p99_ms'])} | "
                             f"{row['non_2xx']} {row['socket_errors']} | "
                             f"{_fmt(_ratio(row['rps'], original and original['rps']))} |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {measured} | {verdict} |" for name, measured, verdict in targets(summary)]
    return "\n".join(lines) + "\n"


def targets(summary: dict) -> list[tuple[str, str, str]]:
    """Each target of the performance issue with the figure that decides it."""
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
    workers = [row["worker_largest_mib"] for row in local if row.get("worker_largest_mib")]
    check("frontend RSS flat in bundle size (max − min over bundles, MiB)",
          max(fronts) - min(fronts) if len(fronts) > 1 else None, 10, unit=" MiB")
    check("worker RSS flat in size and file count (max − min over bundles, MiB)",
          max(workers) - min(workers) if len(workers) > 1 else None, 10, unit=" MiB")
    ours_load, their_load = load.get("ours-local"), load.get("original")
    check("get_state: requests/s ≥ 3 × original",
          _ratio(ours_load and ours_load["rps"], their_load and their_load["rps"]), 3, "higher",
          "×")
    check("get_state: p99 ≤ 50 ms while an upload streams", ours_load and ours_load["p99_ms"], 50,
          unit=" ms")
    return out
