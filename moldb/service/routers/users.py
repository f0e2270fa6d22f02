"""Users and tokens: create (admin of the lab), list, revoke; ``whoami``. Audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from moldb.service.deps import Caller, Ctx

router = APIRouter(prefix="/v1", tags=["users"])


class UserRequest(BaseModel):
    """Body of ``POST /v1/users``."""

    name: str = Field(max_length=64)
    lab: str = Field(max_length=64)
    role: str = Field(max_length=16)
    expires_days: float | None = Field(None, gt=0)


@router.post("/users", status_code=201)
def add_user(body: UserRequest, who: Caller, ctx: Ctx) -> dict[str, Any]:
    """Create a token for a user of a lab (admin of that lab); the token is in the reply, once."""
    try:
        ctx.access.require_admin(who, body.lab, "adding a user")
        token, info = ctx.access.add_user(body.name, body.lab, body.role, body.expires_days, actor=who.user)
    except Exception as exc:
        from moldb.service.problems import problem_for

        ctx.access.audit(who.user, who.lab, "user.add", outcome="error:" + problem_for(exc)[0],
                         detail={"user": body.name, "lab": body.lab, "role": body.role})
        raise
    return {"token": token, **info.as_dict()}


@router.get("/tokens")
def list_tokens(who: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    """Tokens of the caller's lab (every lab for a global admin); never secrets or hashes."""
    who.require("admin", "listing tokens")
    return [t.as_dict() for t in ctx.access.tokens(None if who.is_global_admin else who.lab)]


@router.delete("/tokens/{token_id}", status_code=204, response_class=Response)
async def revoke_token(token_id: Annotated[str, Path(max_length=64)], who: Caller, ctx: Ctx) -> Response:
    """Revoke a token (admin of its lab); every service process refuses it within the token cache TTL."""
    await run_in_threadpool(ctx.access.revoke, token_id, who.user, who)
    return Response(status_code=204)


@router.get("/whoami")
def whoami(who: Caller) -> dict[str, Any]:
    """The caller: user, lab, role and token id."""
    return {"user": who.user, "lab": who.lab, "role": who.role, "token_id": who.token_id}
