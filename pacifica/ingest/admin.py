"""``pacifica-ingest-cmd``: administer jobs and the database schema."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from . import catalog, db, jobs, recovery, schema, startup
from .errors import JobNotFound
from .queue import Enqueuer, make_celery, submit

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

    files = commands.add_parser("files", help="list what a job ingested (embedded catalog)")
    files.add_argument("--job-id", "--job_id", dest="job_id", type=job_id_argument,
                       required=True)

    listing = commands.add_parser("jobs", help="list jobs by state and age (find stuck ones)")
    listing.add_argument("--state", choices=(jobs.OK, jobs.FAILED))
    listing.add_argument("--queue-state", choices=(jobs.RECEIVING, jobs.WAITING, jobs.QUEUED))
    listing.add_argument("--older-than", type=float, metavar="SECONDS",
                         help="only jobs not updated for this many seconds")
    listing.add_argument("--running", action="store_true", help="only jobs not finished yet")
    listing.add_argument("--stale", action="store_true",
                         help="only running jobs without progress for [ingest] stale_after")
    listing.add_argument("--limit", type=int, default=1000)

    requeue = commands.add_parser("requeue", help="queue jobs again, keeping their file ids")
    _add_selection(requeue)

    fail = commands.add_parser("fail", help="mark jobs FAILED with a message")
    _add_selection(fail)
    fail.add_argument("--message", default="stopped by an administrator",
                      help="what clients will read in 'exception'")

    commands.add_parser("recover", help="one pass of the frontend's sweep: fail uploads a "
                                        "dead frontend left, queue again jobs a dead worker lost")
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


def cmd_retry(args, settings) -> int:
    """Reset a job and queue it again."""
    job = jobs.get(args.job_id)
    path = os.path.abspath(args.path) if args.path else job.path
    if not path or not os.path.isfile(path):
        raise SystemExit(f"no bundle to retry: {path or 'the job has no path'} is not a file "
                         "(give --path)")
    kind = jobs.KIND_MOVE if args.move else job.kind
    jobs.reset(args.job_id, path=path)
    jobs.set_fields(args.job_id, kind=kind, file_id_start=None, file_count=None)
    enqueue = Enqueuer(make_celery(settings), settings.celery.queue_name)
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
    _print([recovery.describe(job, stale_after) for job in found])
    return 0


def _selected(args, settings) -> list[int]:
    if args.job_ids:
        for job_id in args.job_ids:
            jobs.get(job_id)
        return list(args.job_ids)
    return [job.job_id for job in recovery.list_jobs(
        running=True, older_than=_stale_after(args, settings))]


def cmd_requeue(args, settings) -> int:
    """Reset jobs to OK and queue them again; file ids already given are kept."""
    enqueue = Enqueuer(make_celery(settings), settings.celery.queue_name)
    result = []
    for job_id in _selected(args, settings):
        job = jobs.get(job_id)
        if job.complete and job.state == jobs.OK:
            logger.warning("job %s finished OK; not queueing it again", job_id)
            continue
        if not job.path or not os.path.isfile(job.path):
            logger.error("job %s: its bundle %s is not on the volume; use `fail` instead",
                         job_id, job.path)
            continue
        jobs.reset(job_id)
        if not submit(job_id, job.kind, enqueue):
            logger.warning("the broker did not take job %s; it waits and the frontend retries "
                           "it", job_id)
        result.append(recovery.describe(jobs.get(job_id), settings.ingest.stale_after))
    _print(result)
    return 0


def cmd_fail(args, settings) -> int:
    """Mark jobs FAILED; remove partial files they left on the volume (not their bundles)."""
    result = []
    for job_id in _selected(args, settings):
        job = jobs.get(job_id)
        if job.complete:
            logger.warning("job %s is already complete (%s); leaving it", job_id, job.state)
            continue
        jobs.fail(job_id, job.task, args.message)
        recovery.remove_leftovers(settings.ingest.volume_path, job_id)
        result.append(recovery.describe(jobs.get(job_id), settings.ingest.stale_after))
    _print(result)
    return 0


def cmd_recover(args, settings) -> int:
    """What the frontend does every few seconds, once, from the command line."""
    stale_after = settings.ingest.stale_after
    enqueue = Enqueuer(make_celery(settings), settings.celery.queue_name)
    failed = recovery.fail_abandoned_uploads(settings.ingest.volume_path, stale_after)
    requeued = recovery.requeue_lost_jobs(enqueue, stale_after)
    _print({"failed_uploads": failed, "requeued": requeued})
    return 0


COMMANDS = {"job": cmd_job, "dbsync": cmd_dbsync, "dbchk": cmd_dbchk, "retry": cmd_retry,
            "files": cmd_files, "jobs": cmd_jobs, "requeue": cmd_requeue, "fail": cmd_fail,
            "recover": cmd_recover}


def main(argv=None) -> int:
    """Entry point of ``pacifica-ingest-cmd``."""
    args = build_parser().parse_args(argv)
    settings = startup.prepare(args.config)
    if settings is None:
        return 2
    try:
        if args.command not in ("dbsync", "dbchk"):
            schema.require_compatible()
        return COMMANDS[args.command](args, settings)
    except (JobNotFound, schema.SchemaError) as err:
        logger.error("%s", err)
        return 1
    finally:
        db.database_proxy.close()


if __name__ == "__main__":
    sys.exit(main())
