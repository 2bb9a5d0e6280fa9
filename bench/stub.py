"""A stand-in for Pacifica Policy and Metadata that accepts everything: ``python -m bench.stub PORT``.

Both services answer ``{"status": "success"}`` when they accept, so the benchmark measures
ingest, not a policy engine or a metadata database.
"""
from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUCCESS = json.dumps({"status": "success"}).encode()


class Handler(BaseHTTPRequestHandler):
    """GET answers a banner; POST and PUT read the body and answer success."""

    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # pylint: disable=invalid-name
        """Readiness probe."""
        self._answer(b'{"message": "stub up"}')

    def do_POST(self):  # pylint: disable=invalid-name
        """Accept any body."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(SUCCESS)

    do_PUT = do_POST

    def log_message(self, *args):  # quiet
        pass


def main() -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()


if __name__ == "__main__":
    main()
