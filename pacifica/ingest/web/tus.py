"""Resumable uploads over the tus protocol 1.0.0 (core, creation, termination, checksum, expiration).

``POST /files/`` creates an upload of a declared length, ``PATCH /files/<id>`` appends at an
offset, ``HEAD /files/<id>`` tells the offset after a break, ``DELETE`` abandons it.  When the
last byte lands the upload becomes an ingest job exactly like a POSTed bundle; the job id is
then on every answer about the upload (header ``Ingest-Job-Id``) and ``/get_state`` follows it.

The job is created when the last byte lands, not when the upload is created: a tus upload may
pause for hours or be abandoned, and a job must not sit in UPLOADING meanwhile (or be failed
by expiry), nor spend a job id on bytes that never come.  Until then the upload's progress is
its offset, which the client reads with HEAD.  Landing happens in one place, ``_land``, run by
the PATCH that brings the last byte and, after a crash in between, by the sweeper; HEAD only
reads.  Whether an upload has landed is its job row's say (queued, no longer receiving).

A creation reserves its declared length (see reservations.py): the volume cannot be promised
more than it holds, nor one user more than ``tus_user_quota``.
"""
from __future__ import annotations

import email.utils
import hashlib
import logging
import os

import cherrypy

from .. import idempotency, jobs
from ..auth import Identity
from ..periodic import Periodic
from ..errors import UploadError
from ..protocol import (CALLBACK_URL, IDEMPOTENCY_KEY, JOB_ID, PATCH_CONTENT_TYPE,
                        TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_EXTENSIONS, TUS_MAX_SIZE,
                        TUS_PATH, TUS_RESUMABLE, TUS_VERSION, TUS_VERSION_HEADER,
                        UPLOAD_CHECKSUM, UPLOAD_DEFER_LENGTH, UPLOAD_EXPIRES, UPLOAD_LENGTH,
                        UPLOAD_METADATA, UPLOAD_OFFSET)
from . import cors
from .errors import json_errors
from .framing import body_length
from .identity import Authenticated
from .identity import Identifier
from .intake import Intake
from .limits import UploadSlots
from .reservations import Reservations
from .tus_store import (CHECKSUM_ALGORITHMS, TusStore, UploadInfo, not_found, parse_checksum,
                        parse_metadata)

logger = logging.getLogger(__name__)

HEAD_WAIT = 3.0  # seconds HEAD waits for a PATCH on the same upload to finish


