"""HTTP transport of the remote client: one ``httpx.Client``, retries, problem+json → exceptions.

The wire contract is ``docs/service.md``. This module imports only :mod:`moldb.errors`
(and httpx / pyarrow), never the storage layer.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("moldb.connect needs httpx, which is not installed: pip install 'moldb[client]'") from exc

from moldb import errors as E

__all__ = ["ARROW_STREAM", "CODE_TO_ERROR", "Transport", "error_from_response", "read_arrow"]

#: Media type of bulk results (Arrow IPC stream format).
ARROW_STREAM = "application/vnd.apache.arrow.stream"

#: problem+json ``code`` → exception class (the table of docs/service.md).
CODE_TO_ERROR: dict[str, type[E.MoldbError]] = {
    "entry-not-found": E.EntryNotFoundError,
    "duplicate-entry": E.DuplicateEntryError,
    "parse-error": E.ParseError,
    "unsupported-format": E.UnsupportedFormatError,
    "validation-error": E.ValidationError,
    "unauthenticated": E.AuthenticationError,
    "forbidden": E.PermissionDeniedError,
    "payload-too-large": E.LimitExceededError,
    "limit-exceeded": E.LimitExceededError,
    "rate-limited": E.RateLimitedError,
    "busy": E.ConcurrencyError,
    "storage-unavailable": E.StorageUnavailableError,
    "internal": E.ServiceError,
    # codes the service also sends (moldb.service.problems): the rest of the exception tree
    "unavailable": E.ServiceUnavailableError,
    "store-not-found": E.StoreNotFoundError,
    "schema-version": E.SchemaVersionError,
    "storage-error": E.StorageError,
    "not-found": E.ServiceError,  # no such endpoint: client and service versions differ
    "method-not-allowed": E.ServiceError,
}

#: Fallback by HTTP status when a response carries no (known) problem code (a proxy, an old server).
_STATUS_TO_ERROR: dict[int, type[E.MoldbError]] = {
    401: E.AuthenticationError, 403: E.PermissionDeniedError, 404: E.EntryNotFoundError,
    409: E.DuplicateEntryError, 413: E.LimitExceededError, 422: E.ValidationError, 429: E.RateLimitedError,
    502: E.ServiceUnavailableError, 503: E.ServiceUnavailableError, 504: E.ServiceUnavailableError,
}


def _make_error(cls: type[E.MoldbError], detail: str) -> E.MoldbError:
    """Instantiate ``cls`` with the message ``detail`` whatever its constructor's signature."""
    if issubclass(cls, E.ParseError):
        path, sep, problem = detail.partition(": ")
        return cls(path, problem) if sep else cls("upload", detail)
    return cls(detail)


def error_from_response(response: httpx.Response, url: str) -> E.MoldbError:
    """The moldb exception for an error response (problem+json ``code``, else the HTTP status).

    Parameters
    ----------
    response : httpx.Response
        A response with status >= 400.
    url : str
        The request URL, named in messages about unexpected responses.

    Returns
    -------
    MoldbError
        With ``status``, ``code`` and ``retry_after`` (seconds or None) attributes set.
    """
    status = response.status_code
    body: Mapping[str, Any] = {}
    try:
        parsed = json.loads(response.content) if response.content else {}
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    code = str(body.get("code", ""))
    detail = str(body.get("detail") or body.get("title") or "")
    cls = CODE_TO_ERROR.get(code) or _STATUS_TO_ERROR.get(status)
    if cls is None:
        cls = E.ServiceError
    if not detail:
        text = response.text[:200].strip() if response.content else ""
        detail = (f"the moldb service at {url} answered HTTP {status}"
                  + (f": {text}" if text else "") + "; check the service log")
    exc = _make_error(cls, detail)
    exc.status = status  # type: ignore[attr-defined]
    exc.code = code  # type: ignore[attr-defined]
    exc.retry_after = _retry_after(response)  # type: ignore[attr-defined]
    if body.get("retryable") is True and not exc.retryable:
        exc.retryable = True
    return exc


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def read_arrow(content: bytes) -> pa.Table:
    """Decode an Arrow IPC stream body into a table (zero-copy over the bytes).

    Raises
    ------
    ServiceError
        If the body is not an Arrow IPC stream.
    """
    try:
        return pa.ipc.open_stream(pa.py_buffer(content)).read_all()
    except pa.ArrowInvalid as exc:
        raise E.ServiceError(f"the service sent a body that is not an Arrow IPC stream ({exc}); "
                             "check that the URL points at a moldb service of the same version") from exc


