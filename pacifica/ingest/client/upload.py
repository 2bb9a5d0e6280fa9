"""Talk to an ingest server: send a bundle (one POST, or resumable tus chunks) and follow the job."""
from __future__ import annotations

import base64
import getpass
import hashlib
import json
import logging
import os
import socket
import ssl
import time
import urllib.parse
from typing import Callable

import requests
from urllib3.exceptions import NameResolutionError
from urllib3.util.retry import Retry

from .. import protocol
from .bundle_writer import OnBytes, SourceChanged, Window

logger = logging.getLogger(__name__)

RETRY_STATUSES = (423, 500, 502, 503, 504)
# Seconds between retries at most: ten retries then span about five minutes, longer than the
# server keeps a dead connection (socket_timeout), which holds its upload until it goes.
MAX_BACKOFF = 60.0
CONNECT_TIMEOUT = 10.0  # seconds to open a connection; the first one is never retried


class UploadFailed(Exception):
    """The server refused the upload or could not be reached; the message says why."""


class Unreachable(UploadFailed):
    """No connection to the server could be made (nothing was sent); not worth retrying."""


class LocalFileError(Exception):
    """A file being sent could not be read (deleted, shrunk, unreadable): fix it and run again."""


def _causes(err: BaseException):
    """The error and everything it wraps (requests -> urllib3 -> socket)."""
    seen, todo = set(), [err]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        yield item
        todo.extend([getattr(item, "reason", None), item.__cause__, item.__context__,
                     *[arg for arg in item.args if isinstance(arg, BaseException)]])


