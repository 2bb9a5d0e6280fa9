"""Resumable uploads over the tus protocol 1.0.0 (core, creation, termination, checksum, expiration).

``POST /files/`` creates an upload of a declared length, ``PATCH /files/<id>`` appends at an
offset, ``HEAD /files/<id>`` tells the offset after a break, ``DELETE`` abandons it.  When the
last byte lands the upload becomes an ingest job exactly like a POSTed bundle; the job id is
then on every answer about the upload (header ``Ingest-Job-Id``) and ``/get_state`` follows it.
The life cycle (when the job is made, landing, expiry) is ``intake/resumable.py``; this module
only reads the requests and writes the answers.
"""
from __future__ import annotations

import base64
import email.utils
import hashlib
import logging

import cherrypy

from .. import idempotency
from ..auth import Identity
from ..errors import UploadError
from ..intake.resumable import ResumableUploads
from ..intake.tus_store import UploadInfo
from ..protocol import (CALLBACK_URL, IDEMPOTENCY_KEY, JOB_ID, PATCH_CONTENT_TYPE,
                        TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_EXTENSIONS, TUS_MAX_SIZE,
                        TUS_PATH, TUS_RESUMABLE, TUS_VERSION, TUS_VERSION_HEADER,
                        UPLOAD_CHECKSUM, UPLOAD_DEFER_LENGTH, UPLOAD_EXPIRES, UPLOAD_LENGTH,
                        UPLOAD_METADATA, UPLOAD_OFFSET)
from . import cors
from .errors import json_errors
from .framing import body_length
from .identity import Authenticated, Identifier
from .limits import UploadSlots

logger = logging.getLogger(__name__)

CHECKSUM_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: sha1 <base64>`` -> ('sha1', digest); 400 on anything else."""
    if not header:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise UploadError(f"checksum algorithm {algorithm!r} is not supported; use one of "
                          f"{', '.join(CHECKSUM_ALGORITHMS)}", status=400)
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (ValueError, TypeError):
        raise UploadError(f"Upload-Checksum {header!r} is not '<algorithm> <base64 digest>'",
                          status=400) from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise UploadError(f"Upload-Checksum carries {len(digest)} bytes, a {algorithm} digest "
                          f"has {hashlib.new(algorithm).digest_size}", status=400)
    return algorithm, digest


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


def mount(root, uploads: ResumableUploads, settings, identifier: Identifier,
          slots: UploadSlots) -> dict:
    """Attach ``/files`` to the root; return its CherryPy config (bodies are streamed)."""
    root.files = TusFiles(uploads, identifier, slots, settings.ingest.max_bundle_size,
                          settings.ingest.public_url)
    return {TUS_PATH.rstrip("/"): {"request.process_request_body": False,
                       **cors.config(settings.ingest.cors_origins)}}
