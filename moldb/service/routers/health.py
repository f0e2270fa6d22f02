"""``GET /healthz``: liveness and the store served (no token needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from moldb.service.deps import Ctx

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(ctx: Ctx) -> dict[str, Any]:
    """The service is up and its store opens."""
    ctx.store()
    return {"status": "ok", "store": ctx.settings.store}
