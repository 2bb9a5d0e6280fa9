"""``GET /receipt?job_id=N`` (the job's owner or an admin) and ``GET /receipt-key``."""
from __future__ import annotations

import cherrypy

from .. import jobs, receipts
from .errors import json_errors, parse_job_id
from .identity import Authenticated


class JobReceipt(Authenticated):
    """A completed job's signed receipt; ``format=manifest`` gives its BagIt manifests."""

    @json_errors
    def GET(self, job_id=None, format="json", **_params):  # pylint: disable=invalid-name,redefined-builtin
        """The signed envelope (JSON) or the manifest lines (text)."""
        number = parse_job_id(job_id)
        jobs.get(number, self.identity().may_see)
        row = receipts.stored(number)
        if row is None:
            raise cherrypy.HTTPError(404, f"job {number} has no receipt: only a job that "
                                          "completed OK has one; ask /get_state where it stands")
        # Streamed a stored part at a time, on the request's connection (the ingest_db tool
        # gives it back at on_end_request, once the body is written).
        cherrypy.response.stream = True
        if format == "manifest":
            cherrypy.response.headers["Content-Type"] = "text/plain; charset=utf-8"
            return receipts.manifest_pieces(row)
        cherrypy.response.headers["Content-Type"] = "application/json"
        return receipts.envelope_pieces(row)


class ReceiptKey:
    """The public keys receipts are signed with (no identity needed: they are public)."""

    exposed = True

    @cherrypy.tools.json_out()
    def GET(self):  # pylint: disable=invalid-name
        """Every signing key, newest first."""
        return {"algorithm": receipts.ALGORITHM, "keys": receipts.public_keys()}


def mount(root, identifier) -> dict:
    """Attach ``/receipt`` and ``/receipt-key``."""
    root.receipt = JobReceipt(identifier)
    root.receipt_key = ReceiptKey()  # the dispatcher reads /receipt-key as receipt_key
    return {}
