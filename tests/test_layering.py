"""The frontend never loads the worker's machinery, and the worker never loads CherryPy."""
from __future__ import annotations

import json
import subprocess
import sys


def modules_after_import(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    return set(json.loads(result.stdout))


def test_frontend_does_not_import_the_pipeline():
    loaded = modules_after_import("pacifica.ingest.web.app")
    assert not {"pacifica.ingest.pipeline", "pacifica.ingest.bundle", "pacifica.ingest.worker",
                "pacifica.ingest.archive.local"} & loaded


def test_worker_does_not_import_cherrypy():
    loaded = modules_after_import("pacifica.ingest.worker")
    assert "cherrypy" not in loaded and "pacifica.ingest.web" not in loaded


def test_protocol_module_imports_nothing_of_the_project():
    loaded = modules_after_import("pacifica.ingest.protocol")
    ours = {name for name in loaded if name.startswith("pacifica.ingest.")}
    assert ours == {"pacifica.ingest.protocol"}, ours
