"""``pacifica-ingest-upload``: bundle files and directories, send them, watch the job finish."""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
import uuid

import requests
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .. import protocol
from ..config import ConfigError, parse_size
from .bundle_writer import BundleInputError, BundleLayout, SourceChanged, collect, save
from .upload import (IngestClient, LocalFileError, ResumeStore, UploadFailed,
                     submission_key, task_position)

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_UPLOAD, EXIT_TIMEOUT = 0, 1, 2, 3, 4
DEFAULT_URL = "http://127.0.0.1:8066"
DEFAULT_TIMEOUT = 3600.0


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def server_url(text: str) -> str:
    """The --url with a scheme: ``127.0.0.1:8066`` means ``http://127.0.0.1:8066`` (said on
    standard error); schemes other than http(s) are refused."""
    scheme, sep, _ = text.partition("://")
    if not sep:
        logger.warning("--url %s has no scheme; using http://%s", text, text)
        return "http://" + text
    if scheme.lower() not in ("http", "https"):
        raise ValueError(f"--url {text}: the scheme must be http:// or https://")
    return text


def _id_value(text: str):
    """Ids travel as numbers when they look like numbers (as the uploaders send them)."""
    return int(text) if text.strip().isdigit() else text


def _default_state_file() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "pacifica-ingest", "uploads.json")


def build_parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = argparse.ArgumentParser(
        prog="pacifica-ingest-upload",
        description="Bundle files and directories (hashes and metadata.txt made for you), send "
                    "them to a Pacifica Ingest server and follow the job until it is complete.",
        epilog="Exit status: 0 complete, 1 the job FAILED (its exception is printed), 2 bad "
               "arguments or files (a file that cannot be read, even while sending), 3 the "
               "server could not be reached or refused the upload, 4 --timeout passed. "
               "The wire protocol is in docs/PROTOCOL.md.")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="files and directories; each goes under data/<its name>/")
    parser.add_argument("--url", default=os.environ.get("PACIFICA_INGEST_URL", DEFAULT_URL),
                        help=f"ingest server, http:// or https:// (default: $PACIFICA_INGEST_URL "
                             f"or {DEFAULT_URL})")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="say more: each request (-v), and the HTTP library's log (-vv)")
    fields = parser.add_argument_group("transaction metadata")
    fields.add_argument("--submitter", type=_id_value, help="Transactions.submitter")
    fields.add_argument("--project", help="Transactions.project")
    fields.add_argument("--instrument", type=_id_value, help="Transactions.instrument")
    fields.add_argument("--transaction", type=_pair, action="append", default=[],
                        metavar="FIELD=VALUE", help="any other Transactions.<FIELD> (repeatable)")
    fields.add_argument("--kv", type=_pair, action="append", default=[], metavar="KEY=VALUE",
                        help="a TransactionKeyValue pair (repeatable)")
    fields.add_argument("--hashtype", default="sha1", help="hash algorithm (default sha1)")
    sending = parser.add_argument_group("sending")
    sending.add_argument("--resume", action="store_true",
                         help="resumable (tus) upload: survives broken connections, and running "
                              "the same command again continues a broken upload")
    sending.add_argument("--chunk-size", type=_size, default=64 * 1024**2, metavar="SIZE",
                         help="bytes per resumable request, e.g. 16M, 1G, 512k (binary "
                              "units; default 64M)")
    sending.add_argument("--state-file", default=_default_state_file(),
                         help="where --resume remembers unfinished uploads")
    sending.add_argument("--retries", type=int, default=10,
                         help="retries after a broken connection (default 10)")
    sending.add_argument("--header", type=_header, action="append", default=[],
                         metavar="'NAME: VALUE'", help="extra HTTP header (e.g. authentication)")
    sending.add_argument("--bundle", metavar="TAR",
                         help="send this ready-made bundle as it is instead of building one")
    sending.add_argument("--new", action="store_true",
                         help="a fresh submission even if this very bundle was sent before "
                              "(by default the same bundle gets the same Idempotency-Key, so "
                              "running the command again never ingests it twice)")
    sending.add_argument("--bundle-only", metavar="FILE",
                         help="write the bundle to FILE ('-' for standard output) and stop")
    waiting = parser.add_argument_group("waiting and output")
    waiting.add_argument("--no-wait", action="store_true",
                         help="stop once the bundle is accepted; print the job state")
    waiting.add_argument("--poll-interval", type=float, default=1.0, metavar="SECONDS")
    waiting.add_argument("--receipt", metavar="FILE",
                         help="save the job's signed receipt here once it is complete (check it "
                              "later with pacifica-ingest-cmd verify-receipt)")
    waiting.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                         help="give up waiting for the job after this long (default "
                              f"{DEFAULT_TIMEOUT:.0f}; 0: wait as long as it takes)")
    shown = waiting.add_mutually_exclusive_group()
    shown.add_argument("--no-progress", action="store_true", help="no progress bars")
    shown.add_argument("--progress", action="store_true",
                       help="progress bars even when standard error is not a terminal")
    waiting.add_argument("--json", action="store_true",
                         help="print the final job state as JSON on standard output")
    return parser


