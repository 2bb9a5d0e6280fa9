"""``pacifica-ingest-cmd``: administer jobs and the database schema."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from . import auth, catalog, db, heartbeats, jobs, notify, receipts, recovery, schema, startup
from .archive import from_settings as archive_from_settings
from .errors import AdminRefused, IngestError
from .intake.files import unlink_quietly
from .pipeline import rollback
from .queue import Enqueuer, submit
from .intake.staging import Staging

logger = logging.getLogger(__name__)


def job_id_argument(text: str) -> int:
    """argparse type of --job-id: a job id in the range a job can have."""
    try:
        return jobs.job_id_from(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """Sub-commands and their options (the original's names kept)."""
    parser = argparse.ArgumentParser(prog="pacifica-ingest-cmd",
                                     description="Administer Pacifica Ingest.")
    parser.add_argument("-c", "--config", default=os.environ.get("INGEST_CONFIG"),
                        help="INI settings file (default: $INGEST_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    job = commands.add_parser("job", help="set a job's state by hand (e.g. fail a stuck job)")
    job.add_argument("--job-id", "--job_id", dest="job_id", type=job_id_argument,
                     required=True)
    job.add_argument("--state", choices=(jobs.OK, jobs.FAILED))
    job.add_argument("--task", choices=[step.value for step in jobs.Step])
    job.add_argument("--task-percent", "--task_percent", dest="task_percent", type=float)
    job.add_argument("--exception", help="the message clients will see")

    commands.add_parser("dbsync", help="create or upgrade the database schema")
    dbchk = commands.add_parser("dbchk", help="check the schema is usable by this version")
    dbchk.add_argument("--equal", action="store_true", help="require exactly this version")

    retry = commands.add_parser("retry", help="ingest a bundle already on the volume again")
    retry.add_argument("--job-id", "--job_id", dest="job_id", type=job_id_argument,
                       required=True)
    retry.add_argument("--path", help="the bundle (or move JSON); default: the job's own")
    retry.add_argument("--move", action="store_true", help="the path is a move request")
    retry.add_argument("--force", action="store_true",
                       help="also retry a job that finished OK (its archived files are "
                            "replaced) or one not finished whose worker is gone")

    files = commands.add_parser("files", help="list what a job ingested (embedded catalog)")
    files.add_argument("--job-id", "--job_id", dest="job_id", type=job_id_argument,
                       required=True)

    listing = commands.add_parser("jobs", help="list jobs, newest first, by state and age "
                                               "(find stuck ones)")
    listing.add_argument("--state", choices=(jobs.OK, jobs.FAILED))
    listing.add_argument("--queue-state", choices=(jobs.RECEIVING, jobs.WAITING, jobs.QUEUED,
                                                   jobs.DONE))
    listing.add_argument("--older-than", type=float, metavar="SECONDS",
                         help="only jobs not updated for this many seconds")
    listing.add_argument("--running", action="store_true", help="only jobs not finished yet")
    listing.add_argument("--stale", action="store_true",
                         help="only running jobs without progress for [ingest] stale_after")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (100)")
    listing.add_argument("--json", action="store_true",
                         help="every field as JSON instead of a table")

    requeue = commands.add_parser("requeue", help="queue jobs again, keeping their file ids")
    _add_selection(requeue)

    fail = commands.add_parser("fail", help="mark jobs FAILED with a message")
    _add_selection(fail)
    fail.add_argument("--message", default="stopped by an administrator",
                      help="what clients will read in 'exception'")

    commands.add_parser("recover", help="one pass of the frontend's sweep: fail uploads a "
                                        "dead frontend left, queue again jobs a dead worker "
                                        "lost, remove failed bundles older than keep_failed")

    token = commands.add_parser("token", help="API tokens: users sending one need no proxy")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="make a token; it is printed only once")
    create.add_argument("--user", required=True, help="the user the token acts for")
    tokens = token_commands.add_parser("list", help="tokens (never their secrets)")
    tokens.add_argument("--user", help="only this user's")
    revoke = token_commands.add_parser("revoke", help="refuse a token from now on")
    revoke.add_argument("token", metavar="ID_OR_PREFIX", help="its id or prefix (token list)")

    keys = commands.add_parser("keys", help="the public keys receipts are signed with")
    keys.add_argument("--rotate", action="store_true",
                      help="make a new signing key (older receipts still verify)")
    check = commands.add_parser("verify-receipt", help="check a receipt's signature, and with "
                                                       "--against-archive the archived files")
    check.add_argument("receipt", metavar="FILE", help="a receipt saved from GET /receipt")
    check.add_argument("--public-key", metavar="PEM",
                       help="verify with this key file (offline) instead of the service's keys")
    check.add_argument("--against-archive", action="store_true",
                       help="re-hash every archived file the receipt names (a fixity audit)")
    return parser


def _add_selection(command) -> None:
    which = command.add_mutually_exclusive_group(required=True)
    which.add_argument("--job-id", "--job_id", dest="job_ids", type=job_id_argument,
                       action="append",
                       help="a job (repeatable)")
    which.add_argument("--stale", action="store_true",
                       help="every running job without progress for [ingest] stale_after")
    command.add_argument("--older-than", type=float, metavar="SECONDS",
                         help="with --stale: this many seconds instead of stale_after")


def _print(document) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


def cmd_job(args, settings) -> int:
    """Override a job's visible state."""
    if args.task_percent is not None and not 0 <= args.task_percent <= 100:
        raise SystemExit("--task-percent must be between 0 and 100")
    job = jobs.manual_set(args.job_id, args.state, args.task, args.task_percent, args.exception)
    _print(job.as_dict())
    return 0


def cmd_dbsync(args, settings) -> int:
    """Create or upgrade the schema."""
    major, minor = schema.sync()
    logger.info("database schema is at %d.%d", major, minor)
    return 0


def cmd_dbchk(args, settings) -> int:
    """Exit 0 when the schema is usable (or equal, with --equal)."""
    ok = schema.is_equal() if args.equal else schema.is_safe()
    major, minor = schema.current_version()
    logger.info("database schema %d.%d, code %d.%d: %s", major, minor, schema.SCHEMA_MAJOR,
                schema.SCHEMA_MINOR, "ok" if ok else "run `pacifica-ingest-cmd dbsync`")
    return 0 if ok else 1


def _running(job) -> bool:
    return job.state == jobs.OK and not job.complete


def _check_retry_allowed(job, args, settings) -> None:
    """A finished-OK or running job is retried only with --force, and never while it runs."""
    if _running(job):
        if recovery.owner_alive(job.owner, job.updated, settings.ingest.stale_after):
            raise AdminRefused(f"job {job.job_id} is being run by {job.owner} (task "
                               f"{job.task!r}); wait for it, or `fail` it first")
        if not args.force:
            raise AdminRefused(f"job {job.job_id} has not finished (task {job.task!r}, "
                               f"{job.queue_state}); `requeue` it, or pass --force to retry it")
    elif job.state == jobs.OK and not args.force:
        raise AdminRefused(f"job {job.job_id} already finished OK; pass --force to ingest it "
                           "again (its files in the archive are replaced)")


def _bundle_on_volume(job, args, settings) -> str:
    """The bundle to ingest, on the volume: the job's own, or a durable copy of --path."""
    staging = Staging.from_settings(settings)
    move = args.move or (job.kind == jobs.KIND_MOVE and not args.path)
    target = staging.volume.job_input(job.job_id, move)
    if not args.path:
        if not job.path or not os.path.isfile(job.path):
            raise AdminRefused(
                f"the bundle of job {job.job_id} is no longer on the volume (failed bundles are "
                "kept for [ingest] keep_failed seconds); upload it again or pass --path FILE")
        if os.path.realpath(job.path) == os.path.realpath(target):
            return target
    source = os.path.abspath(args.path or job.path)
    if not os.path.isfile(source):
        raise AdminRefused(f"{source} is not a regular file")
    size = os.path.getsize(source)
    if move:
        if size > settings.ingest.max_metadata_size:
            raise AdminRefused(f"{source} is {size} bytes, over [ingest] max_metadata_size")
        with open(source, "rb") as handle:
            return staging.write_move_request(job.job_id, handle.read())
    staging.check_room(size)
    with open(source, "rb") as handle:
        return staging.receive(job.job_id, handle, size)


def _undo_finished(job, settings) -> None:
    """Before a forced retry of a finished-OK job: take its files out of the archive and its
    embedded catalog rows away (the retry gets a new file-id range, so nothing is orphaned)."""
    if job.file_id_start is not None and job.file_count:
        left = rollback(archive_from_settings(settings), job.file_id_start, job.file_count)
        if left:
            raise AdminRefused(f"job {job.job_id}: {left}; not retrying it")
    catalog.forget(job.job_id)


def cmd_retry(args, settings, enqueue) -> int:
    """Copy the bundle onto the volume, reset the job and queue it again."""
    job = jobs.get(args.job_id)
    _check_retry_allowed(job, args, settings)
    path = _bundle_on_volume(job, args, settings)
    if job.state == jobs.OK and job.complete:
        try:
            _undo_finished(job, settings)
        except AdminRefused:
            unlink_quietly(path)  # the fresh copy: a finished job's own bundle is gone
            raise
    kind = jobs.KIND_MOVE if args.move else job.kind
    jobs.reset(args.job_id, path=path)
    jobs.set_fields(args.job_id, kind=kind, file_id_start=None, file_count=None)
    queued = submit(args.job_id, kind, enqueue)
    _print(jobs.get(args.job_id).as_dict())
    if not queued:
        logger.warning("the broker did not take job %s; it waits and the frontend retries it",
                       args.job_id)
    return 0


def cmd_files(args, settings) -> int:
    """Print a job's transaction and files."""
    job = jobs.get(args.job_id)
    _print({"job": job.as_dict(), "transaction": catalog.transaction_of(args.job_id),
            "files": catalog.files_of(args.job_id)})
    return 0


def _stale_after(args, settings) -> float:
    return args.older_than if args.older_than is not None else settings.ingest.stale_after


def cmd_jobs(args, settings) -> int:
    """List jobs with what an operator needs to judge them."""
    stale_after = _stale_after(args, settings)
    older = args.older_than if args.older_than is not None else (
        stale_after if args.stale else None)
    found = recovery.list_jobs(state=args.state, queue_state=args.queue_state, older_than=older,
                               running=args.running or args.stale, limit=args.limit)
    described = [_described(job, stale_after, settings) for job in found]
    if args.json:
        for job in described:
            job["notifications"] = notify.of_job(job["job_id"])
        _print(described)
    else:
        sys.stdout.write(_table(described))
    return 0


def _described(job, stale_after: float, settings) -> dict:
    """``recovery.describe`` plus ``waiting_for`` (as get_state says it) for a queued job that
    no live worker can take."""
    row = recovery.describe(job, stale_after)
    note = heartbeats.waiting_for(job, settings.celery.worker_timeout, settings.celery.queue_name)
    if note:
        row["waiting_for"] = note
    return row


TABLE_COLUMNS = (("job_id", "JOB"), ("state", "STATE"), ("complete", "DONE"), ("task", "TASK"),
                 ("task_percent", "%"), ("queue_state", "QUEUE"), ("updated", "UPDATED"),
                 ("owner", "OWNER"), ("attempts", "TRIES"), ("waiting_for", "WAITING FOR"),
                 ("exception", "EXCEPTION"))


def _cell(job: dict, key: str) -> str:
    value = job.get(key)
    if key == "state" and job["stale"]:
        value += " (stale)"
    elif key == "complete":
        value = "yes" if value else "no"
    elif key == "exception":
        value = value.splitlines()[0][:60] if value else ""
    return "" if value is None else str(value)


def _table(described: list[dict]) -> str:
    """Jobs as aligned columns, one line each; the exception's first line, cut short."""
    rows = [[title for _, title in TABLE_COLUMNS]]
    rows += [[_cell(job, key) for key, _ in TABLE_COLUMNS] for job in described]
    widths = [max(len(row[n]) for row in rows) for n in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    if not described:
        lines.append("(no jobs match)")
    return "\n".join(lines) + "\n"


def _selected(args, settings) -> list[int]:
    if args.job_ids:
        for job_id in args.job_ids:
            jobs.get(job_id)
        return list(args.job_ids)
    return [job.job_id for job in recovery.list_jobs(
        running=True, older_than=_stale_after(args, settings))]


def _each_selected(args, settings, act) -> int:
    """Apply ``act(job)`` to every selected job; print what changed; 1 if any was refused."""
    result, refused = [], 0
    for job_id in _selected(args, settings):
        try:
            act(jobs.get(job_id))
        except AdminRefused as err:
            logger.error("%s", err)
            refused += 1
            continue
        result.append(recovery.describe(jobs.get(job_id), settings.ingest.stale_after))
    _print(result)
    return 1 if refused else 0


def cmd_requeue(args, settings, enqueue) -> int:
    """Reset jobs to OK and queue them again; file ids already given are kept."""

    def requeue(job) -> None:
        if job.complete and job.state == jobs.OK:
            raise AdminRefused(f"job {job.job_id} finished OK; not queueing it again "
                               "(`retry --force` ingests it again)")
        if _running(job) and recovery.owner_alive(job.owner, job.updated,
                                                  settings.ingest.stale_after):
            raise AdminRefused(f"job {job.job_id} is being run by {job.owner}; not queueing "
                               "it twice")
        if not job.path or not os.path.isfile(job.path):
            raise AdminRefused(f"job {job.job_id}: its bundle {job.path} is not on the volume; "
                               "use `fail` instead, or `retry --path FILE`")
        jobs.reset(job.job_id)
        if not submit(job.job_id, job.kind, enqueue):
            logger.warning("the broker did not take job %s; it waits and the frontend retries "
                           "it", job.job_id)

    return _each_selected(args, settings, requeue)


def cmd_fail(args, settings) -> int:
    """Mark jobs FAILED; remove partial files they left on the volume (not their bundles)."""
    def fail(job) -> None:
        if job.complete:
            raise AdminRefused(f"job {job.job_id} has already finished ({job.state}); "
                               "leaving it")
        jobs.fail(job.job_id, job.task, args.message)
        recovery.remove_leftovers(settings.ingest.volume_path, job.job_id)

    return _each_selected(args, settings, fail)


def cmd_recover(args, settings, enqueue) -> int:
    """What the frontend does every few seconds, once, from the command line."""
    _print(recovery.sweep(enqueue, settings.ingest))
    return 0


def cmd_token(args, settings) -> int:
    """Create, list or revoke API tokens."""
    if args.token_command == "create":
        row, secret = auth.create_token(args.user)
        logger.info("token %s (%s) for %s created; it is shown only now, keep it secret",
                    row.token_id, row.prefix, row.user)
        sys.stdout.write(secret + "\n")
    elif args.token_command == "list":
        _print(auth.list_tokens(args.user))
    else:
        _print(auth.revoke_token(args.token))
    return 0


def cmd_keys(args, _settings) -> int:
    """Print the receipt keys (after making a new one with --rotate)."""
    if args.rotate:
        receipts.create_key()
    _print({"algorithm": receipts.ALGORITHM, "keys": receipts.public_keys()})
    return 0


def cmd_verify_receipt(args, settings) -> int:
    """Check a receipt's signature (and the archived files): 0 when everything holds."""
    try:
        with open(args.receipt, encoding="utf-8") as handle:
            envelope = json.load(handle)
        if args.public_key:
            with open(args.public_key, encoding="ascii") as handle:
                public_pem = handle.read()
        else:
            key = receipts.SigningKey.get_or_none(
                receipts.SigningKey.key_id == str(envelope.get("key_id")))
            if key is None:
                raise receipts.ReceiptError(f"no key {envelope.get('key_id')!r} on this service: "
                                            "pass --public-key")
            public_pem = key.public_pem
        document = receipts.verify(envelope, public_pem)
    except (OSError, ValueError, AttributeError, receipts.ReceiptError) as err:
        print(f"{args.receipt}: NOT VALID: {err}")
        return 1
    print(f"{args.receipt}: signature valid: job {document['job_id']}, "
          f"{document['file_count']} files, {document['total_bytes']} bytes")
    if not args.against_archive:
        return 0
    problems = receipts.audit(document, archive_from_settings(settings))
    for line in problems:
        print(f"DIFFERS: {line}")
    print(f"{len(document['files']) - len(problems)} of {len(document['files'])} archived files "
          "match the receipt")
    return 1 if problems else 0


COMMANDS = {"job": cmd_job, "dbsync": cmd_dbsync, "dbchk": cmd_dbchk, "retry": cmd_retry,
            "files": cmd_files, "jobs": cmd_jobs, "requeue": cmd_requeue, "fail": cmd_fail,
            "recover": cmd_recover, "token": cmd_token, "keys": cmd_keys,
            "verify-receipt": cmd_verify_receipt}
QUEUEING = {"retry", "requeue", "recover"}  # the commands that hand jobs to the broker


def main(argv=None) -> int:
    """Entry point of ``pacifica-ingest-cmd``."""
    args = build_parser().parse_args(argv)
    try:
        settings = startup.prepare(args.config, create_database=args.command == "dbsync")
    except schema.SchemaError as err:  # no database yet
        logger.error("%s", err)
        return 1
    if settings is None:
        return 2
    try:
        if args.command not in ("dbsync", "dbchk"):
            schema.check_at_start(settings.database)
        if args.command in QUEUEING:  # the composition root: the broker seam, built once
            return COMMANDS[args.command](args, settings, Enqueuer.from_settings(settings))
        return COMMANDS[args.command](args, settings)
    except (IngestError, schema.SchemaError, auth.AuthError) as err:
        logger.error("%s", err)
        return 1
    finally:
        db.database_proxy.close()


if __name__ == "__main__":
    sys.exit(main())
