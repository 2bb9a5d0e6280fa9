"""Pages for people: ``/jobs`` (my jobs, live), ``/jobs/N`` (one job), ``/upload`` (GET: a form).

Server-rendered HTML that reads fine without JavaScript; a small script (static/ingest.js)
keeps running jobs' progress live by polling ``/get_state`` and drives browser uploads through
the tus endpoint with tus-js-client (vendored in static/, so a fresh machine needs no npm).
No external fonts or CDNs; every value from a job or a bundle is HTML-escaped.
"""
from __future__ import annotations

import datetime
import html
import os

import cherrypy

from .. import catalog, jobs, timeline
from ..jobs import Job
from .errors import json_errors, parse_job_id
from .identity import Authenticated

STATIC = os.path.join(os.path.dirname(__file__), "static")
LIST_LIMIT = 200
PAGE_FILES = 1000  # a job page lists this many files; the rest via GET /get_files pages


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _more_files(job_id: int, more: int) -> str:
    """Where to find the files a job page does not list."""
    if more <= 0:
        return ""
    return (f'<p class="more">… and {more} more: <a href="/get_files?job_id={job_id}&amp;'
            f'offset={PAGE_FILES}&amp;limit=10000">GET /get_files?job_id={job_id}'
            f'&amp;offset={PAGE_FILES}</a> and on.</p>')


def _size(count) -> str:
    if count is None:
        return "–"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(count)