class Reporter:
    """Progress bars (tqdm, on standard error) and the final words."""

    def __init__(self, args):
        self.disable = True if args.no_progress else (False if args.progress else None)
        self.json = args.json

    def bar(self, description: str, total: float, **options) -> tqdm:
        """A byte-counting bar unless told otherwise."""
        settings = dict(unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True)
        settings.update(options)
        return tqdm(total=total, desc=description, file=sys.stderr, disable=self.disable,
                    **settings)

    def job_bar(self) -> tqdm:
        """A bar over all the job's steps; its label names the current step and that step's
        own percent, the figure after the bar is the whole job's."""
        return self.bar("job", 100.0 * len(protocol.UPLOAD_STEPS), unit="%", unit_scale=False,
                        bar_format="{desc:<48} |{bar}| {percentage:3.0f}% of the job "
                                   "[{elapsed}]")

    def outcome(self, state: dict) -> int:
        """Print the job's outcome; return the exit status."""
        ok = state.get("state") == protocol.OK
        if self.json:
            sys.stdout.write(json.dumps(state) + "\n")
        elif ok:
            sys.stdout.write(f"job {state['job_id']}: {state['state']}, {state['task']} "
                             f"{state['task_percent']} %, complete={state['complete']}\n")
        if not ok:
            sys.stderr.write(f"job {state.get('job_id')} FAILED at {state.get('task')}: "
                             f"{state.get('exception')}\n")
        return EXIT_OK if ok else EXIT_JOB_FAILED


