"""CherryPy's own HTTP server (cheroot), hardened for hostile upload clients.

``server.instance`` in ``app.server_config`` names ``IngestServer``.  Against cheroot's
defaults it:

* drops header names with underscores (``header_names``: they would alias the identity header);
* reads the framing strictly (``framing.body_length``) before the application runs, and sees
  a repeated Content-Length (cheroot keeps only the last one);
* reads a chunked body in pieces of at most ``READ_PIECE`` bytes (cheroot reads a whole chunk
  into memory, however large the client declares it);
* closes the connection after a response sent before its body was read (cheroot would read
  the rest at the client's pace to keep the connection, or, for a chunked body, parse it as
  the next request);
* gives a request's head one socket timeout to arrive in full (cheroot waits one timeout per
  byte, so a head fed a byte at a time held a thread for ever);
* hands the application the connection's socket (``SOCKET_KEY``), so a body under the rate
  floor can be cut off in the middle of a read.
"""
from __future__ import annotations

import re
import time

from cheroot import errors as cheroot_errors
from cheroot import server as cheroot_server
from cheroot import wsgi as cheroot_wsgi
from cherrypy._cpwsgi_server import CPWSGIHTTPRequest, CPWSGIServer

from ..errors import UploadError
from ..intake.deadlines import DEADLINES, shut_reading
from .errors import error_json
from .framing import body_length
from .header_names import fold_header_dict
from ..intake.body import READ_PIECE

SOCKET_KEY = "pacifica.ingest.socket"
CRLF = b"\r\n"
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
MAX_LINE = 4096  # a chunk-size line or a trailer line
MAX_TRAILERS = 64


class _HeadersKeepingLengths(dict):
    """cheroot's header dict, folding a repeated Content-Length ("10, 10") instead of replacing."""

    def __setitem__(self, key, value):
        if key == b"Content-Length" and key in self:
            value = self[key] + b", " + value
        super().__setitem__(key, value)


class StrictHeaderReader(cheroot_server.HeaderReader):
    """cheroot's header reading, then the framing check (its ValueError is cheroot's 400)."""

    def __call__(self, rfile, hdict=None):
        headers = super().__call__(rfile, _HeadersKeepingLengths())
        try:
            body_length([(key.decode("latin-1"), value.decode("latin-1"))
                         for key, value in headers.items()], required=False)
        except UploadError as err:
            raise ValueError(str(err)) from None
        headers = fold_header_dict(dict(headers))
        if hdict is None:
            return headers
        hdict.update(headers)
        return hdict


class BoundedChunkedReader:
    """A chunked request body read in pieces of at most READ_PIECE bytes, strictly parsed."""

    def __init__(self, rfile):
        self.rfile = rfile
        self.left = 0  # bytes of the current chunk not read yet
        self.done = False

    def read(self, size: int | None = None) -> bytes:
        """Up to ``size`` bytes of the body (all of it when None); b"" at its end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(READ_PIECE), b""))
        parts, total = [], 0
        while total < size and not self.done:
            if not self.left:
                self._next_chunk()
                continue
            data = self.rfile.read(min(size - total, self.left, READ_PIECE))
            if not data:
                raise ValueError("the chunked body ended inside a chunk")
            self.left -= len(data)
            total += len(data)
            parts.append(data)
            if not self.left and self.rfile.read(2) != CRLF:
                raise ValueError("a chunk of the body does not end with CRLF")
        return b"".join(parts)

    def readline(self, size: int | None = None) -> bytes:
        """One line of the body (for a form or JSON body CherryPy parses)."""
        line = b""
        while not line.endswith(b"\n") and (size is None or size < 0 or len(line) < size):
            byte = self.read(1)
            if not byte:
                break
            line += byte
        return line

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if not line.endswith(CRLF) or len(line) > MAX_LINE:
            raise ValueError("a chunk-size or trailer line of the body is malformed or too long")
        return line[:-2]

    def _next_chunk(self) -> None:
        size = self._line().split(b";", 1)[0].rstrip(b" \t")
        if not CHUNK_SIZE.fullmatch(size):
            raise ValueError(f"bad chunk size {size[:20]!r} in the chunked body")
        self.left = int(size, 16)
        if not self.left:
            for _ in range(MAX_TRAILERS):
                if not self._line():
                    self.done = True
                    return
            raise ValueError(f"the chunked body has more than {MAX_TRAILERS} trailer lines")

    def close(self) -> None:
        """Nothing to release: the connection owns the socket file."""


class IngestRequest(CPWSGIHTTPRequest):
    """A request with strict framing, bounded chunks, and no slow drain of an unread body."""

    header_reader = StrictHeaderReader()

    def parse_request(self):
        """cheroot's reading of the request head, which must all arrive within the timeout.

        The socket timeout bounds each wait for a byte; a head fed a byte at a time would
        otherwise hold this thread for ever.
        """
        sock = self.conn.socket
        token = DEADLINES.call_at(time.monotonic() + self.server.timeout,
                                  lambda: shut_reading(sock))
        try:
            super().parse_request()
        finally:
            DEADLINES.cancel(token)

    def simple_response(self, status, msg=""):
        """cheroot's own answers (malformed requests, bad framing) as JSON errors; then close."""
        self.close_connection = True
        body = error_json(str(status), msg or str(status)).encode("utf-8")
        head = (f"{self.server.protocol} {status}\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n\r\n")
        try:
            self.conn.wfile.write(head.encode("latin-1") + body)
        except OSError as err:
            if err.args[0] not in cheroot_errors.socket_errors_to_ignore:
                raise

    def respond(self):
        """cheroot's respond, with the bounded chunked reader."""
        if not self.chunked_read:
            super().respond()
            return
        self.rfile = BoundedChunkedReader(self.conn.rfile)
        self.server.gateway(self).respond()
        if self.ready:
            self.ensure_headers_sent()
        if self.chunked_write:
            self.conn.wfile.write(b"0\r\n\r\n")

    def send_headers(self):
        """Close the connection when the answer comes before the whole body was read."""
        unread = (not self.rfile.done if isinstance(self.rfile, BoundedChunkedReader)
                  else getattr(self.rfile, "remaining", 0) > 0)
        if unread:
            self.close_connection = True
        super().send_headers()


class IngestConnection(cheroot_server.HTTPConnection):
    """A connection whose requests are IngestRequests."""

    RequestHandlerClass = IngestRequest


class IngestGateway(cheroot_wsgi.Gateway_10):
    """The WSGI 1.0 gateway, with the connection's socket in the environ."""

    def get_environ(self):
        """cheroot's environ plus SOCKET_KEY."""
        environ = super().get_environ()
        environ[SOCKET_KEY] = self.req.conn.socket
        return environ


class IngestServer(CPWSGIServer):
    """CherryPy's WSGI server with IngestConnection and IngestGateway."""

    def __init__(self, server_adapter):
        super().__init__(server_adapter)
        self.ConnectionClass = IngestConnection
        self.gateway = IngestGateway
