"""Talk to an ingest server: send a bundle (one POST, or resumable tus chunks) and follow the job."""
from __future__ import annotations

import base64
import json
import logging
import os
import time
import urllib.parse
from typing import Callable

import requests

from .bundle_writer import Progress, Window

logger = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
JOB_HEADER = "Ingest-Job-Id"
# The tasks of an upload job, in order (PROTOCOL.md).
UPLOAD_TASKS = ("UPLOADING", "open tar", "load metadata", "Policy Validation", "ingest files",
                "ingest metadata")
RETRY_STATUSES = (423, 500, 502, 503, 504)
# Seconds between retries at most: ten retries then span about five minutes, longer than the
# server keeps a dead connection (socket_timeout), which holds its upload until it goes.
MAX_BACKOFF = 60.0


class UploadFailed(Exception):
    """The server refused the upload or could not be reached; the message says why."""


def _reason(reply: requests.Response) -> str:
    try:
        body = reply.json()
        message = body.get("message") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return f"{reply.status_code} {reply.reason}: {message or reply.text.strip()[:500]}"


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL (the default port spelled out)."""
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


class ResumeStore:
    """Where a resumable upload's address is kept between runs: one small JSON file."""

    def __init__(self, path: str):
        self.path = path

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return json.load(handle)
        except (FileNotFoundError, ValueError):
            return {}

    def get(self, key: str) -> str | None:
        """The upload URL saved for a bundle, if any."""
        return self._read().get(key)

    def put(self, key: str, url: str | None) -> None:
        """Save (or with None, forget) the upload URL of a bundle."""
        entries = self._read()
        if url is None:
            entries.pop(key, None)
        else:
            entries[key] = url
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(entries, handle, indent=1)
        os.replace(self.path + ".tmp", self.path)