class ResumableUploads:
    """The tus upload life cycle on top of the store and the intake (no HTTP here)."""

    def __init__(self, store: TusStore, intake: Intake, user_quota: int = 0,
                 max_metadata: int = 0):
        self.store = store
        self.intake = intake
        self.reservations = Reservations(store, intake.staging, user_quota)
        self.max_metadata = max_metadata

    def create(self, length: int, user: str, metadata: str = "",
               claim: idempotency.Claim | None = None, callback: str = "") -> UploadInfo:
        """Check the limits (as for a POSTed bundle), reserve the length, start an empty upload.

        With an Idempotency-Key the upload it already names is the answer."""
        if length <= 0:
            raise UploadError(f"{UPLOAD_LENGTH} must be positive: a bundle is never empty",
                              status=400)
        parse_metadata(metadata, self.max_metadata)
        earlier = self._named_by(user, claim)
        if earlier is not None:
            return earlier
        with self.reservations.reserve(length, user):
            info = self.store.create(length, user, metadata, callback)
        if claim is not None:
            try:
                idempotency.bind(user, claim, self.intake.idempotency_ttl,
                                 upload_id=info.upload_id)
            except idempotency.Replayed as replay:  # a concurrent creation won
                self.store.remove(info.upload_id)
                return self.store.load(replay.upload_id)
        logger.info("tus upload %s created: %d bytes for %s", info.upload_id, length, user)
        return info

    def _named_by(self, user: str, claim: idempotency.Claim | None) -> UploadInfo | None:
        """The live upload an Idempotency-Key already names, if any."""
        row = claim and idempotency.earlier(user, claim, self.intake.idempotency_ttl)
        if not row or not row.upload_id:
            return None
        try:
            return self.store.load(row.upload_id)
        except UploadError:  # expired or deleted since: the key is free again
            idempotency.forget(user, claim.key)
            return None

    def status(self, upload_id: str, user: Identity) -> tuple[UploadInfo, int]:
        """The upload and its offset (reads only: a complete upload is landed by its PATCH).

        Waits a little for a PATCH that is finishing (a client that broke off and asks at
        once should learn about every byte that arrived); past that -- a PATCH whose client
        vanished holds the upload until its socket times out -- the offset is read as it stands.
        """
        try:
            with self.store.locked(upload_id, wait=HEAD_WAIT):
                info = self._live(upload_id, user)
                return info, self.store.offset(info)
        except UploadError as err:
            if err.status != 423:
                raise
        info = self._live(upload_id, user)
        try:
            return info, self.store.offset(info)
        except UploadError:  # it landed just now: the description says so
            info = self._live(upload_id, user)
            return info, self.store.offset(info)

    def append(self, upload_id: str, user: Identity, offset: int, stream, count: int | None,
               checksum: tuple[str, bytes] | None) -> tuple[UploadInfo, int]:
        """Write a chunk at ``offset``; when it completes the upload, hand it to the intake."""
        with self.store.locked(upload_id):
            info = self._live(upload_id, user)
            current = self.store.offset(info)
            if offset != current:
                raise UploadError(f"{UPLOAD_OFFSET} is {offset} but the upload has {current} "
                                  "bytes; ask HEAD for the offset and resume from there",
                                  status=409)
            if count is not None and offset + count > info.length:
                raise UploadError(f"the chunk of {count} bytes at offset {offset} runs past the "
                                  f"upload's length of {info.length} bytes", status=413)
            if current < info.length:  # its own rest was reserved: check the volume still has it
                self.intake.staging.check_room(info.length - current, promised=0)
                current = self.store.append(info, stream, offset, count, checksum)
            if current == info.length and not self.landed(info):
                self._land(info)
            return info, current

    def delete(self, upload_id: str, user: Identity) -> None:
        """Abandon an upload (a landed one only loses its record: its job goes on)."""
        with self.store.locked(upload_id):
            info = self.store.load(upload_id)
            _check_owner(info, user)
            self.store.remove(upload_id)
        logger.info("tus upload %s deleted by %s", upload_id, user.user)

    def sweep(self, now: float | None = None) -> int:
        """Land complete uploads that a crash left behind and remove expired ones; return removed."""
        removed = 0
        for upload_id in self.store.ids():
            try:
                with self.store.locked(upload_id, wait=0):
                    removed += self._sweep_one(upload_id, now)
            except UploadError as err:
                if err.status != 404:  # 423: in use right now, so not abandoned
                    logger.debug("sweep skipped %s: %s", upload_id, err)
            except Exception:  # pylint: disable=broad-except
                logger.exception("sweep could not handle tus upload %s", upload_id)
        return removed

    def _sweep_one(self, upload_id: str, now: float | None) -> int:
        expired = self.store.is_expired(upload_id, now)
        try:
            info = self.store.load(upload_id)
        except UploadError:  # a crash between creating the lock and the description
            if expired:
                self.store.remove(upload_id)
                return 1
            return 0
        if self.store.offset(info) == info.length and not self.landed(info):
            self._land(info)
        elif expired:
            logger.info("tus upload %s expired after %.0f s idle at %d of %d bytes; removed",
                        upload_id, self.store.expiry, self.store.offset(info), info.length)
            self.store.remove(upload_id)
            return 1
        return 0

    def _live(self, upload_id: str, user: Identity) -> UploadInfo:
        info = self.store.load(upload_id)
        _check_owner(info, user)
        if self.store.is_expired(upload_id) and not self.landed(info):
            raise UploadError(f"upload {upload_id} expired after {self.store.expiry:.0f} s "
                              "without data; create a new upload", status=410)
        return info

    @staticmethod
    def landed(info: UploadInfo) -> bool:
        """Whether the bundle is on its job's path and queued: the job row alone says so."""
        return info.job_id is not None and jobs.get(info.job_id).queue_state != jobs.RECEIVING

    def _land(self, info: UploadInfo) -> None:
        """The last byte is in: make the job, move the bytes to its path, queue it (idempotent)."""
        if info.job_id is None:
            info.job_id = self.intake.new_job(info.user, jobs.KIND_UPLOAD, info.length,
                                              callback=info.callback)
            self.store.save(info)
        path = self.intake.staging.path_for(info.job_id)
        part = self.store.part_path(info.upload_id)
        if os.path.exists(part):
            os.replace(part, path)
        if jobs.get(info.job_id).queue_state == jobs.RECEIVING:
            self.intake.bundle_landed(info.job_id, path, via="tus")
        logger.info("tus upload %s complete: job %s", info.upload_id, info.job_id)


