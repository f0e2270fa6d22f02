"""``POST /v1/select``: atoms across the entries visible to the caller, as an Arrow IPC stream.

The selection string and ``where`` are parsed by :mod:`moldb.query` (a grammar, never
``eval``); bad ones are 422 ``validation-error`` naming the offending token.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from moldb.api.access import validate_entry_id
from moldb.errors import ValidationError
from moldb.service.arrow import ARROW_RESPONSE, arrow_response
from moldb.service.deps import Caller, Ctx, deadline_batches

router = APIRouter(prefix="/v1", tags=["select"])

Strs = str | list[str] | None


class SelectRequest(BaseModel):
    """The arguments of ``Store.select`` (and ``to_arrow(columns)``) as JSON."""

    model_config = ConfigDict(extra="forbid")

    selection: str | None = Field(None, max_length=65_536, description="Selection language, e.g. 'chain A and name CA'")
    entries: Strs = None
    chains: Strs = None
    residues: tuple[int, int] | int | str | list[str] | None = Field(
        None, description="[first, last] author residue numbers, one number, or residue names")
    atoms: Strs = None
    models: int | list[int] | None = None
    altlocs: Strs = None
    where: str | None = Field(None, max_length=65_536)
    within: float | None = None
    of: str | list[list[float]] | None = Field(None, description="A selection string (same entry) or (n, 3) points")
    box: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    altloc: str = Field("all", max_length=16)
    columns: list[str] | None = Field(None, description="Atom columns of the result (all when omitted)")


@router.post("/select", responses=ARROW_RESPONSE, response_class=Response)
def select(body: SelectRequest, who: Caller, ctx: Ctx) -> Response:
    """Selected atoms (``Selection.to_arrow(columns)`` rows), restricted to entries the caller may read."""
    store = ctx.store()
    if body.entries is not None:
        wanted = [body.entries] if isinstance(body.entries, str) else list(body.entries)
        entries = [ctx.access.check_read(store, who, validate_entry_id(e)) for e in wanted]
    else:
        entries = ctx.access.visible_entries(store, who)
    kw: dict[str, Any] = body.model_dump(exclude={"selection", "entries", "columns"})
    if isinstance(body.of, list):
        kw["of"] = np.asarray(body.of, dtype=np.float64)
    try:
        sel = store.select(body.selection, entries=entries, **kw)  # parses: bad syntax raises before any read
    except RecursionError:
        raise ValidationError("the selection is nested or chained too deeply to parse; simplify it (fewer "
                              "parentheses, or pass entries/chains/residues as keywords)") from None
    tables = []
    if entries:
        tables = deadline_batches(sel.batches(columns=body.columns), ctx.settings.query_timeout_s,
                                  ctx.settings.max_result_rows, "the selection")
    table = (pa.concat_tables(tables, promote_options="permissive") if tables
             else pa.table({"entry": pa.array([], type=pa.string())}))
    return arrow_response(table)
