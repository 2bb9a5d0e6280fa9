"""A WSGI client for in-process tests: one request in, status, headers and body out."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Response:
    """What the application answered."""

    status: int
    headers: dict
    body: bytes

    def json(self):
        """The body as JSON."""
        return json.loads(self.body)


class WsgiClient:
    """Calls a WSGI application directly, as a server on ``remote_addr``'s side would."""

    def __init__(self, app, remote_addr: str = "127.0.0.1"):
        self.app = app
        self.remote_addr = remote_addr

    def request(self, method: str, url: str, body: bytes = b"", headers: dict | None = None,
                content_type: str | None = None) -> Response:
        """Send one request; ``Content-Length`` is the body's length unless a header says."""
        parts = urlsplit(url)
        environ = {
            "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query, "SERVER_NAME": "localhost", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": self.remote_addr,
            "REMOTE_PORT": "40000", "HTTP_HOST": "localhost",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(), "wsgi.multithread": True,
            "wsgi.multiprocess": False, "wsgi.run_once": False,
        }
        if body or method in ("POST", "PUT", "PATCH"):
            environ["CONTENT_LENGTH"] = str(len(body))
        if content_type is not None:
            environ["CONTENT_TYPE"] = content_type
        for name, value in (headers or {}).items():
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
                environ[key] = value
            else:
                environ["HTTP_" + key] = value
        answer = {}

        def start_response(status, response_headers, exc_info=None):
            del exc_info
            answer["status"] = int(status.split()[0])
            answer["headers"] = {name.lower(): value for name, value in response_headers}

        chunks = self.app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return Response(answer["status"], answer["headers"], data)

    def get(self, url: str, **options) -> Response:
        """GET ``url``."""
        return self.request("GET", url, **options)

    def post(self, url: str, body: bytes = b"", **options) -> Response:
        """POST ``body`` to ``url``."""
        return self.request("POST", url, body, **options)
