"""``pacifica-ingest-cmd``: administer jobs and the database schema."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from . import catalog, db, jobs, logsetup, schema
from .config import ConfigError, load
from .errors import JobNotFound
from .queue import Enqueuer, make_celery, submit

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Sub-commands and their options (the original's names kept)."""
    parser = argparse.ArgumentParser(prog="pacifica-ingest-cmd",
                                     description="Administer Pacifica Ingest.")
    parser.add_argument("-c", "--config", default=os.environ.get("INGEST_CONFIG"),
                        help="INI settings file (default: $INGEST_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    job = commands.add_parser("job", help="set a job's state by hand (e.g. fail a stuck job)")
    job.add_argument("--job-id", "--job_id", dest="job_id", type=int, required=True)
    job.add_argument("--state", choices=(jobs.OK, jobs.FAILED))
    job.add_argument("--task", choices=[step.value for step in jobs.Step])
    job.add_argument("--task-percent", "--task_percent", dest="task_percent", type=float)
    job.add_argument("--exception", help="the message clients will see")

    commands.add_parser("dbsync", help="create or upgrade the database schema")
    dbchk = commands.add_parser("dbchk", help="check the schema is usable by this version")
    dbchk.add_argument("--equal", action="store_true", help="require exactly this version")

    retry = commands.add_parser("retry", help="ingest a bundle already on the volume again")
    retry.add_argument("--job-id", "--job_id", dest="job_id", type=int, required=True)
    retry.add_argument("--path", help="the bundle (or move JSON); default: the job's own")
    retry.add_argument("--move", action="store_true", help="the path is a move request")

    files = commands.add_parser("files", help="list what a job ingested (embedded catalog)")
    files.add_argument("--job-id", "--job_id", dest="job_id", type=int, required=True)
    return parser


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


COMMANDS = {"job": cmd_job, "dbsync": cmd_dbsync, "dbchk": cmd_dbchk, "retry": cmd_retry,
            "files": cmd_files}


def main(argv=None) -> int:
    """Entry point of ``pacifica-ingest-cmd``."""
    logsetup.configure()
    args = build_parser().parse_args(argv)
    try:
        settings = load(args.config)
    except ConfigError as err:
        logger.error("%s", err)
        return 2
    db.bind(settings.database)
    db.wait_for_database(settings.database)
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
