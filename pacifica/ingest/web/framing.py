"""Where a request body ends: one strict reading of Content-Length and Transfer-Encoding.

Used by every handler that reads a body (``POST /upload``, tus ``PATCH``) and, under
CherryPy's own server, for every request before the application sees it.  A lenient reading
(``+10``, ``1_0``, two lengths, a length beside ``chunked``) lets a proxy and this server
disagree about where a body ends, which truncates bundles and desynchronises connections.
"""
from __future__ import annotations

import re
from typing import Iterable

from ..errors import UploadError

LENGTH = re.compile(r"[0-9]{1,19}")


def body_length(headers: Iterable[tuple[str, str]], required: bool = True) -> int | None:
    """The body's length from the raw header list, or None for a chunked body.

    Raises UploadError 400 for ambiguous or malformed framing, 411 for none when ``required``.
    """
    lengths, codings = [], []
    for name, value in headers:
        name = name.lower()
        if name == "content-length":  # a repeated header may arrive folded: "10, 10"
            lengths.extend(part.strip() for part in value.split(","))
        elif name == "transfer-encoding":
            codings.extend(part.strip().lower() for part in value.split(",") if part.strip())
    if codings and codings != ["chunked"]:
        raise UploadError(f"Transfer-Encoding {', '.join(codings)!r} is not supported: send "
                          "the body with a Content-Length or as Transfer-Encoding: chunked",
                          status=400)
    if codings and lengths:
        raise UploadError("the request has both a Content-Length and Transfer-Encoding: "
                          "chunked; send one of them", status=400)
    if codings:
        return None
    if len(lengths) > 1:
        raise UploadError("the request has more than one Content-Length header; send one",
                          status=400)
    if not lengths:
        if required:
            raise UploadError("send the body with a Content-Length header (or Transfer-Encoding: "
                              "chunked)", status=411)
        return None
    if not LENGTH.fullmatch(lengths[0]):
        raise UploadError(f"Content-Length {lengths[0][:40]!r} is not a number of 1 to 19 "
                          "digits", status=400)
    return int(lengths[0])
