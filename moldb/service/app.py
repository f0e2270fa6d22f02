"""The application factory: ``create_app(settings)``.

One FastAPI app per process, in front of one store; every piece of shared state (users,
tokens, namespaces, audit log, data) lives in the store, so any number of processes can
serve it. ``app_from_env`` is the factory uvicorn imports for ``moldb serve --workers N``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import moldb
from moldb.service import problems
from moldb.service.deps import ServiceContext
from moldb.service.routers import audit, deposits, entries, health, select, users
from moldb.service.settings import Settings

__all__ = ["app_from_env", "create_app"]

DESCRIPTION = """A moldb store over HTTP (wire contract: docs/service.md).

Every call but `/healthz` needs `Authorization: Bearer mdb_...`. Bulk rows are Arrow IPC streams
(`application/vnd.apache.arrow.stream`); errors are `application/problem+json` with a stable `code`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service application for ``settings`` (nothing touches the store until a request).

    Parameters
    ----------
    settings : Settings, optional
        Store URI, TileDB configuration and limits; read from ``MOLDB_SERVICE_*`` when omitted.

    Returns
    -------
    fastapi.FastAPI
    """
    settings = settings if settings is not None else Settings()
    ctx = ServiceContext(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        deposits.clean_stale_uploads(settings.upload_dir)
        yield
        ctx.stores.close()

    app = FastAPI(title="moldb", version=moldb.__version__, description=DESCRIPTION, lifespan=lifespan,
                  responses=problems.PROBLEM_RESPONSES)
    app.state.moldb = ctx
    problems.install(app)
    for r in (health, entries, deposits, select, users, audit):
        app.include_router(r.router)
    return app


def app_from_env() -> FastAPI:
    """``create_app(Settings())``: settings from ``MOLDB_SERVICE_*`` (uvicorn ``--factory`` entry point)."""
    return create_app(Settings())