def _took(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return "under 1 s" if seconds < 1 else f"{seconds:.0f} s"


def _age(created) -> str:
    if not isinstance(created, datetime.datetime):
        return ""
    seconds = int((jobs.utcnow() - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def page(title: str, body: str, user: str) -> str:
    """A whole page: header with navigation and the user, then the body."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · Pacifica Ingest</title>
<link rel="stylesheet" href="/static/ingest.css"></head>
<body><header><nav aria-label="main"><a href="/jobs">Jobs</a> <a href="/upload">Upload</a></nav>
<span class="who">signed in as <strong>{_e(user)}</strong></span></header>
<main id="main"><h1>{_e(title)}</h1>
{body}
</main>
<script src="/static/tus.min.js"></script><script src="/static/ingest.js"></script>
</body></html>"""


def _state_class(job: Job) -> str:
    if job.state == jobs.FAILED:
        return "failed"
    return "done" if job.complete else "running"


def _progress(job: Job) -> str:
    percent = 100.0 if job.complete else float(job.task_percent or 0.0)
    return (f'<progress max="100" value="{percent:.1f}" aria-label="job {job.job_id} '
            f'progress">{percent:.1f} %</progress> <span class="pct">{percent:.1f} %</span>')


class JobPages(Authenticated):
    """``/jobs`` and ``/jobs/<id>``."""

    exposed = True

    @json_errors
    def GET(self, job_id=None, state=None, **_params):  # pylint: disable=invalid-name
        """The list, or one job."""
        identity = self.identity()
        cherrypy.response.headers["Content-Type"] = "text/html; charset=utf-8"
        if job_id is not None:
            return self._one(parse_job_id(job_id), identity).encode("utf-8")
        return self._list(identity, state).encode("utf-8")

    @staticmethod
    def _list(identity, state) -> str:
        query = Job.select()
        if not identity.admin:
            query = query.where(Job.user == identity.user)
        if state in (jobs.OK, jobs.FAILED):
            query = query.where(Job.state == state)
        found = list(query.order_by(Job.job_id.desc()).limit(LIST_LIMIT))
        options = "".join(
            f'<option value="{value}"{" selected" if state == value else ""}>{label}</option>'
            for value, label in (("", "all"), (jobs.OK, "OK"), (jobs.FAILED, "FAILED")))
        rows = "".join(
            f'<tr class="{_state_class(job)}" data-job="{job.job_id}" '
            f'data-complete="{str(bool(job.complete)).lower()}">'
            f'<td><a href="/jobs/{job.job_id}">{job.job_id}</a></td>'
            f'<td class="state">{_e(job.state)}</td><td class="task">{_e(job.task)}</td>'
            f'<td>{_progress(job)}</td><td>{_size(job.bytes_received)}</td>'
            f'<td>{_e(job.file_count if job.file_count is not None else "–")}</td>'
            f'<td>{_e(_age(job.created))}</td></tr>' for job in found)
        table = (f'<table class="jobs"><caption>{len(found)} jobs, newest first'
                 f'{" (all users)" if identity.admin else ""}</caption><thead><tr>'
                 '<th scope="col">Job</th><th scope="col">State</th><th scope="col">Step</th>'
                 '<th scope="col">Progress</th><th scope="col">Size</th>'
                 '<th scope="col">Files</th><th scope="col">Created</th></tr></thead>'
                 f'<tbody>{rows}</tbody></table>' if found else
                 '<p>No jobs yet. <a href="/upload">Upload a bundle</a>.</p>')
        body = ('<form method="get" action="/jobs" class="filter"><label for="state">State'
                f'</label> <select id="state" name="state">{options}</select> '
                f'<button type="submit">Filter</button></form>{table}')
        return page("Jobs", body, identity.user)

    @staticmethod
    def _one(job_id: int, identity) -> str:
        job = jobs.get(job_id, identity.may_see)
        steps = "".join(
            f'<tr><td>{_e(step["step"])}</td><td>{_e(step["started"])}</td>'
            f'<td>{_e(step["ended"] or "–")}</td>'
            f'<td>{_took(step["seconds"])}</td></tr>'
            for step in timeline.of_job(job_id))
        files = catalog.files_of(job_id, 0, PAGE_FILES)
        more = catalog.file_count(job_id) - len(files) if len(files) == PAGE_FILES else 0
        file_rows = "".join(
            f'<tr><td>{_e((entry["subdir"] + "/" if entry["subdir"] else "") + entry["name"])}'
            f'</td><td>{_size(entry["size"])}</td><td>{_e(entry["hashtype"])}</td>'
            f'<td class="hash">{_e(entry["hashsum"])}</td><td>{_e(entry["_id"])}</td></tr>'
            for entry in files)
        error = (f'<section class="error" role="alert"><h2>Why it failed</h2>'
                 f'<pre>{_e(job.exception)}</pre></section>' if job.state == jobs.FAILED else "")
        body = f"""<section class="summary {_state_class(job)}" data-job="{job.job_id}"
 data-complete="{str(bool(job.complete)).lower()}" data-reload="true">
<p>State <strong class="state">{_e(job.state)}</strong>, step
<strong class="task">{_e(job.task)}</strong></p><p>{_progress(job)}</p>
<p>Created {_e(job.created)}, updated {_e(job.updated)}; {_size(job.bytes_received)} received.</p>
</section>{error}
<h2>Steps</h2><table class="steps"><thead><tr><th scope="col">Step</th>
<th scope="col">Began</th><th scope="col">Ended</th><th scope="col">Took</th></tr></thead>
<tbody>{steps}</tbody></table>
<h2>Files</h2>{('<table class="files"><thead><tr><th scope="col">Name</th><th scope="col">Size'
 '</th><th scope="col">Hash type</th><th scope="col">Verified hash</th><th scope="col">'
 'Archive id</th></tr></thead><tbody>' + file_rows + '</tbody></table>') if files
 else '<p>No files recorded (yet).</p>'}{_more_files(job_id, more)}"""
        return page(f"Job {job_id}", body, identity.user)


UPLOAD_FORM = """<form id="upload" class="upload" novalidate>
<div id="drop" class="drop" tabindex="0" role="button"
 aria-describedby="drop-help">Drop files or a folder here</div>
<p id="drop-help">…or choose them:
<label for="files">files</label> <input id="files" name="files" type="file" multiple>
<label for="folder">a folder</label> <input id="folder" name="folder" type="file"
 webkitdirectory multiple></p>
<fieldset><legend>Transaction</legend>
<p><label for="submitter">Submitter</label> <input id="submitter" name="submitter" required></p>
<p><label for="project">Project</label> <input id="project" name="project" required></p>
<p><label for="instrument">Instrument</label> <input id="instrument" name="instrument" required></p>
<p><label for="keyvalues">Key/values, one <code>key=value</code> per line</label><br>
<textarea id="keyvalues" name="keyvalues" rows="3" cols="40"></textarea></p>
</fieldset>
<button id="start" type="submit">Upload</button>
</form>
<section id="status" aria-live="polite">
<p id="message"></p>
<p><progress id="total" max="100" value="0" aria-label="total progress"></progress>
<span id="total-text"></span></p>
<table id="per-file" class="files"><thead><tr><th scope="col">File</th><th scope="col">Size</th>
<th scope="col">Progress</th></tr></thead><tbody></tbody></table>
</section>
<noscript><p>Uploading from this page needs JavaScript; without it, POST the tar bundle to
/upload (see docs/PROTOCOL.md) or use <code>pacifica-ingest-upload</code>.</p></noscript>"""


def upload_page(user: str) -> bytes:
    """The browser upload form."""
    cherrypy.response.headers["Content-Type"] = "text/html; charset=utf-8"
    return page("Upload", UPLOAD_FORM, user).encode("utf-8")


def mount(root, identifier) -> dict:
    """Attach ``/jobs`` and the static files; the upload form is ``Upload.GET``."""
    root.jobs = JobPages(identifier)
    return {"/static": {"tools.staticdir.on": True, "tools.staticdir.dir": STATIC,
                        "tools.ingest_db.on": False,
                        "tools.expires.on": True, "tools.expires.secs": 3600}}
