"""The frontend never loads the worker's machinery, the worker never loads CherryPy, and the
intake (accepting work, no HTTP) loads neither CherryPy nor the web package."""
from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys

import pacifica.ingest.intake

PIPELINE = {"pacifica.ingest.pipeline", "pacifica.ingest.bundle", "pacifica.ingest.worker",
            "pacifica.ingest.archive.local"}


def modules_after_import(*modules: str) -> set[str]:
    code = f"import sys, json, {', '.join(modules)}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    return set(json.loads(result.stdout))


def intake_modules() -> list[str]:
    folder = os.path.dirname(pacifica.ingest.intake.__file__)
    return ["pacifica.ingest.intake"] + [f"pacifica.ingest.intake.{info.name}"
                                         for info in pkgutil.iter_modules([folder])]


def http_modules(loaded: set[str]) -> set[str]:
    return {name for name in loaded
            if name.split(".")[0] == "cherrypy" or name.startswith("pacifica.ingest.web")}


def test_frontend_does_not_import_the_pipeline():
    loaded = modules_after_import("pacifica.ingest.web.app")
    assert not PIPELINE & loaded


def test_worker_does_not_import_cherrypy():
    loaded = modules_after_import("pacifica.ingest.worker")
    assert "cherrypy" not in loaded and "pacifica.ingest.web" not in loaded


def test_intake_imports_neither_http_nor_the_pipeline():
    """All modules at once: what none of them loads together, none loads alone."""
    modules = intake_modules()
    assert {"pacifica.ingest.intake.staging", "pacifica.ingest.intake.tus_store",
            "pacifica.ingest.intake.reservations", "pacifica.ingest.intake.intake",
            "pacifica.ingest.intake.volume"} <= set(modules)
    loaded = modules_after_import(*modules)
    assert not http_modules(loaded), sorted(http_modules(loaded))
    assert not PIPELINE & loaded
def test_protocol_module_imports_nothing_of_the_project():
    loaded = modules_after_import("pacifica.ingest.protocol")
    ours = {name for name in loaded if name.startswith("pacifica.ingest.")}
    assert ours == {"pacifica.ingest.protocol"}, ours
