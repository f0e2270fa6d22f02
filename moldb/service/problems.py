"""Errors as ``application/problem+json`` (RFC 9457) with the stable codes of ``docs/service.md``.

Every :class:`moldb.errors.MoldbError` maps to one code; the client maps the code back to
the exception class, so ``except moldb.EntryNotFoundError`` works locally and remotely.
Retryable errors carry ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from moldb import errors as E

__all__ = ["CODES", "PROBLEM_TYPE", "Problem", "UploadTooLargeError", "install", "problem_for", "problem_response"]

PROBLEM_TYPE = "https://moldb.dev/problems/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("moldb.service")


class UploadTooLargeError(E.LimitExceededError):
    """The request body is larger than the upload cap (HTTP 413, code ``payload-too-large``)."""


#: Exception class → (code, HTTP status), most specific first (the first ``isinstance`` match wins).
CODES: list[tuple[type[BaseException], str, int]] = [
    (E.EntryNotFoundError, "entry-not-found", 404),
    (E.DuplicateEntryError, "duplicate-entry", 409),
    (E.UnsupportedFormatError, "unsupported-format", 422),
    (E.ParseError, "parse-error", 422),
    (E.ValidationError, "validation-error", 422),
    (E.AuthenticationError, "unauthenticated", 401),
    (E.PermissionDeniedError, "forbidden", 403),
    (E.AccessError, "forbidden", 403),
    (E.RateLimitedError, "rate-limited", 429),
    (UploadTooLargeError, "payload-too-large", 413),
    (E.LimitExceededError, "limit-exceeded", 422),
    (E.ConcurrencyError, "busy", 503),
    (E.StorageUnavailableError, "storage-unavailable", 503),
    (E.ServiceUnavailableError, "unavailable", 503),
    (E.StoreNotFoundError, "store-not-found", 500),
    (E.SchemaVersionError, "schema-version", 500),
    (E.StorageError, "storage-error", 500),
]
_TITLES = {
    "entry-not-found": "Entry not found", "duplicate-entry": "Entry already exists", "parse-error": "File not parsed",
    "unsupported-format": "Unsupported file format", "validation-error": "Invalid request",
    "unauthenticated": "Not authenticated", "forbidden": "Forbidden", "rate-limited": "Too many requests",
    "payload-too-large": "Upload too large", "limit-exceeded": "Limit exceeded", "busy": "Store busy",
    "storage-unavailable": "Storage unavailable", "unavailable": "Service unavailable",
    "store-not-found": "Store not found", "schema-version": "Store schema version", "storage-error": "Storage error",
    "not-found": "Not found", "method-not-allowed": "Method not allowed", "internal": "Internal error",
}
#: Default Retry-After (s) of retryable errors that do not carry their own.
RETRY_AFTER_S = {"busy": 1, "storage-unavailable": 2, "unavailable": 2, "rate-limited": 1}


class Problem(BaseModel):
    """The body of every error response (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    retryable: bool


def problem_for(exc: BaseException) -> tuple[str, int]:
    """The stable code and HTTP status of an exception (``internal``, 500 for anything unexpected)."""
    for cls, code, status in CODES:
        if isinstance(exc, cls):
            return code, status
    return "internal", 500


def problem_response(code: str, status: int, detail: str, retryable: bool = False,
                     retry_after: float | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """A problem+json response."""
    body = {"type": PROBLEM_TYPE + code, "title": _TITLES.get(code, code), "status": status, "detail": detail,
            "code": code, "retryable": retryable}
    hdrs = dict(headers or {})
    if retryable:
        wait = retry_after if retry_after is not None else RETRY_AFTER_S.get(code, 1)
        hdrs["Retry-After"] = str(max(1, math.ceil(wait)))
    if code == "unauthenticated":
        hdrs["WWW-Authenticate"] = 'Bearer realm="moldb"'
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=hdrs)


def _moldb_error(request: Request, exc: Exception) -> JSONResponse:
    code, status = problem_for(exc)
    detail = str(exc)
    scrub = getattr(request.state, "scrub", None)  # private upload directory: never shown to clients
    if scrub:
        detail = detail.replace(scrub.rstrip("/") + "/", "")
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, detail)
    return problem_response(code, status, detail, bool(getattr(exc, "retryable", False)),
                            getattr(exc, "retry_after", None))


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
    return problem_response("validation-error", 422, "; ".join(parts) + " (see /openapi.json for the request format)")


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not-found", 405: "method-not-allowed", 401: "unauthenticated", 403: "forbidden",
            413: "payload-too-large", 429: "rate-limited"}.get(exc.status_code, "internal" if exc.status_code >= 500
                                                               else "validation-error")
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no endpoint {request.method} {request.url.path}; see /openapi.json for the endpoints"
    return problem_response(code, exc.status_code, detail, headers=dict(exc.headers or {}))


def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response("internal", 500, f"internal error ({type(exc).__name__}); the service log has the "
                            "traceback")


def install(app: FastAPI) -> None:
    """Register the problem+json exception handlers on ``app``."""
    app.add_exception_handler(E.MoldbError, _moldb_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _internal)


#: OpenAPI description of the error responses every route may give.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Problem, "description": "Client error (problem+json; see docs/service.md for the codes)",
            "content": {MEDIA_TYPE: {}}},
    "5XX": {"model": Problem, "description": "Server or storage error (problem+json); retryable ones carry "
                                             "Retry-After", "content": {MEDIA_TYPE: {}}},
}
