"""Reading entries: list, versions, history, atoms (Arrow IPC), files, diffs and tags."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from moldb._lru import ByteLRU
from moldb.api.access import resolve_version
from moldb.errors import LimitExceededError, ValidationError
from moldb.service.arrow import ARROW_MEDIA_TYPE, ARROW_RESPONSE, WHOLE_BUFFER_BYTES, arrow_response, ipc_bytes
from moldb.service.deps import Caller, Ctx, check_tag
from moldb.service.routers._common import parse_as_of, parse_version, version_json

router = APIRouter(prefix="/v1/entries", tags=["entries"])

_FORMATS = {"cif": ("mmcif", ".cif", "chemical/x-mmcif"), "bcif": ("bcif", ".bcif", "application/octet-stream"),
            "pdb": ("pdb", ".pdb", "chemical/x-pdb")}
_HEADER_MAX = 4096
VersionQ = Annotated[str | None, Query(description="Version number or tag (latest when omitted)", max_length=64)]
AsOfQ = Annotated[str | None, Query(description="Latest version at this time: ms since the epoch or ISO-8601",
                                    max_length=64)]


@router.get("", responses=ARROW_RESPONSE, response_class=Response)
def list_entries(who: Caller, ctx: Ctx) -> Response:
    """``Store.entries()`` rows of the entries visible to the caller, as an Arrow IPC stream."""
    store = ctx.store()
    table = store.entries()
    visible = set(ctx.access.visible_entries(store, who))
    keep = [i for i, e in enumerate(table.column("entry").to_pylist()) if e in visible]
    return arrow_response(table.take(pa.array(keep, type=pa.int64())))


@router.get("/{entry}")
def get_version(entry: str, who: Caller, ctx: Ctx, version: VersionQ = None, as_of: AsOfQ = None) -> dict[str, Any]:
    """The resolved ``VersionInfo`` of one version of an entry."""
    store = ctx.store()
    eid = ctx.access.check_read(store, who, entry)
    return version_json(resolve_version(store, eid, parse_version(version), parse_as_of(as_of)))


@router.get("/{entry}/history")
def history(entry: str, who: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    """Every version of an entry, oldest first."""
    store = ctx.store()
    eid = ctx.access.check_read(store, who, entry)
    return [version_json(v) for v in store.history(eid)]


@router.get("/{entry}/atoms", responses=ARROW_RESPONSE, response_class=Response)
def atoms(entry: str, who: Caller, ctx: Ctx, version: VersionQ = None, as_of: AsOfQ = None,
          columns: Annotated[str | None, Query(description="Comma-separated atom columns (all when omitted)",
                                               max_length=4096)] = None) -> Response:
    """The atom table of one version (``Structure.atoms``) as an Arrow IPC stream.

    The resolved ``VersionInfo`` is in the schema metadata (``moldb.version``) and in the
    ``Moldb-Version`` header (JSON, without ``summary`` when that would make it too long).
    """
    store = ctx.store()
    eid = ctx.access.check_read(store, who, entry)
    rec = resolve_version(store, eid, parse_version(version), parse_as_of(as_of))
    cap = ctx.settings.max_result_rows
    if rec.n_atoms > cap:
        raise LimitExceededError(f"{eid} v{rec.version} has {rec.n_atoms:,} atoms, more than the service's result cap "
                                 f"({cap:,} rows); ask for fewer columns with a selection (POST /v1/select)")
    cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    key = (store.uri, eid, rec.version, rec.content_hash, tuple(cols) if cols is not None else None)
    hit = _responses.get(key) if ctx.settings.response_cache_mb > 0 else None
    if hit is not None:  # versions never change: an encoded response stays valid (access was checked above)
        body, header, rows = hit
        return Response(body, media_type=ARROW_MEDIA_TYPE, headers={"Moldb-Version": header, "Moldb-Rows": rows})
    s = store.get(eid, version=rec.version, columns=cols)
    info = version_json(s.version)
    table = s.atoms
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"moldb.version": json.dumps(info)})
    header = json.dumps(info)
    if len(header) > _HEADER_MAX:
        header = json.dumps({k: v for k, v in info.items() if k != "summary"})
    if table.nbytes > WHOLE_BUFFER_BYTES or ctx.settings.response_cache_mb <= 0:
        return arrow_response(table, {"Moldb-Version": header})
    body = ipc_bytes(table).to_pybytes()
    _responses.max_bytes = int(ctx.settings.response_cache_mb * (1 << 20))
    _responses.put(key, _Sized(body, header, str(table.num_rows)))
    return Response(body, media_type=ARROW_MEDIA_TYPE, headers={"Moldb-Version": header,
                                                                 "Moldb-Rows": str(table.num_rows)})


class _Sized(tuple):
    """(body, header, rows) whose ``len`` is the body size, for the byte-bounded cache."""

    def __new__(cls, body: bytes, header: str, rows: str) -> _Sized:
        return super().__new__(cls, (body, header, rows))

    def __len__(self) -> int:
        return len(self[0])


_responses = ByteLRU(512 << 20)


@router.get("/{entry}/file", response_class=Response,
            responses={200: {"content": {m: {} for _, _, m in _FORMATS.values()}, "description": "The file"}})
def export_file(entry: str, who: Caller, ctx: Ctx, version: VersionQ = None,
                format: Annotated[str, Query(pattern="^(cif|bcif|pdb)$")] = "cif") -> Response:
    """One version written as mmCIF, BinaryCIF or PDB."""
    store = ctx.store()
    eid = ctx.access.check_read(store, who, entry)
    fmt, suffix, media = _FORMATS[format]
    tmp = tempfile.mkdtemp(prefix="moldb-export-", dir=ctx.settings.upload_dir)
    try:
        s = store.get(eid, version=parse_version(version))
        path = s.write(Path(tmp) / f"{eid}{suffix}", format=fmt)
        data = path.read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Response(data, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{eid}{suffix}"', "Moldb-Version": str(s.version.version)})


@router.get("/{entry}/diff")
def diff(entry: str, who: Caller, ctx: Ctx, a: Annotated[str, Query(max_length=64)],
         b: Annotated[str | None, Query(max_length=64)] = None) -> dict[str, Any]:
    """What changed from version ``a`` to ``b`` (latest when omitted): ``Diff.as_dict()``."""
    store = ctx.store()
    eid = ctx.access.check_read(store, who, entry)
    va, vb = parse_version(a), parse_version(b)
    assert va is not None
    d: dict[str, Any] = store.diff(eid, va, vb).as_dict()
    return d


@router.get("/{entry}/tags")
def tags(entry: str, who: Caller, ctx: Ctx) -> dict[str, int]:
    """Tag name → version number."""
    store = ctx.store()
    eid = ctx.access.check_read(store, who, entry)
    return store.tags(eid)


class TagRequest(BaseModel):
    """Body of ``PUT /v1/entries/{entry}/tags/{name}``."""

    version: int | str


@router.put("/{entry}/tags/{name}", status_code=204, response_class=Response)
def put_tag(entry: str, name: str, body: TagRequest, who: Caller, ctx: Ctx) -> Response:
    """Name a version (depositor of the entry's namespace); audited."""
    store = ctx.store()
    eid = entry.upper()
    try:
        check_tag(name)
        eid = ctx.access.check_read(store, who, entry)
        ctx.access.check_write(store, who, eid)
        version = parse_version(body.version)
        if version is None or (isinstance(version, str) and len(version) > 64):
            raise ValidationError(f"version {body.version!r} is not a version number or tag")
        rec = resolve_version(store, eid, version)
        store.tag(eid, rec.version, name, author=who.user)
    except Exception as exc:
        ctx.access.audit(who.user, who.lab, "tag", eid, None, outcome=_outcome(exc), detail={"tag": name[:64]})
        raise
    ctx.access.audit(who.user, who.lab, "tag", eid, rec.version, detail={"tag": name})
    return Response(status_code=204)


def _outcome(exc: BaseException) -> str:
    from moldb.service.problems import problem_for

    return "error:" + problem_for(exc)[0]