def _check_owner(info: UploadInfo, user: Identity) -> None:
    """Another user's upload answers exactly as an unknown one (no enumeration)."""
    if not user.may_see(info.user):
        raise not_found(info.upload_id)


class TusSweeper(Periodic):
    """Background thread in the frontend: runs ``ResumableUploads.sweep`` now and then."""

    name = "tus-sweeper"

    def __init__(self, uploads: ResumableUploads, interval: float | None = None):
        expiry = uploads.store.expiry
        super().__init__(interval or (min(max(expiry / 4, 0.5), 300.0) if expiry else 300.0))
        self.uploads = uploads

    def run_once(self) -> None:
        """Expire idle uploads and finish landing complete ones."""
        self.uploads.sweep()


def _header(name: str) -> str | None:
    return cherrypy.request.headers.get(name)


def _integer(name: str, required: bool = True) -> int | None:
    value = _header(name)
    if value is None:
        if required:
            raise cherrypy.HTTPError(400, f"the {name} header is required")
        return None
    try:
        number = int(value)
    except ValueError:
        raise cherrypy.HTTPError(400, f"{name} {value!r} is not a number") from None
    if number < 0:
        raise cherrypy.HTTPError(400, f"{name} must not be negative")
    return number


def _http_date(timestamp: float | None) -> str | None:
    return None if timestamp is None else email.utils.formatdate(timestamp, usegmt=True)


