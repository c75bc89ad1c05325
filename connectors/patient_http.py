"""HTTP for connectors of remote sources: requests retried after the server's ``Retry-After`` (429 and
503, by tenacity) within a per-source time budget, counted, and every other failure turned into
[SourceUnavailable][enclave.contracts.SourceUnavailable]."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from enclave.contracts import SourceUnavailable

#: Seconds waited on a 429/503 that gives no Retry-After.
DEFAULT_RETRY_AFTER = 2.0


class Throttled(Exception):
    """A 429 or 503 answer; ``retry_after`` in seconds (None when the server gave none)."""

    def __init__(self, url: str, status: int, retry_after: float | None) -> None:
        super().__init__(f"{url}: HTTP {status}")
        self.retry_after = retry_after


class AccessDenied(SourceUnavailable):
    """The source answered 401 or 403: the credentials are wrong, expired or lack a permission."""


class PatientHttp:
    """An httpx client for one source that waits out throttling and reports outages as SourceUnavailable.

    Usage::

        http = PatientHttp("wiki", headers={"Authorization": f"Bearer {token}"}, timeout=30, retry_budget=120)
        http.start_budget()                               # once per listing: the budget starts now
        response = http.request("GET", "https://wiki.example/rest/api/content", params={"limit": 50})
        http.requests                                     # Counter({"GET 200": 1})

    ``request`` returns the response for any status below 500 except 401, 403 and 429 (callers read 404
    and 304 themselves); 401 and 403 raise [AccessDenied][enclave.connectors.patient_http.AccessDenied].
    A 429 or 503 is retried after its ``Retry-After`` (seconds or an HTTP date;
    2 s without one) while that fits in what is left of ``retry_budget`` seconds since ``start_budget``,
    and raises SourceUnavailable as soon as it does not. 401, 403, other 5xx, timeouts and refused
    connections raise SourceUnavailable at once. ``timeout`` in seconds per request. Error messages name
    the source and the URL, never a header (credentials travel in headers).
    """

    def __init__(self, source: str, *, headers: dict[str, str] | None = None, auth: httpx.Auth | None = None,
                 timeout: float = 30.0, retry_budget: float = 120.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.source = source
        self.retry_budget = retry_budget
        self.requests: Counter[str] = Counter()
        self._options: dict[str, Any] = {"headers": headers or {}, "auth": auth, "timeout": timeout,
                                         "transport": transport}
        self._client: httpx.Client | None = None
        self._deadline = time.monotonic() + retry_budget

    def __getstate__(self) -> dict[str, Any]:  # an httpx client does not pickle
        return {**self.__dict__, "_client": None, "_options": {**self._options, "transport": None}}

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(follow_redirects=False, **self._options)
        return self._client

    def start_budget(self) -> None:
        """Start the retry budget now (call it when a listing starts)."""
        self._deadline = time.monotonic() + self.retry_budget

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                follow_redirects: bool = False, **kwargs: Any) -> httpx.Response:
        """One request, with the retries above. Raises SourceUnavailable."""
        deadline = self._deadline

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, Throttled) and error.retry_after is not None:
                return error.retry_after
            return DEFAULT_RETRY_AFTER

        def stop(state: RetryCallState) -> bool:  # give up now when the server asks for more than the budget left
            return time.monotonic() + wait(state) > deadline

        def attempt() -> httpx.Response:
            try:
                response = self.client.request(method, url, headers=headers, follow_redirects=follow_redirects,
                                               **kwargs)
            except httpx.HTTPError as exc:
                raise SourceUnavailable(f"source {self.source!r}: {url}: {type(exc).__name__}: {exc}") from None
            self.requests[f"{method} {response.status_code}"] += 1
            if response.status_code in (429, 503):
                raise Throttled(url, response.status_code, retry_after_seconds(response.headers.get("retry-after")))
            if response.status_code in (401, 403):
                raise AccessDenied(f"source {self.source!r}: {url} answered HTTP {response.status_code}")
            if response.status_code >= 500:
                raise SourceUnavailable(f"source {self.source!r}: {url} answered HTTP {response.status_code}")
            return response

        try:
            for trial in Retrying(retry=retry_if_exception_type(Throttled), wait=wait, stop=stop, reraise=True):
                with trial:
                    return attempt()
        except Throttled as exc:
            raise SourceUnavailable(f"source {self.source!r}: {exc}, still throttled after the "
                                    f"{self.retry_budget:.0f} s retry budget") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None if absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
