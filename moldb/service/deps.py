"""Dependencies: the store handle of this process, the caller (auth + rate limit), limits.

Route functions are plain ``def`` (run in FastAPI's thread pool): each worker thread opens
its own :class:`moldb.Store` handle once (TileDB handles are reopened on refresh, which is
not safe to share between threads) through :class:`StorePool`, and a route uses the store
only inside its own thread.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request

import moldb
from moldb.api.access import Access, Principal
from moldb.errors import LimitExceededError, RateLimitedError, ValidationError
from moldb.service.settings import Settings

__all__ = ["Caller", "Ctx", "RateLimiter", "ServiceContext", "StorePool", "check_filename", "check_tag",
           "current_user", "deadline_batches", "get_ctx"]

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class StorePool:
    """One :class:`moldb.Store` per thread for one store URI, opened on first use."""

    def __init__(self, uri: str, config: dict[str, str] | None = None) -> None:
        self.uri = uri
        self.config = dict(config or {})
        self._local = threading.local()
        self._all: list[moldb.Store] = []
        self._lock = threading.Lock()

    def store(self) -> moldb.Store:
        """This thread's store handle."""
        st = getattr(self._local, "store", None)
        if st is None:
            st = moldb.open(self.uri, config=self.config or None)
            self._local.store = st
            with self._lock:
                self._all.append(st)
        return st

    def close(self) -> None:
        """Close every handle (at shutdown)."""
        with self._lock:
            for st in self._all:
                st.close()
            self._all.clear()


class RateLimiter:
    """Token bucket per API token: ``rate`` requests/s sustained, ``burst`` at once (this process)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one request of ``key``'s bucket.

        Raises
        ------
        RateLimitedError
            The bucket is empty; ``retry_after`` (s) says when one request is available again.
        """
        now = time.monotonic()
        with self._lock:
            level, last = self._buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate)
            if level < 1.0:
                self._buckets[key] = (level, now)
                wait = (1.0 - level) / self.rate
                exc = RateLimitedError(f"more than {self.rate:g} requests/s (burst {self.burst:g}) with token {key}; "
                                       f"retry after {math.ceil(wait)} s or spread requests out")
                exc.retry_after = wait  # type: ignore[attr-defined]
                raise exc
            self._buckets[key] = (level - 1.0, now)


class ServiceContext:
    """Everything a request needs, created once per process by :func:`moldb.service.create_app`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stores = StorePool(settings.store, settings.tiledb_config)
        self.access = Access(settings.store, settings.tiledb_config or None, cache_ttl_s=settings.token_cache_ttl_s)
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)

    def store(self) -> moldb.Store:
        """This thread's store handle."""
        return self.stores.store()


async def get_ctx(request: Request) -> ServiceContext:
    """The process's :class:`ServiceContext` (``app.state.moldb``)."""
    ctx: ServiceContext = request.app.state.moldb
    return ctx


Ctx = Annotated[ServiceContext, Depends(get_ctx)]


def current_user(request: Request, ctx: Ctx) -> Principal:
    """Authenticate the ``Authorization: Bearer`` token and spend one request of its rate limit.

    Raises
    ------
    AuthenticationError
        No, malformed, unknown, expired or revoked token (401).
    RateLimitedError
        The token's bucket is empty (429 with Retry-After).
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    who = ctx.access.authenticate(token.strip() if scheme.lower() == "bearer" else None)
    ctx.limiter.take(who.token_id)
    request.state.principal = who
    return who


Caller = Annotated[Principal, Depends(current_user)]


def check_tag(name: str) -> str:
    """Validate a tag name (1-64 letters, digits, ``_ . -``; not all digits)."""
    if not _TAG.match(name) or name.isdigit() or ".." in name:
        raise ValidationError(f"tag {name!r} is not valid: use 1-64 letters, digits, '_', '.' or '-', starting with a "
                              "letter or digit and not all digits")
    return name


def check_filename(name: str | None) -> str:
    """Validate an upload's file name: a plain base name whose suffix names the format.

    Raises
    ------
    ValidationError
        Missing, or containing ``/``, ``\\``, ``..``, NUL, spaces or other characters.
    """
    if not name:
        raise ValidationError("query parameter 'filename' is required: the upload's file name, whose suffix names "
                              "the format (e.g. 1abc.cif.gz, 1abc.pdb, 1abc.bcif)")
    if not _FILENAME.match(name) or ".." in name:
        raise ValidationError(f"filename {name!r} is not valid: give a base name of letters, digits, '_', '.' or '-' "
                              "(no directories), e.g. 1abc.cif.gz")
    return name


def deadline_batches(batches: Iterator[Any], timeout_s: float, max_rows: int, what: str) -> list[Any]:
    """Collect Arrow tables from ``batches``, enforcing the query time budget and the row cap.

    The time budget is checked between batches (a query is not interrupted inside one).

    Raises
    ------
    LimitExceededError
        More than ``max_rows`` rows, or more than ``timeout_s`` seconds.
    """
    start = time.monotonic()
    out, rows = [], 0
    for b in batches:
        rows += b.num_rows
        if rows > max_rows:
            raise LimitExceededError(f"{what} has more than {max_rows:,} rows (the service's result cap); narrow the "
                                     "selection or restrict entries")
        if time.monotonic() - start > timeout_s:
            raise LimitExceededError(f"{what} took more than {timeout_s:g} s (the service's query timeout); narrow "
                                     "the selection or restrict entries")
        out.append(b)
    return out