class Transport:
    """One connection pool to a moldb service, with retries for idempotent calls.

    Parameters
    ----------
    url : str
        Base URL of the service (``http://host:port``).
    token : str, optional
        API token, sent as ``Authorization: Bearer``.
    timeout : float
        Seconds to wait for a connection and for each read.
    retries : int
        Extra attempts for idempotent requests after a retryable error (503, 429, connection failure).
    backoff : float
        First back-off interval in seconds; doubled each attempt (with jitter), capped at 5 s
        or the server's ``Retry-After``.
    transport : httpx.BaseTransport, optional
        Replace the network transport (tests use ``httpx.MockTransport``).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0, retries: int = 4,
                 backoff: float = 0.1, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        headers = {"User-Agent": "moldb-client/1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        if transport is None:
            # TCP_NODELAY: httpx writes a POST's headers and body separately; with Nagle's algorithm the body
            # waits for the server's delayed ACK (~40 ms on Linux) on every small POST (/select, tags)
            transport = httpx.HTTPTransport(limits=limits, retries=0,
                                            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def request(self, method: str, path: str, *, idempotent: bool | None = None,
                params: Mapping[str, Any] | None = None, json_body: Any = None, content: Any = None,
                headers: Mapping[str, str] | None = None) -> httpx.Response:
        """Send one request; raise the mapped moldb exception on an error response.

        Parameters
        ----------
        method, path : str
            HTTP method and path below the base URL (``/v1/entries``).
        idempotent : bool, optional
            Retry retryable failures; default: True for GET/HEAD, False otherwise.
        params, json_body, content, headers
            As for ``httpx.Client.request``; ``None`` parameter values are dropped.

        Raises
        ------
        ServiceUnavailableError
            The service could not be reached or answered 502/503/504 (after retries for idempotent calls).
        MoldbError
            The subclass named by the problem+json ``code``.
        """
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempts = 1 + (self.retries if idempotent else 0)
        delay = self.backoff
        for attempt in range(attempts):
            try:
                response = self._client.request(method, path, params=clean, json=json_body, content=content,
                                                headers=headers)
            except httpx.TransportError as exc:
                err = self._transport_error(exc, method, path, idempotent)
                wait = None
            else:
                if response.status_code < 400:
                    return response
                err = error_from_response(response, f"{self.url}{path}")
                wait = getattr(err, "retry_after", None)
            if not err.retryable or attempt == attempts - 1:
                raise err
            pause = min(5.0, wait if wait is not None else delay * (1 + random.random()))
            time.sleep(pause)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    def _transport_error(self, exc: httpx.TransportError, method: str, path: str, idempotent: bool) -> E.MoldbError:
        where = f"{self.url}{path}"
        if isinstance(exc, httpx.ConnectError):
            return E.ServiceUnavailableError(
                f"cannot connect to the moldb service at {self.url} ({exc}); check that `moldb serve` is running "
                "there and the URL is right, then retry")
        if isinstance(exc, httpx.TimeoutException):
            msg = f"{method} {where} got no answer in time ({type(exc).__name__})"
        else:
            msg = f"{method} {where} failed: the connection broke ({type(exc).__name__}: {exc})"
        if idempotent:
            return E.ServiceUnavailableError(msg + "; retry later or raise timeout= in moldb.connect")
        # a write may or may not have been committed: say so instead of retrying blindly
        return E.ServiceUnavailableError(msg + "; the write may or may not have been committed: check "
                                         "store.history(entry) before retrying")

    # -- conveniences ----------------------------------------------------------------------------------
    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET a JSON document (retried on retryable errors)."""
        return self.request("GET", path, params=params).json()

    def get_arrow(self, path: str, params: Mapping[str, Any] | None = None) -> tuple[pa.Table, httpx.Response]:
        """GET an Arrow IPC stream (retried on retryable errors); the table and the response (for headers)."""
        response = self.request("GET", path, params=params, headers={"Accept": ARROW_STREAM})
        return read_arrow(response.content), response
