"""What docs/PROTOCOL.md and README.md tell a newcomer works as written: the worked example's
files and metadata.txt, built and sent with the doc's own commands, are archived byte for byte;
the README's quick start completes an upload."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_URL = "http://127.0.0.1:8066"


def section(path: str, heading: str) -> str:
    """The text of a Markdown section, from its heading to the next one of the same level."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        text = handle.read()
    start = text.index(heading + "\n")
    level = heading.split(" ")[0]
    end = text.find("\n" + level + " ", start + len(heading))
    return text[start:end if end > 0 else len(text)]


def indented_blocks(text: str) -> list[str]:
    """The 4-space indented code blocks of a Markdown text, unindented."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("    "):
            current.append(line[4:])
        elif current and not line.strip():
            current.append("")
        elif current:
            blocks.append("\n".join(current).strip("\n"))
            current = []
    if current:
        blocks.append("\n".join(current).strip("\n"))
    return blocks


def stated_files(text: str) -> dict[str, bytes]:
    """Each 'File `data/...` (N bytes, ...):' with the fenced block after it; N checked."""
    found = {}
    for path, size, body in re.findall(r"File `(data/[^`]+)` \((\d+) bytes[^)]*\):\n\n```text\n"
                                       r"(.*?)```", text, re.S):
        data = body.encode("utf-8")
        assert len(data) == int(size), f"the doc says {path} has {size} bytes, it shows {len(data)}"
        found[path] = data
    return found


def shell(script: str, cwd, url: str) -> subprocess.CompletedProcess:
    """Run commands from the docs with the test server's URL and this venv's scripts."""
    scripts = os.path.dirname(sys.executable) + "/"
    script = script.replace(DOC_URL, url).replace(".venv/bin/", scripts)
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=180, check=False)


def test_worked_example_is_archived_byte_identical(make_stack, tmp_path):
    example = section("docs/PROTOCOL.md", "## A worked example")
    files = stated_files(example)
    assert len(files) == 2 and len({path.rsplit("/", 1)[0] for path in files}) == 2, files
    metadata = json.loads(re.search(r"```json\n(.*?)```", example, re.S).group(1))
    tables = {entry["destinationTable"] for entry in metadata}
    assert {"Transactions.submitter", "Transactions.project", "Transactions.instrument",
            "TransactionKeyValue", "Files"} <= tables
    (commands,) = [block for block in indented_blocks(example) if "tar -cf" in block]

    stack = make_stack().start()  # fresh: its first job is job 1, as the doc's commands say
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "metadata.txt").write_text(json.dumps(metadata), encoding="utf-8")
    result = shell(commands, tmp_path, stack.url)
    assert result.returncode == 0, result.stderr
    for path, data in files.items():  # the doc's printf lines write what the doc states
        assert (tmp_path / "bundle" / path).read_bytes() == data, path
    posted, end = json.JSONDecoder().raw_decode(result.stdout)
    assert (posted["job_id"], posted["state"], posted["task"]) == (1, "OK", "UPLOADING"), posted
    json.JSONDecoder().raw_decode(result.stdout[end:].lstrip())  # get_state answered JSON

    state = stack.wait(posted["job_id"])
    assert (state["state"], state["task"], state["task_percent"], state["complete"]) == (
        "OK", "ingest metadata", "100.0", True), state
    assert stack.archived(state["job_id"]) == {path[len("data/"):]: data
                                               for path, data in files.items()}
    listing = stack.files(state["job_id"])
    assert sorted((f["subdir"], f["name"]) for f in listing["files"]) == [
        ("run42", "notes.txt"), ("run42/raw", "scan-001.csv")]
    assert listing["transaction"]["key_values"] == {"Tag": "foo"}


def test_every_step_and_state_field_the_code_uses_is_documented():
    from pacifica.ingest.jobs import Step  # pylint: disable=import-outside-toplevel
    doc = section("docs/PROTOCOL.md", "## The job state object")
    for step in Step:
        assert f"`{step.value}`" in doc, step
    for name in ("job_id", "state", "task", "task_percent", "complete", "created", "updated",
                 "exception"):
        assert f"`{name}`" in doc, name


def test_readme_quick_start_completes_an_upload(make_stack, tmp_path):
    quick = section("README.md", "## Quick start")
    assert "bash scripts/run.sh" in indented_blocks(quick)[0]
    assert "docs/PROTOCOL.md" in quick
    stack = make_stack().start()  # stands in for `bash scripts/run.sh`
    result = shell(indented_blocks(quick)[1], tmp_path, stack.url)
    assert result.returncode == 0, result.stderr
    assert "job 1: OK, ingest metadata 100.0 %, complete=True" in result.stdout, result.stdout
    listing = json.loads(result.stdout[result.stdout.index("{"):])
    assert [(f["subdir"], f["name"]) for f in listing["files"]] == [("run42", "notes.txt")]
    assert stack.archived(1) == {"run42/notes.txt": (tmp_path / "run42" / "notes.txt").read_bytes()}


def test_docs_are_self_contained():
    """Nothing the newcomer reads points outside the repository."""
    for path in ("README.md", "docs/PROTOCOL.md"):
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            assert "../shared" not in handle.read(), path
