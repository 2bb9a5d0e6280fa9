"""Every name the wire carries between the ingest server and its clients (docs/PROTOCOL.md).

Imported by the server (web/, jobs.py, bundle.py, metadata.py) and by the client
(client/); it imports nothing of the project and does nothing when imported.
"""
from __future__ import annotations

import enum

# Endpoints.
UPLOAD_PATH = "/upload"
TUS_PATH = "/files/"
GET_STATE_PATH = "/get_state"
RECEIPT_PATH = "/receipt"

# tus 1.0.0 (https://tus.io/protocols/resumable-upload): version, extensions, headers.
TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,checksum,expiration"
TUS_RESUMABLE = "Tus-Resumable"
TUS_VERSION_HEADER = "Tus-Version"
TUS_EXTENSION = "Tus-Extension"
TUS_MAX_SIZE = "Tus-Max-Size"
TUS_CHECKSUM_ALGORITHM = "Tus-Checksum-Algorithm"
UPLOAD_LENGTH = "Upload-Length"
UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_METADATA = "Upload-Metadata"
UPLOAD_CHECKSUM = "Upload-Checksum"
UPLOAD_EXPIRES = "Upload-Expires"
UPLOAD_DEFER_LENGTH = "Upload-Defer-Length"
PATCH_CONTENT_TYPE = "application/offset+octet-stream"
CHECKSUM_MISMATCH = 460  # the status of a chunk that does not match its Upload-Checksum

# This service's own headers.
JOB_ID = "Ingest-Job-Id"  # on tus answers once the upload is a job
IDEMPOTENCY_KEY = "Idempotency-Key"
CALLBACK_URL = "Callback-Url"
UNDERSCORED_HEADERS = "Ingest-Underscored-Headers"  # set by our servers (web/header_names.py)

# A bundle: a tar of files under ``data/`` and ``metadata.txt`` at its top.
DATA_ROOT = "data"
METADATA_NAME = "metadata.txt"
# metadata.txt: a JSON list of entries, each naming where it goes.
DESTINATION = "destinationTable"
FILES_TABLE = "Files"  # a file entry
KEY_VALUE_TABLE = "TransactionKeyValue"  # a key/value pair of the transaction
TRANSACTION = "Transactions."  # + a field name (submitter, project, instrument, _id ...)

# The job state object's ``state``.
OK = "OK"
FAILED = "FAILED"


class Step(enum.Enum):
    """Tasks a job passes through; the values are the wire names of ``task``."""

    UPLOADING = "UPLOADING"
    OPEN_TAR = "open tar"
    LOAD_METADATA = "load metadata"
    POLICY = "Policy Validation"
    INGEST_FILES = "ingest files"
    MOVE_FILES = "move files"
    INGEST_METADATA = "ingest metadata"


# The tasks of an upload job, in order (a move job has MOVE_FILES instead of the tar steps).
UPLOAD_STEPS = tuple(step.value for step in (
    Step.UPLOADING, Step.OPEN_TAR, Step.LOAD_METADATA, Step.POLICY, Step.INGEST_FILES,
    Step.INGEST_METADATA))
