"""The only place that builds a requests.Session: pooled, with retries and timeouts."""
from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .config import HttpSettings


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
