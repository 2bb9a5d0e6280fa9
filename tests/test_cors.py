"""CORS on the tus endpoint: allowed origins get the headers a browser needs, others none."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

PORTAL = "https://portal.example.org"


def test_allowed_origin_may_use_files_and_others_may_not(make_stack):
    stack = make_stack(extra_env={"INGEST_INGEST_CORS_ORIGINS": PORTAL}).start()
    preflight = stack.session.options(stack.url + "/files/", timeout=30, headers={
        "Origin": PORTAL, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "tus-resumable, upload-length"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == PORTAL
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Upload-Offset" in preflight.headers["Access-Control-Allow-Headers"]
    created = stack.session.post(stack.url + "/files/", timeout=30, headers={
        "Origin": PORTAL, "Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == PORTAL
    assert "Location" in created.headers["Access-Control-Expose-Headers"]

    other = stack.session.options(stack.url + "/files/", timeout=30, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers
    upload = stack.session.options(stack.url + "/upload", timeout=30, headers={
        "Origin": PORTAL, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in upload.headers  # never for /upload


def test_no_cors_by_default(stack):
    reply = stack.session.options(stack.url + "/files/", timeout=30, headers={
        "Origin": PORTAL, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in reply.headers
