"""What our HTTP clients put on the wire, seen by a server that records every request.

The real services are in test_pacifica_real.py.  These tests cover what those cannot show:
the real Policy ignores the auth header and the real Archive Interface ignores
``Last-Modified``, yet PROTOCOL.md says we send them; and the retry rules (5xx retried,
4xx never, timeouts bounded) need a server that answers on cue.
"""
from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pacifica.ingest.archive import FileSource
from pacifica.ingest.archive.http import HttpArchive
from pacifica.ingest.config import HttpSettings
from pacifica.ingest.errors import PolicyRejected, ServiceUnavailable
from pacifica.ingest.http import make_session
from pacifica.ingest.services.policy import PolicyClient


class Recorder:
    """An HTTP server that records requests and answers from a script of (status, body, delay)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict, float]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                recorder.requests.append({"method": self.command, "path": self.path,
                                          "headers": dict(self.headers),
                                          "body": self.rfile.read(length)})
                status, body, delay = (recorder.answers.pop(0) if recorder.answers
                                       else (200, {"status": "success"}, 0))
                time.sleep(delay)
                payload = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting

            do_GET = do_POST = do_PUT = do_PATCH = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


def fast(**changes) -> HttpSettings:
    return HttpSettings(**{"connect_timeout": 2.0, "read_timeout": 5.0, "retries": 2,
                           "backoff": 0.01, **changes})


def test_policy_check_carries_the_user_in_the_configured_header(recorder):
    policy = PolicyClient(recorder.url + "/ingest", make_session(fast()), "X-Remote-User")
    metadata = [{"destinationTable": "Transactions._id", "value": 7}]

    policy.check(metadata, "alice")

    (seen,) = recorder.requests
    assert (seen["method"], seen["path"]) == ("POST", "/ingest")
    assert seen["headers"]["X-Remote-User"] == "alice"
    assert json.loads(seen["body"]) == metadata


def test_archive_put_sends_length_type_and_last_modified(recorder):
    data = b"archive me" * 1000
    recorder.answers.append((201, {"message": "File added to archive",
                                   "total_bytes": len(data)}, 0))
    archive = HttpArchive(recorder.url, make_session(fast(retries=0)), retries=2, backoff=0.01)
    source = FileSource(label="data/a.bin", size=len(data), mtime=1480457345.0,
                        hashtype="sha1", hashsum=hashlib.sha1(data).hexdigest(),
                        opener=lambda: io.BytesIO(data))

    archive.store(42, source)

    (seen,) = recorder.requests
    assert (seen["method"], seen["path"], seen["body"]) == ("PUT", "/42", data)
    assert seen["headers"]["Content-Length"] == str(len(data))
    assert seen["headers"]["Content-Type"] == "application/octet-stream"
    assert parsedate_to_datetime(seen["headers"]["Last-Modified"]).timestamp() == 1480457345.0


def test_archive_put_is_sent_afresh_after_a_5xx(recorder):
    data = b"twice"
    recorder.answers += [(503, {"message": "busy"}, 0),
                         (201, {"message": "File added to archive", "total_bytes": 5}, 0)]
    archive = HttpArchive(recorder.url, make_session(fast(retries=0)), retries=2, backoff=0.01)
    source = FileSource(label="data/t.bin", size=5, mtime=0, hashtype="md5",
                        hashsum=hashlib.md5(data).hexdigest(), opener=lambda: io.BytesIO(data))

    archive.store(5, source)

    assert [r["body"] for r in recorder.requests] == [data, data]


def test_5xx_is_retried_then_reported_and_4xx_is_not_retried(recorder):
    policy = PolicyClient(recorder.url + "/ingest", make_session(fast(retries=2)),
                          "X-Http-Authed-User")
    recorder.answers += [(503, {"message": "down for maintenance"}, 0)] * 3
    with pytest.raises(ServiceUnavailable, match="failed \\(503\\): down for maintenance"):
        policy.check([], "bob")
    assert len(recorder.requests) == 3

    recorder.requests.clear()
    recorder.answers.append((403, {"message": "not yours"}, 0))
    with pytest.raises(PolicyRejected, match="\\(403\\): not yours"):
        policy.check([], "bob")
    assert len(recorder.requests) == 1


def test_a_silent_service_times_out_with_its_url(recorder):
    policy = PolicyClient(recorder.url + "/ingest",
                          make_session(fast(read_timeout=0.3, retries=1)), "X-Http-Authed-User")
    recorder.answers += [(200, {"status": "success"}, 2)] * 2

    with pytest.raises(ServiceUnavailable, match=f"Policy at {recorder.url}/ingest could not be "
                                                 "reached: .*[Rr]ead timed out"):
        policy.check([], "carol")
    assert len(recorder.requests) == 2
