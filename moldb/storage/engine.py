"""TileDB context, configuration and error mapping — done once, here.

This package (:mod:`moldb.storage`) is the only place in moldb that imports
``tiledb``. TileDB errors are translated into :mod:`moldb.errors` by
:func:`mapped` so callers never see an engine exception.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import tiledb

from moldb.errors import StorageError, StoreNotFoundError

__all__ = ["context", "is_local", "join", "mapped", "vfs"]


def _base_config() -> dict[str, str]:
    cfg = {
        "sm.compute_concurrency_level": str(max(1, os.cpu_count() or 1)),
        "sm.io_concurrency_level": str(max(1, os.cpu_count() or 1)),
    }
    # S3-compatible stores: honour the usual environment variables.
    env = {
        "vfs.s3.endpoint_override": "MOLDB_S3_ENDPOINT",
        "vfs.s3.scheme": "MOLDB_S3_SCHEME",
        "vfs.s3.region": "AWS_DEFAULT_REGION",
        "vfs.s3.aws_access_key_id": "AWS_ACCESS_KEY_ID",
        "vfs.s3.aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    }
    for key, var in env.items():
        if os.environ.get(var):
            cfg[key] = os.environ[var]
    if os.environ.get("MOLDB_S3_ENDPOINT"):
        cfg["vfs.s3.use_virtual_addressing"] = "false"
    return cfg


_CTX: dict[tuple[tuple[str, str], ...], tiledb.Ctx] = {}


def context(config: Mapping[str, str] | None = None) -> tiledb.Ctx:
    """A cached ``tiledb.Ctx`` for the base configuration plus ``config``."""
    cfg = _base_config()
    cfg.update(config or {})
    key = tuple(sorted(cfg.items()))
    if key not in _CTX:
        _CTX[key] = tiledb.Ctx(tiledb.Config(cfg))
    return _CTX[key]


def vfs(ctx: tiledb.Ctx) -> tiledb.VFS:
    """A TileDB virtual file system for ``ctx``."""
    return tiledb.VFS(ctx=ctx)


def is_local(uri: str) -> bool:
    """True for a local path or ``file://`` URI."""
    return "://" not in uri or uri.startswith("file://")


def join(uri: str, *parts: str) -> str:
    """Join URI components with ``/``."""
    return "/".join([uri.rstrip("/"), *parts])


@contextlib.contextmanager
def mapped(uri: str, action: str) -> Iterator[None]:
    """Translate TileDB errors raised inside the block into moldb errors.

    Parameters
    ----------
    uri : str
        The object the operation touched (named in the message).
    action : str
        What moldb was doing, e.g. ``"reading atoms"``.
    """
    try:
        yield
    except tiledb.TileDBError as exc:
        msg = str(exc)
        if "does not exist" in msg or "not exist" in msg or ("Cannot open" in msg and "not" in msg):
            raise StoreNotFoundError(f"{uri}: not found while {action} ({msg})") from exc
        raise StorageError(f"{uri}: storage engine failed while {action}: {msg}") from exc


def object_type(uri: str, ctx: tiledb.Ctx) -> str | None:
    """``"array"``, ``"group"`` or ``None`` for the object at ``uri``."""
    with mapped(uri, "inspecting the object type"):
        return tiledb.object_type(uri, ctx=ctx)


def open_array(uri: str, ctx: tiledb.Ctx, mode: str = "r", timestamp: Any = None) -> tiledb.Array:
    """Open a TileDB array with error mapping."""
    with mapped(uri, f"opening array in mode {mode!r}"):
        return tiledb.open(uri, mode=mode, timestamp=timestamp, ctx=ctx)