class IngestClient:
    """One ingest server: ``url`` is its base, e.g. ``http://127.0.0.1:8066``."""

    def __init__(self, url: str, headers: dict | None = None, timeout: float = 60.0,
                 retries: int = 10, backoff: float = 1.0):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    # -- one POST ---------------------------------------------------------------------

    def post_bundle(self, stream, length: int, on_bytes: Progress | None = None,
                    path: str = "/upload") -> dict:
        """Stream the bundle in one request; return the new job's state."""
        body = Window(stream, 0, length, on_bytes)
        try:
            reply = self.session.post(self.url + path, data=body, timeout=(self.timeout, None),
                                      headers={"Content-Type": "application/octet-stream"})
        except requests.RequestException as err:
            raise UploadFailed(f"the upload to {self.url} broke off: {err}; try --resume, which "
                               "picks up where a broken upload stopped") from err
        if reply.status_code != 200:
            raise UploadFailed(f"the server refused the bundle: {_reason(reply)}")
        return reply.json()

    # -- resumable (tus) --------------------------------------------------------------

    def tus_upload(self, stream, length: int, chunk_size: int, on_offset: Callable[[int], None],
                   on_bytes: Progress | None = None, store: ResumeStore | None = None,
                   key: str = "", filename: str = "bundle.tar") -> int:
        """Send the bundle in PATCHes, resuming after breaks (and across runs); return the job id."""
        endpoint = self.url + "/files/"
        url = store.get(key) if store and key else None
        offset, job_id = (self._resume(url, length) if url else (None, None))
        if offset is None:
            url = self._create(endpoint, length, filename)
            offset = 0
            if store and key:
                store.put(key, url)
        on_offset(offset)
        failures = 0
        while job_id is None:
            if offset >= length:
                job_id = self._job_of(url)
                break
            count = min(chunk_size, length - offset)
            try:
                reply = self.session.patch(
                    url, data=Window(stream, offset, count, on_bytes),
                    timeout=(self.timeout, self.timeout * 5),
                    headers=self._tus({"Content-Type": "application/offset+octet-stream",
                                       "Upload-Offset": str(offset)}))
                if reply.status_code in RETRY_STATUSES + (409,):  # 409: offsets disagree
                    raise UploadFailed(_reason(reply))
            except (requests.ConnectionError, requests.Timeout, UploadFailed) as err:
                failures += 1
                if failures > self.retries:
                    raise UploadFailed(f"gave up after {self.retries} retries: {err}; run the "
                                       "same command again to resume") from err
                wait = min(self.backoff * 2 ** (failures - 1), MAX_BACKOFF)
                logger.warning("upload interrupted at byte %d (%s); resuming in %.1f s",
                               offset, err, wait)
                time.sleep(wait)
                offset = self._offset(url)
                on_offset(offset)
                continue
            if reply.status_code != 204:
                raise UploadFailed(f"the server refused a chunk: {_reason(reply)}")
            failures = 0
            offset = int(reply.headers["Upload-Offset"])
            on_offset(offset)
            if reply.headers.get(JOB_HEADER):
                job_id = int(reply.headers[JOB_HEADER])
        if store and key:
            store.put(key, None)
        return job_id

    @staticmethod
    def _tus(headers: dict | None = None) -> dict:
        return {"Tus-Resumable": TUS_VERSION, **(headers or {})}

    def _create(self, endpoint: str, length: int, filename: str) -> str:
        encoded = base64.b64encode(filename.encode("utf-8")).decode("ascii")
        reply = self._request("post", endpoint, headers=self._tus({
            "Upload-Length": str(length), "Upload-Metadata": f"filename {encoded}"}))
        if reply.status_code != 201:
            raise UploadFailed(f"the server refused the upload: {_reason(reply)}")
        return self._upload_url(reply.headers.get("Location"))

    def _upload_url(self, location: str | None) -> str:
        """The new upload's URL: its Location resolved against the server, never elsewhere."""
        if not location:
            raise UploadFailed("the server created the upload but named no Location for it")
        try:
            url = urllib.parse.urljoin(self.url + "/", location)
            foreign = _origin(url) != _origin(self.url)
        except ValueError:  # e.g. a port that is no number
            foreign = True
        if foreign:
            raise UploadFailed(f"the server named {location[:200]!r} as the upload's address, "
                               f"which is not on {self.url}; refusing to send the bundle there "
                               "(the server's public_url setting may be wrong)")
        return url

    def _resume(self, url: str, length: int) -> tuple[int | None, int | None]:
        """Offset and job id of a saved upload, or (None, None) when it must start over."""
        reply = self._request("head", url, headers=self._tus())
        if reply.status_code != 200 or int(reply.headers.get("Upload-Length", -1)) != length:
            logger.info("saved upload %s cannot be resumed (%s); starting a new one", url,
                        reply.status_code)
            return None, None
        job = reply.headers.get(JOB_HEADER)
        logger.info("resuming upload %s at byte %s", url, reply.headers["Upload-Offset"])
        return int(reply.headers["Upload-Offset"]), int(job) if job else None

    def _offset(self, url: str) -> int:
        reply = self._request("head", url, headers=self._tus())
        if reply.status_code != 200:
            raise UploadFailed(f"the upload cannot be resumed: {_reason(reply)}")
        return int(reply.headers["Upload-Offset"])

    def _job_of(self, url: str) -> int:
        reply = self._request("head", url, headers=self._tus())
        if reply.status_code == 200 and reply.headers.get(JOB_HEADER):
            return int(reply.headers[JOB_HEADER])
        raise UploadFailed(f"all bytes arrived but the server names no job yet "
                           f"({_reason(reply)}); run the same command again shortly")

    # -- plumbing ---------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        """A small request, retried with backoff while the server is unreachable or busy."""
        for attempt in range(self.retries + 1):
            try:
                reply = self.session.request(method, url, timeout=self.timeout, **kwargs)
                if reply.status_code not in RETRY_STATUSES or attempt == self.retries:
                    return reply
                problem = _reason(reply)
            except (requests.ConnectionError, requests.Timeout) as err:
                if attempt == self.retries:
                    raise UploadFailed(f"{self.url} could not be reached: {err}") from err
                problem = str(err)
            wait = min(self.backoff * 2 ** attempt, MAX_BACKOFF)
            logger.warning("%s %s: %s; retrying in %.1f s", method.upper(), url, problem, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")

    def state(self, job_id: int) -> dict:
        """The job state object."""
        reply = self._request("get", self.url + "/get_state", params={"job_id": job_id})
        if reply.status_code != 200:
            raise UploadFailed(f"the state of job {job_id} could not be read: {_reason(reply)}")
        return reply.json()

    def wait(self, job_id: int, on_state: Callable[[dict], None], interval: float = 1.0,
             timeout: float | None = None) -> dict:
        """Poll the job until it is complete or FAILED (or ``timeout`` seconds pass)."""
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            state = self.state(job_id)
            on_state(state)
            if state.get("complete") or state.get("state") == "FAILED":
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is not done after {timeout:.0f} s: "
                                   f"{state.get('task')} {state.get('task_percent')} %")
            time.sleep(interval)


def task_position(state: dict) -> float:
    """How far a job is, in task-percent units over all tasks (for one progress bar)."""
    task = state.get("task")
    index = UPLOAD_TASKS.index(task) if task in UPLOAD_TASKS else 0
    try:
        percent = float(state.get("task_percent") or 0)
    except ValueError:
        percent = 0.0
    return index * 100.0 + min(max(percent, 0.0), 100.0)