class TusFiles(Authenticated):
    """``/files/``: the tus endpoint (HTTP only; the life cycle lives in ResumableUploads)."""

    def __init__(self, uploads: ResumableUploads, identifier: Identifier, slots: UploadSlots,
                 max_bundle_size: int = 0, public_url: str = ""):
        super().__init__(identifier)
        self.uploads = uploads
        self.max_bundle_size = max_bundle_size
        self.public_url = public_url  # the base of Location; never the request's Host
        self.slots = slots

    def _begin(self, check_version: bool = True) -> Identity | None:
        """Common headers; the request's identity (not for OPTIONS, asked before any upload)."""
        headers = cherrypy.response.headers
        headers[TUS_RESUMABLE] = TUS_VERSION
        headers["Cache-Control"] = "no-store"
        if check_version and _header(TUS_RESUMABLE) != TUS_VERSION:
            headers[TUS_VERSION_HEADER] = TUS_VERSION
            raise cherrypy.HTTPError(412, f"send {TUS_RESUMABLE}: {TUS_VERSION}; this server "
                                          f"speaks tus {TUS_VERSION}")
        return self.identity() if check_version else None

    def _describe(self, info: UploadInfo, offset: int) -> None:
        headers = cherrypy.response.headers
        headers[UPLOAD_OFFSET] = str(offset)
        if self.uploads.landed(info):
            headers[JOB_ID] = str(info.job_id)
            return
        expires = _http_date(self.uploads.store.expires_at(info.upload_id))
        if expires:
            headers[UPLOAD_EXPIRES] = expires

    @staticmethod
    def _one_id(path: tuple) -> str:
        if len(path) != 1:
            raise cherrypy.HTTPError(404, "address an upload as /files/<upload id>")
        return path[0]

    def OPTIONS(self, *_path, **_params):  # pylint: disable=invalid-name
        """What this server supports."""
        self._begin(check_version=False)
        headers = cherrypy.response.headers
        headers[TUS_VERSION_HEADER] = TUS_VERSION
        headers[TUS_EXTENSION] = TUS_EXTENSIONS
        headers[TUS_CHECKSUM_ALGORITHM] = ",".join(CHECKSUM_ALGORITHMS)
        if self.max_bundle_size:
            headers[TUS_MAX_SIZE] = str(self.max_bundle_size)
        cherrypy.response.status = 204
        return b""

    @cherrypy.tools.json_out()
    @json_errors
    def POST(self, *path, **_params):  # pylint: disable=invalid-name
        """Creation: an empty upload of ``Upload-Length`` bytes."""
        user = self._begin()
        if path:
            raise cherrypy.HTTPError(405, "create uploads with POST /files/")
        if _header(UPLOAD_DEFER_LENGTH) is not None:
            raise cherrypy.HTTPError(400, f"{UPLOAD_DEFER_LENGTH} is not supported: send "
                                          f"{UPLOAD_LENGTH}")
        if _integer("Content-Length", required=False):
            raise cherrypy.HTTPError(400, "creation-with-upload is not supported: create the "
                                          "upload, then PATCH its bytes")
        length = _integer(UPLOAD_LENGTH)
        metadata = _header(UPLOAD_METADATA) or ""
        key = idempotency.parse_key(_header(IDEMPOTENCY_KEY))
        claim = key and idempotency.Claim(key, f"upload-length={length}, metadata-sha256="
                                               + hashlib.sha256(metadata.encode()).hexdigest())
        info = self.uploads.create(length, user.user, metadata, claim or None,
                                   self.uploads.intake.callback(_header(CALLBACK_URL)))
        location = f"{self.public_url}{TUS_PATH}{info.upload_id}"
        cherrypy.response.headers["Location"] = location
        self._describe(info, self.uploads.store.offset(info))
        cherrypy.response.status = 201
        return {"upload_id": info.upload_id, "location": location, "length": info.length}

    @json_errors
    def HEAD(self, *path, **_params):  # pylint: disable=invalid-name
        """The offset (and length, metadata, job id once complete) of an upload."""
        user = self._begin()
        info, offset = self.uploads.status(self._one_id(path), user)
        self._describe(info, offset)
        cherrypy.response.headers[UPLOAD_LENGTH] = str(info.length)
        if info.metadata:
            cherrypy.response.headers[UPLOAD_METADATA] = info.metadata
        cherrypy.response.status = 200
        return b""

    @json_errors
    def PATCH(self, *path, **_params):  # pylint: disable=invalid-name
        """Append a chunk at ``Upload-Offset``."""
        identity = self._begin()
        upload_id = self._one_id(path)
        content_type = (_header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != PATCH_CONTENT_TYPE:
            raise cherrypy.HTTPError(415, f"PATCH bodies must be {PATCH_CONTENT_TYPE}")
        offset = _integer(UPLOAD_OFFSET)
        count = body_length(cherrypy.request.header_list)
        checksum = parse_checksum(_header(UPLOAD_CHECKSUM))
        with self.slots.hold(identity.user) as body:
            info, offset = self.uploads.append(upload_id, identity, offset, body, count,
                                               checksum)
        self._describe(info, offset)
        cherrypy.response.status = 204
        return b""

    @json_errors
    def DELETE(self, *path, **_params):  # pylint: disable=invalid-name
        """Termination: abandon the upload."""
        user = self._begin()
        self.uploads.delete(self._one_id(path), user)
        cherrypy.response.status = 204
        return b""


def build_uploads(settings, intake: Intake) -> ResumableUploads:
    """The resumable uploads on the configured volume."""
    store = TusStore(settings.ingest.volume_path, settings.ingest.tus_expiry,
                     settings.ingest.transfer_size)
    uploads = ResumableUploads(store, intake, settings.ingest.tus_user_quota,
                               settings.ingest.tus_max_metadata)
    intake.staging.promised = uploads.reservations.promised_total  # POSTs see the promises
    return uploads


def mount(root, uploads: ResumableUploads, settings, identifier: Identifier,
          slots: UploadSlots) -> dict:
    """Attach ``/files`` to the root; return its CherryPy config (bodies are streamed)."""
    root.files = TusFiles(uploads, identifier, slots, settings.ingest.max_bundle_size,
                          settings.ingest.public_url)
    return {TUS_PATH.rstrip("/"): {"request.process_request_body": False,
                       **cors.config(settings.ingest.cors_origins)}}
