"""The growth curves as a PNG (matplotlib, the ``bench`` extra): time and worker RSS vs size."""
from __future__ import annotations

import logging
import textwrap

logger = logging.getLogger(__name__)


def curves(points: dict, path: str, title: str) -> bool:
    """Draw ``report.curve_points`` to ``path``; False without points or without matplotlib.

    Log-log axes with a dotted line of slope 1 through the middle point: a curve that follows
    it grows linearly.
    """
    drawn = {axis: rows for axis, rows in points.items() if rows}
    if not drawn:
        return False
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
    except ImportError:
        logger.warning("matplotlib is missing (pip install -e '.[bench]'): no plot")
        return False
    figure, axes = pyplot.subplots(2, len(drawn), figsize=(6 * len(drawn), 8), squeeze=False)
    for column, (axis, rows) in enumerate(drawn.items()):
        xs = [row["x"] for row in rows]
        unit = "files (1 KiB each)" if axis == "files" else "bundle bytes (4 files)"
        top, bottom = axes[0][column], axes[1][column]
        for key, label, style in (("end_to_end_s", "ours, local archive", "o-"),
                                  ("floor_s", "floor", "s--")):
            pairs = [(row["x"], row[key]) for row in rows if row.get(key)]
            if pairs:
                top.plot(*zip(*pairs), style, label=label)
        timed = [row for row in rows if row.get("end_to_end_s")]
        if timed:
            middle = timed[len(timed) // 2]
            top.plot(xs, [middle["end_to_end_s"] * x / middle["x"] for x in xs], ":",
                     color="grey", label="linear through the middle point")
        top.set(xscale="log", yscale="log", xlabel=unit, ylabel="seconds, POST start to complete",
                title=f"end to end vs {axis}")
        top.legend()
        highest = 1.0
        for key, label in (("worker_largest_mib", "worker (largest process)"),
                           ("frontend_mib", "frontend")):
            pairs = [(row["x"], row[key]) for row in rows if row.get(key)]
            if pairs:
                bottom.plot(*zip(*pairs), "o-", label=label)
                highest = max(highest, *(mib for _, mib in pairs))
        bottom.set(xscale="log", xlabel=unit, ylabel="peak RSS, MiB", title=f"memory vs {axis}")
        bottom.set_ylim(0, highest * 1.2)
        bottom.legend()
    figure.suptitle(textwrap.fill(title, 60 * len(drawn)), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return True
