"""The only place that builds a requests.Session: pooled, with retries and timeouts."""
from __future__ import annotations

import json
import re
from typing import Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .config import HttpSettings
from .errors import ServiceUnavailable


_AUTHORITY = re.compile(r"[^/\s'\"]*")  # what follows "://" up to the path


def redact(text: str) -> str:
    """``text`` with the user and password taken out of every URL in it (in linear time)."""
    parts = text.split("://")
    for index in range(1, len(parts)):
        authority = _AUTHORITY.match(parts[index]).group()
        if "@" in authority:
            parts[index] = parts[index][authority.rindex("@") + 1:]
    return "://".join(parts)


class TimeoutSession(requests.Session):
    """A Session that applies (connect, read) timeouts to every call that names none."""

    def __init__(self, timeout: tuple[float, float]):
        super().__init__()
        self.timeout = timeout

    def request(self, method, url, **kwargs):  # pylint: disable=arguments-differ
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, **kwargs)


def make_session(settings: HttpSettings, pool_size: int = 10) -> requests.Session:
    """A session retrying connection errors and 5xx with backoff, never a 4xx."""
    retry = Retry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        backoff_factor=settings.backoff,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=None,  # PUT/PATCH/POST here are idempotent by file or job id
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    session = TimeoutSession((settings.connect_timeout, settings.read_timeout))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def call_service(service: str, url: str, method: Callable[..., requests.Response],
                 **arguments) -> requests.Response:
    """One request to a Pacifica service: its answer, or ServiceUnavailable naming the service
    when it cannot be reached or fails (5xx); a 4xx answer is the caller's to read."""
    try:
        reply = method(url, **arguments)
    except requests.RequestException as err:
        raise ServiceUnavailable(
            redact(f"{service} at {url} could not be reached: {err}")) from err
    if reply.status_code >= 500:
        raise ServiceUnavailable(f"{service} at {redact(url)} failed ({reply.status_code}): "
                                 f"{reply_message(reply)}")
    return reply


def reply_message(reply: requests.Response) -> str:
    """A service's own words for an answer: its JSON ``message``, else its text.

    A Pacifica service that crashes answers CherryPy's generic 500 text; the cause is the last
    line of the ``traceback`` it sends along, so that line is added.
    """
    try:
        body = reply.json()
    except ValueError:
        return reply.text.strip()[:1000] or f"HTTP {reply.status_code} with an empty body"
    if not isinstance(body, dict):
        return json.dumps(body)[:1000]
    message = str(body.get("message") or "").strip()
    lines = str(body.get("traceback") or "").strip().splitlines()
    cause = lines[-1].strip() if lines else ""
    if cause and cause not in message and (reply.status_code >= 500 or not message):
        message = f"{message} ({cause})" if message else cause
    return (message or json.dumps(body))[:1000]


def says_success(reply: requests.Response) -> bool:
    """True for the Pacifica services' ``200 {"status": "success"}``."""
    if reply.status_code != 200:
        return False
    try:
        body = reply.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == "success"
