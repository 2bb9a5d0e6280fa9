"""What docs/PROTOCOL.md and README.md tell a newcomer works as written: the worked example's
files and metadata.txt, built and sent with the doc's own commands, are archived byte for byte;
README's quick start, followed as written from an empty folder, completes two uploads that the
admin command lists from another folder."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest
import requests

import processes
from harness import free_port

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_URL = "http://127.0.0.1:8066"
ORIGINAL_PATH_NAMES = ("VOLUME_PATH", "PEEWEE_URL", "BROKER_URL", "ARCHIVE_PATH", "BACKEND_URL")


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


def worked_example_commands() -> str:
    """The worked example's build-and-send commands, with its one manual step (writing the JSON
    shown above them to metadata.txt) done as a person would."""
    example = section("docs/PROTOCOL.md", "## A worked example")
    metadata = re.search(r"```json\n(.*?)```", example, re.S).group(1)
    (commands,) = [block for block in indented_blocks(example) if "tar -cf" in block]
    step = "# write the JSON above to metadata.txt, then:"
    assert step in commands
    return commands.replace(step, f"cat > metadata.txt <<'JSON'\n{metadata}JSON")


def wait_answering(url: str, process: subprocess.Popen, log) -> None:
    """Until ``GET /`` answers (the service is up), or the process has died."""
    deadline = time.monotonic() + 180
    while True:
        try:
            if requests.get(url + "/", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)


@pytest.mark.timeout(900)
def test_readme_quick_start_as_a_newcomer_follows_it(tmp_path):
    """README's quick start, its commands taken from README.md (and the worked example it sends
    the reader to): `bash scripts/run.sh` from the clone, then in an empty folder an upload with
    pacifica-ingest-upload and one built by hand and sent with curl, polled to the end; then
    `pacifica-ingest-cmd jobs` from yet another folder lists both."""
    quick = section("README.md", "## Quick start")
    run, terminal, upload, poll, listing = indented_blocks(quick)
    assert run == "bash scripts/run.sh" and "docs/PROTOCOL.md#a-worked-example" in quick
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "tmp").mkdir()
    (tmp_path / "elsewhere").mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("INGEST_") and key not in ORIGINAL_PATH_NAMES}
    # The clone's var/ is where the defaults go (README's Configuration); INGEST_HOME points
    # them at a temp folder instead, so the test leaves the checkout alone; TMPDIR keeps
    # mktemp's folder inside the test's.
    env.update(INGEST_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"))
    log = tmp_path / "run.log"
    with open(log, "wb") as output:
        service = processes.spawn(["bash", "-c", f"{run} -p {port}"], cwd=ROOT, env=env,
                                  stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_answering(url, service, log)
        script = "\n".join([terminal, upload, worked_example_commands(),
                            "printf '\\nfolder: %s\\n' \"$PWD\""])
        sent = subprocess.run(["bash", "-e", "-c", script.replace(DOC_URL, url)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300, check=False)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "job 1: OK, ingest metadata 100.0 %, complete=True" in sent.stdout, sent.stdout
        folder = re.search(r"^folder: (.*)$", sent.stdout, re.M).group(1)
        assert os.path.dirname(folder) == str(tmp_path / "tmp")  # the empty folder of mktemp
        assert sorted(os.listdir(folder)) == ["bundle", "bundle.tar", "run42"]
        posted = json.loads(re.search(r'\{"job_id": 2, .*?\}', sent.stdout).group())
        assert (posted["state"], posted["task"]) == ("OK", "UPLOADING"), posted

        deadline = time.monotonic() + 120
        while True:  # the README's poll, as the reader repeats it
            asked = subprocess.run(["bash", "-e", "-c", poll.replace(DOC_URL, url)], env=env,
                                   cwd=folder, capture_output=True, text=True, timeout=60,
                                   check=False)
            state = json.loads(asked.stdout)
            if state["complete"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert (state["job_id"], state["state"], state["task"], state["complete"]) == (
            2, "OK", "ingest metadata", True), state
        listed = requests.get(url + "/get_files", params={"job_id": 2}, timeout=30).json()
        assert sorted((f["subdir"], f["name"]) for f in listed["files"]) == [
            ("run42", "notes.txt"), ("run42/raw", "scan-001.csv")]

        export = terminal.splitlines()[0]  # PATH, as the reader's terminal has it
        elsewhere = f"{export}\ncd {tmp_path / 'elsewhere'}\n"
        table = subprocess.run(["bash", "-e", "-c", elsewhere + listing], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=120, check=False)
        assert table.returncode == 0, table.stderr
        rows = [line.split() for line in table.stdout.splitlines()[1:]]
        assert [(row[0], row[1], row[2]) for row in rows] == [("2", "OK", "yes"),
                                                             ("1", "OK", "yes")], table.stdout
        assert f"database sqlite:///{tmp_path / 'home' / 'var' / 'ingest.sqlite3'}" in table.stderr
        assert os.listdir(tmp_path / "elsewhere") == []
    finally:
        processes.end(service)


def test_docs_are_self_contained():
    """Nothing the newcomer reads points outside the repository."""
    for path in ("README.md", "docs/PROTOCOL.md"):
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            assert "../shared" not in handle.read(), path