def explain_unreachable(url: str, err: Exception) -> str | None:
    """What went wrong before any byte reached ``url`` (None when the connection was made)."""
    causes = list(_causes(err))

    def first(*kinds):
        return next((c for c in causes if isinstance(c, kinds)), None)

    if first(NameResolutionError, socket.gaierror):
        return (f"cannot resolve the host name of {url}: check the spelling of --url "
                "(no request was sent)")
    tls = first(ssl.SSLError)
    if tls or first(requests.exceptions.SSLError):
        return (f"the TLS handshake with {url} failed ({tls or err}): if the server speaks "
                "plain HTTP use http://, else check its certificate (no request was sent)")
    if first(ConnectionRefusedError):
        return (f"nothing listens at {url} (connection refused): is the server running, and "
                "is the port right? `bash scripts/run.sh` starts one on http://127.0.0.1:8066")
    if isinstance(err, requests.ConnectTimeout):
        return (f"{url} did not accept a connection within {CONNECT_TIMEOUT:.0f} s: check the "
                "address and any firewall (no request was sent)")
    if isinstance(err, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return f"{url} is not a usable URL ({err}): give e.g. --url http://127.0.0.1:8066"
    return None


class _FileReads(Window):
    """A request body whose local read errors stay local: requests would report an OSError
    raised while sending as a broken connection."""

    def read(self, size: int = -1) -> bytes:
        try:
            return super().read(size)
        except OSError as err:
            named = getattr(err, "filename", None) or isinstance(err, SourceChanged)
            raise LocalFileError(f"{err}" if named else f"the bundle being sent: {err}") from err


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


def _key_header(key: str) -> dict:
    return {protocol.IDEMPOTENCY_KEY: key} if key else {}


def submission_key(fingerprint: str, url: str) -> str:
    """The Idempotency-Key of a bundle: the same bundle, user and server give the same key, so
    running the same command again after any failure never makes a second ingest."""
    who = getpass.getuser()
    return "piu-" + hashlib.sha256(f"{who}|{url}|{fingerprint}".encode("utf-8")).hexdigest()


class IngestClient:
    """One ingest server: ``url`` is its base, e.g. ``http://127.0.0.1:8066``."""

    def __init__(self, url: str, headers: dict | None = None, timeout: float = 60.0,
                 retries: int = 10, backoff: float = 1.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        # Bodies (a POSTed bundle, tus chunks) go through a session that never retries: a
        # stream cannot be sent twice, and a broken chunk resumes from the server's offset.
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        # Small requests are retried by urllib3 with backoff, once the server has answered.
        self.calls = requests.Session()
        self.calls.headers.update(headers or {})
        retry = Retry(total=retries, backoff_factor=backoff, backoff_max=MAX_BACKOFF,
                      status_forcelist=RETRY_STATUSES, allowed_methods=None,
                      raise_on_status=False, respect_retry_after_header=True)
        for prefix in ("http://", "https://"):
            self.calls.mount(prefix, requests.adapters.HTTPAdapter(max_retries=retry))

    def check(self) -> None:
        """``GET /`` once, before anything is hashed or sent: a server that cannot be reached
        fails at once (Unreachable) with the reason, instead of minutes of retries."""
        try:
            reply = self.session.get(self.url + "/", timeout=(CONNECT_TIMEOUT, self.timeout))
        except requests.RequestException as err:
            raise Unreachable(explain_unreachable(self.url, err)
                              or f"{self.url} could not be reached: {err}") from err
        logger.debug("GET %s/: %s %s", self.url, reply.status_code, reply.text[:200])

    # -- one POST ---------------------------------------------------------------------

    def post_bundle(self, stream, length: int, on_bytes: OnBytes | None = None,
                    path: str = protocol.UPLOAD_PATH, key: str = "") -> dict:
        """Stream the bundle in one request; return the job's state.

        With an Idempotency-Key, sending the same bundle again answers the job it made."""
        body = _FileReads(stream, 0, length, on_bytes)
        logger.debug("POST %s%s: %d bytes", self.url, path, length)
        headers = {"Content-Type": "application/octet-stream", **_key_header(key)}
        try:
            reply = self.session.post(self.url + path, data=body,
                                      timeout=(CONNECT_TIMEOUT, None), headers=headers)
        except requests.RequestException as err:
            unreachable = explain_unreachable(self.url, err)
            if unreachable:
                raise Unreachable(unreachable) from err
            raise UploadFailed(f"the upload to {self.url} broke off after "
                               f"{length - body.remaining} of {length} bytes: {err}; try "
                               "--resume, which picks up where a broken upload stopped") from err
        logger.debug("POST %s%s: %s", self.url, path, reply.status_code)
        if reply.status_code != 200:
            raise UploadFailed(f"the server refused the bundle: {_reason(reply)}")
        return reply.json()

    # -- resumable (tus) --------------------------------------------------------------

    def tus_upload(self, stream, length: int, chunk_size: int, on_offset: Callable[[int], None],
                   on_bytes: OnBytes | None = None, store: ResumeStore | None = None,
                   key: str = "", filename: str = "bundle.tar",
                   idempotency_key: str = "") -> int:
        """Send the bundle in PATCHes, resuming after breaks (and across runs); return the job id."""
        endpoint = self.url + protocol.TUS_PATH
        url = store.get(key) if store and key else None
        offset, job_id = (self._resume(url, length) if url else (None, None))
        if offset is None:
            url = self._create(endpoint, length, filename, idempotency_key)
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
                    url, data=_FileReads(stream, offset, count, on_bytes),
                    timeout=(CONNECT_TIMEOUT, self.timeout * 5),
                    headers=self._tus({"Content-Type": protocol.PATCH_CONTENT_TYPE,
                                       protocol.UPLOAD_OFFSET: str(offset)}))
                logger.debug("PATCH %s at byte %d (%d bytes): %s", url, offset, count,
                             reply.status_code)
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
            offset = int(reply.headers[protocol.UPLOAD_OFFSET])
            on_offset(offset)
            if reply.headers.get(protocol.JOB_ID):
                job_id = int(reply.headers[protocol.JOB_ID])
        if store and key:
            store.put(key, None)
        return job_id

    @staticmethod
    def _tus(headers: dict | None = None) -> dict:
        return {protocol.TUS_RESUMABLE: protocol.TUS_VERSION, **(headers or {})}

    def _create(self, endpoint: str, length: int, filename: str, idempotency_key: str = "") -> str:
        encoded = base64.b64encode(filename.encode("utf-8")).decode("ascii")
        reply = self._request("post", endpoint, headers=self._tus({
            protocol.UPLOAD_LENGTH: str(length), protocol.UPLOAD_METADATA: f"filename {encoded}",
            **_key_header(idempotency_key)}))
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
        if reply.status_code != 200 or int(reply.headers.get(protocol.UPLOAD_LENGTH, -1)) != length:
            logger.info("saved upload %s cannot be resumed (%s); starting a new one", url,
                        reply.status_code)
            return None, None
        job = reply.headers.get(protocol.JOB_ID)
        offset = int(reply.headers[protocol.UPLOAD_OFFSET])
        logger.info("resuming the upload at byte %d of %d (%s)", offset, length, url)
        return offset, int(job) if job else None

    def _offset(self, url: str) -> int:
        reply = self._request("head", url, headers=self._tus())
        if reply.status_code != 200:
            raise UploadFailed(f"the upload cannot be resumed: {_reason(reply)}")
        return int(reply.headers[protocol.UPLOAD_OFFSET])

    def _job_of(self, url: str) -> int:
        reply = self._request("head", url, headers=self._tus())
        if reply.status_code == 200 and reply.headers.get(protocol.JOB_ID):
            return int(reply.headers[protocol.JOB_ID])
        raise UploadFailed(f"all bytes arrived but the server names no job yet "
                           f"({_reason(reply)}); run the same command again shortly")

    # -- plumbing ---------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        """A small request, retried with backoff (urllib3) while the server is down or busy."""
        try:
            reply = self.calls.request(method, url, timeout=(CONNECT_TIMEOUT, self.timeout),
                                       **kwargs)
        except requests.RequestException as err:
            raise UploadFailed(f"{self.url} could not be reached (after {self.retries} "
                               f"retries): {explain_unreachable(self.url, err) or err}") from err
        logger.debug("%s %s: %s", method.upper(), url, reply.status_code)
        return reply

    def save_receipt(self, job_id: int, target: str) -> None:
        """Write a completed job's signed receipt to ``target`` as the server sends it,
        streamed, durably (temp file, fsync, rename): a receipt of a million files is
        never held whole."""
        reply = self._request("get", self.url + protocol.RECEIPT_PATH, params={"job_id": job_id},
                              stream=True)
        with reply:
            if reply.status_code != 200:
                raise UploadFailed(f"no receipt for job {job_id}: {_reason(reply)}")
            partial = target + ".part"
            try:
                with open(partial, "wb") as handle:
                    for piece in reply.iter_content(1 << 16):
                        handle.write(piece)
                    handle.flush()
                    os.fsync(handle.fileno())
            except requests.RequestException as err:
                os.unlink(partial)
                raise UploadFailed(f"the receipt of job {job_id} was cut off: {err}; run "
                                   "the same command again to fetch it") from err
            os.replace(partial, target)

    def state(self, job_id: int) -> dict:
        """The job state object."""
        reply = self._request("get", self.url + protocol.GET_STATE_PATH, params={"job_id": job_id})
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
            if state.get("complete") or state.get("state") == protocol.FAILED:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"job {job_id} is not done after {timeout:.0f} s; it was at step "
                    f"'{state.get('task')}' ({state.get('task_percent')} % of that step) and "
                    f"goes on on the server: follow it with GET "
                    f"{self.url}{protocol.GET_STATE_PATH}?job_id={job_id}, or wait longer "
                    "with --timeout (0 = no limit)")
            time.sleep(interval)


def task_position(state: dict) -> float:
    """How far a job is, in task-percent units over all tasks (for one progress bar)."""
    task = state.get("task")
    index = protocol.UPLOAD_STEPS.index(task) if task in protocol.UPLOAD_STEPS else 0
    try:
        percent = float(state.get("task_percent") or 0)
    except ValueError:
        percent = 0.0
    return index * 100.0 + min(max(percent, 0.0), 100.0)
