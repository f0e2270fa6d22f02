"""Writing entries: ``POST /v1/entries`` (ingest) and ``POST /v1/entries/{entry}/versions`` (deposit).

The body is the file's bytes. It streams into a private temporary directory (removed after
the request) and is refused with 413 as soon as it passes the upload cap; the client's
``filename`` is validated as a plain base name and only names the file's format. The
version's ``author`` is the authenticated user and its namespace the token's lab.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from moldb.api.access import Principal, validate_entry_id
from moldb.errors import ValidationError
from moldb.schema.records import VersionInfo
from moldb.service.deps import Caller, Ctx, ServiceContext, check_filename
from moldb.service.problems import UploadTooLargeError, problem_for
from moldb.service.routers._common import version_json

router = APIRouter(prefix="/v1/entries", tags=["deposits"])

UPLOAD_PREFIX = "moldb-upload-"
FilenameQ = Annotated[str | None, Query(description="The file's base name; its suffix names the format "
                                        "(.cif, .cif.gz, .pdb, .bcif, .mmtf ...)", max_length=128)]
MessageQ = Annotated[str, Query(description="Why this version (recorded in the history)", max_length=4096)]
NamespaceQ = Annotated[str | None, Query(description="Namespace of a new entry (global admins only; default: "
                                         "the token's lab)", max_length=64)]
_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}}


async def receive_upload(request: Request, ctx: ServiceContext, filename: str) -> Path:
    """Stream the request body to ``<private dir>/<filename>``, enforcing the upload cap.

    Raises
    ------
    UploadTooLargeError
        ``Content-Length`` or the bytes received exceed ``max_upload_bytes`` (nothing kept).
    ValidationError
        The body is empty.
    """
    cap = ctx.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    too_big = (f"upload larger than the service's cap of {cap:,} bytes; split the data or ask the operator to raise "
               "--max-upload-mb")
    if declared.isdigit() and int(declared) > cap:
        raise UploadTooLargeError(too_big)
    tmp = tempfile.mkdtemp(prefix=UPLOAD_PREFIX, dir=ctx.settings.upload_dir)  # mode 0700, fresh name
    request.state.scrub = tmp
    request.state.upload_dir = tmp
    path = Path(tmp) / filename
    n = 0
    with path.open("xb") as f:
        async for chunk in request.stream():
            n += len(chunk)
            if n > cap:
                raise UploadTooLargeError(too_big)
            f.write(chunk)
    if n == 0:
        raise ValidationError(f"{filename}: the request body is empty; send the file's bytes as the body")
    return path


def clean_stale_uploads(upload_dir: str | None, older_than_s: float = 3600.0) -> int:
    """Remove upload directories left by killed processes (older than ``older_than_s``); returns the count."""
    root = Path(upload_dir or tempfile.gettempdir())
    n = 0
    for d in root.glob(UPLOAD_PREFIX + "*"):
        with contextlib.suppress(OSError):
            if d.is_dir() and time.time() - d.stat().st_mtime > older_than_s:
                shutil.rmtree(d)
                n += 1
    return n


async def _write(request: Request, ctx: ServiceContext, who: Principal, action: str, entry: str | None,
                 filename: str | None, prepare: Callable[[], Any], commit: Callable[[Path, Any], VersionInfo]
                 ) -> JSONResponse:
    """Shared flow of ingest and deposit: check, receive, commit in a worker thread, audit."""
    try:
        name = check_filename(filename)
        prepared = await run_in_threadpool(prepare)  # permission checks before reading the body
        path = await receive_upload(request, ctx, name)
        v = await run_in_threadpool(commit, path, prepared)
    except Exception as exc:
        await run_in_threadpool(ctx.access.audit, who.user, who.lab, action, entry, None,
                                "error:" + problem_for(exc)[0], {"filename": (filename or "")[:128]})
        raise
    finally:
        tmp = getattr(request.state, "upload_dir", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    await run_in_threadpool(ctx.access.audit, who.user, who.lab, action, v.entry, v.version, "ok",
                            {"filename": filename, "content_hash": v.content_hash})
    return JSONResponse(version_json(v), status_code=201)


@router.post("", status_code=201, openapi_extra=_BODY)
async def ingest(request: Request, who: Caller, ctx: Ctx, filename: FilenameQ = None,
                 entry: Annotated[str | None, Query(max_length=64)] = None, message: MessageQ = "",
                 namespace: NamespaceQ = None) -> JSONResponse:
    """Ingest the uploaded file as version 1 of a new entry (depositor); 201 with its ``VersionInfo``."""
    def prepare() -> str:
        if entry is not None:
            validate_entry_id(entry)
        return who.write_namespace(namespace)

    def commit(path: Path, ns: str) -> VersionInfo:
        return ctx.store().ingest(path, entry=entry, author=who.user, message=message, namespace=ns,
                                  source_name=path.name)

    return await _write(request, ctx, who, "ingest", entry.upper() if entry else None, filename, prepare, commit)


@router.post("/{entry}/versions", status_code=201, openapi_extra=_BODY)
async def deposit(entry: str, request: Request, who: Caller, ctx: Ctx, filename: FilenameQ = None,
                  message: MessageQ = "", namespace: NamespaceQ = None) -> JSONResponse:
    """Commit the uploaded file as the next version of ``entry`` (created if new; depositor of its namespace)."""
    def prepare() -> str:
        eid = validate_entry_id(entry)
        ns = ctx.access.check_write(ctx.store(), who, eid)
        return ns if ns is not None else who.write_namespace(namespace)

    def commit(path: Path, ns: str) -> VersionInfo:
        return ctx.store().deposit(path, entry=entry, author=who.user, message=message, namespace=ns,
                                   source_name=path.name)

    return await _write(request, ctx, who, "deposit", entry.upper(), filename, prepare, commit)
