"""``GET /v1/audit``: the audit log (admins: their lab's records; global admins: all)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from moldb.service.deps import Caller, Ctx

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit")
def audit(who: Caller, ctx: Ctx, since: Annotated[int | None, Query(description="ms since the epoch", ge=0)] = None,
          limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> list[dict[str, Any]]:
    """Audit records (time, user, lab, action, entry, version, outcome, detail), oldest first."""
    who.require("admin", "reading the audit log")
    return ctx.access.audit_log(since=since, lab=None if who.is_global_admin else who.lab, limit=limit)