def _transaction(args) -> dict:
    fields = {}
    for name in ("submitter", "project", "instrument"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    for name, value in args.transaction:
        fields[name] = _id_value(value)
    return fields


def _build(args, report: Reporter, files=None) -> BundleLayout:
    files = collect(args.paths) if files is None else files
    with report.bar("hashing", sum(source.size for source in files)) as bar:
        return BundleLayout.from_files(files, _transaction(args), args.kv, args.hashtype,
                                       bar.update)


def _write_bundle(bundle: BundleLayout, target: str, report: Reporter) -> int:
    with report.bar("writing", bundle.length) as bar:
        if target == "-":
            bundle.write_to(sys.stdout.buffer, bar.update)
            sys.stdout.buffer.flush()
            return EXIT_OK
        save(bundle, target, bar.update)
    if report.json:
        sys.stdout.write(json.dumps({"bundle": os.path.abspath(target), "bytes": bundle.length,
                                     "files": len(bundle.files)}) + "\n")
    return EXIT_OK


@contextlib.contextmanager
def _source(args, report: Reporter, client: IngestClient):
    """(stream, length, fingerprint) of what to send: a built bundle or a given tar.  The
    inputs are checked first, then the server (before any file is hashed)."""
    if args.bundle:
        size = os.path.getsize(args.bundle)
        stat = os.stat(args.bundle)
        key = hashlib.sha256(f"{os.path.abspath(args.bundle)}|{size}|{stat.st_mtime_ns}"
                             .encode("utf-8")).hexdigest()
        with open(args.bundle, "rb") as handle:
            client.check()
            yield handle, size, key, os.path.basename(args.bundle)
    else:
        files = collect(args.paths)
        client.check()
        bundle = _build(args, report, files)
        with bundle.open() as stream:
            yield stream, bundle.length, bundle.fingerprint(), "bundle.tar"


def _send(args, report: Reporter, client: IngestClient) -> int:
    """Upload; return the job id."""
    with _source(args, report, client) as (stream, length, fingerprint, name):
        with report.bar("sending", length) as bar:
            mode = "tus" if args.resume else "post"  # a POST and a tus creation differ in kind
            key = uuid.uuid4().hex if args.new else submission_key(f"{mode}|{fingerprint}",
                                                                   client.url)
            if not args.resume:
                return client.post_bundle(stream, length, bar.update, key=key)["job_id"]

            def at(offset: int) -> None:
                bar.n = offset
                bar.refresh()

            store = ResumeStore(args.state_file)
            return client.tus_upload(stream, length, args.chunk_size, at, bar.update, store,
                                     key=f"{client.url}|{fingerprint}", filename=name,
                                     idempotency_key=key)


def _follow(args, report: Reporter, client: IngestClient, job_id: int) -> dict:
    with report.job_bar() as bar:
        def show(state: dict) -> None:
            task = state.get("task")
            step = protocol.UPLOAD_STEPS.index(task) + 1 if task in protocol.UPLOAD_STEPS else "?"
            steps = len(protocol.UPLOAD_STEPS)
            bar.set_description_str(f"job {job_id}: step {step}/{steps} {task} "
                                    f"{state.get('task_percent')} %", refresh=False)
            bar.n = task_position(state)
            bar.refresh()

        return client.wait(job_id, show, args.poll_interval, args.timeout or None)


def run(args) -> int:
    """Do what the arguments ask; return the exit status."""
    report = Reporter(args)
    if args.bundle_only:
        return _write_bundle(_build(args, report), args.bundle_only, report)
    client = IngestClient(args.url, dict(args.header), retries=args.retries)
    job_id = _send(args, report, client)
    if args.no_wait:
        return report.outcome(client.state(job_id)) if args.json else _announce(job_id)
    state = _follow(args, report, client, job_id)
    if args.receipt and state.get("state") == protocol.OK and state.get("complete"):
        client.save_receipt(job_id, args.receipt)
        logger.info("receipt of job %s saved to %s", job_id, args.receipt)
    return report.outcome(state)


def _announce(job_id: int) -> int:
    sys.stdout.write(f"job {job_id} accepted\n")
    return EXIT_OK


def _configure_logging(verbosity: int) -> None:
    """Notes (a resumed upload, a retry) always; each request with -v; libraries' with -vv."""
    logging.basicConfig(level=logging.DEBUG if verbosity > 1 else logging.WARNING,
                        format="pacifica-ingest-upload: %(message)s")
    logging.getLogger(__package__).setLevel(logging.DEBUG if verbosity else logging.INFO)


def main(argv=None) -> int:
    """Entry point of ``pacifica-ingest-upload``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.paths) == bool(args.bundle):
        parser.error("give the files and directories to send, or --bundle TAR (not both)")
    if args.bundle and args.bundle_only:
        parser.error("--bundle-only builds a bundle from PATHs; it cannot take --bundle")
    _configure_logging(args.verbose)
    try:
        args.url = server_url(args.url)
    except ValueError as err:
        parser.error(str(err))
    try:
        with logging_redirect_tqdm():
            return run(args)
    except TimeoutError as err:
        sys.stderr.write(f"pacifica-ingest-upload: {err}\n")
        return EXIT_TIMEOUT
    except LocalFileError as err:
        sys.stderr.write(f"pacifica-ingest-upload: cannot read a file being sent: {err}\n")
        return EXIT_USAGE
    except (UploadFailed, requests.RequestException) as err:
        sys.stderr.write(f"pacifica-ingest-upload: {err}\n")
        return EXIT_UPLOAD
    except (BundleInputError, SourceChanged, OSError) as err:  # files that cannot be read
        sys.stderr.write(f"pacifica-ingest-upload: {err}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("pacifica-ingest-upload: interrupted"
                         + ("; run the same command again to resume\n" if args.resume else "\n"))
        return 130


if __name__ == "__main__":
    sys.exit(main())
