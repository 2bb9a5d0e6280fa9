"""``get_state`` under a bounded loopback load (wrk), optionally while an upload streams."""
from __future__ import annotations

import re
import shutil
import subprocess

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def available() -> bool:
    """Whether wrk is installed (Debian package ``wrk``)."""
    return shutil.which("wrk") is not None


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * UNITS[unit]


def run(url: str, connections: int = 32, seconds: int = 10, threads: int = 2) -> dict:
    """Run wrk against ``url``; requests/s, p50/p99 latency (ms), errors."""
    result = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d",
                             f"{seconds}s", "--timeout", "5s", "--latency", url],
                            capture_output=True, text=True, timeout=seconds + 60, check=True)
    out = result.stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for label, key in (("50%", "p50_ms"), ("99%", "p99_ms")):
        found = re.search(rf"^\s+{label}\s+(\S+)", out, re.M)
        figures[key] = _ms(found.group(1)) if found else None
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    figures["non_2xx"] = int(errors.group(1)) if errors else 0
    figures["socket_errors"] = socket_errors.group(1) if socket_errors else ""
    return figures
