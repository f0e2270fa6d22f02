"""``POST /v1/select``: atoms across the entries visible to the caller, as an Arrow IPC stream.

The selection string and ``where`` are parsed by :mod:`moldb.query` (a grammar, never
``eval``); bad ones are 422 ``validation-error`` naming the offending token.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from moldb._lru import ByteLRU
from moldb.api.access import validate_entry_id
from moldb.errors import ValidationError
from moldb.service.arrow import ARROW_MEDIA_TYPE, ARROW_RESPONSE, arrow_response, ipc_bytes
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
    key = _cache_key(store, body, entries) if ctx.settings.response_cache_mb > 0 else None
    if key is not None and (hit := _results.get(key)) is not None:
        return Response(hit, media_type=ARROW_MEDIA_TYPE)
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
    if key is None or table.nbytes > _MAX_CACHED:
        return arrow_response(table)
    data = ipc_bytes(table).to_pybytes()
    _results.max_bytes = int(ctx.settings.response_cache_mb * (1 << 20))
    _results.put(key, data)
    return Response(data, media_type=ARROW_MEDIA_TYPE)


#: Encoded results of recent selections. A result depends only on the request and on the latest version
#: of each entry it may read (versions never change), so the key holds both: a new deposit changes the key.
_results = ByteLRU(512 << 20)
_MAX_CACHED = 64 << 20


def _cache_key(store: Any, body: SelectRequest, entries: list[str]) -> tuple[str, str] | None:
    """``(store, digest of the request and the latest versions of entries)``, or None for a store-wide query."""
    if not entries:
        return None
    latest = store.entries()
    ids = latest.column("entry").to_pylist()
    wanted = set(entries)
    versions = sorted((e, v) for e, v in zip(ids, latest.column("version").to_pylist(), strict=True) if e in wanted)
    doc = json.dumps([body.model_dump(mode="json"), versions], sort_keys=True, default=str)
    return store.uri, hashlib.sha256(doc.encode()).hexdigest()
