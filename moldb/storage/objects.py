"""Small JSON objects kept inside a store, through TileDB's virtual file system.

Identity, tokens and the audit log of the moldb service live in the store itself
(under ``<store>/_moldb/``) so that several service processes, and a store on an
object store such as S3, share them without any other database. Objects are
whole-object writes (object stores cannot append or rename atomically): one
object per token, one per audit event.

Keys are relative paths of ``/``-separated segments of letters, digits, ``_``,
``-``, ``.`` and ``@`` (never ``..``); they cannot leave the ``_moldb`` prefix.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import tiledb

from moldb.errors import ValidationError
from moldb.storage import engine

__all__ = ["PREFIX", "ObjectStore"]

#: Folder of the store that holds moldb's own objects (not a TileDB array or group).
PREFIX = "_moldb"
_SEGMENT = re.compile(r"^[A-Za-z0-9_@][A-Za-z0-9_.@\-]{0,127}$")


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(not _SEGMENT.match(p) or ".." in p for p in parts):
        raise ValidationError(f"object key {key!r} is not valid: use '/'-separated names of letters, digits, "
                              "'_', '-', '.', '@' without '..'")
    return key


class ObjectStore:
    """Put, get, list and delete small JSON objects under ``<store>/_moldb/``.

    Parameters
    ----------
    uri : str
        Store URI (local path or any URI TileDB accepts).
    config : dict, optional
        Extra TileDB configuration (e.g. ``vfs.s3.*``), as given to :func:`moldb.open`.
    """

    def __init__(self, uri: str, config: dict[str, str] | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.root = engine.join(self.uri, PREFIX)
        self._ctx = engine.context(config)
        self._local = engine.is_local(self.uri)

    def _vfs(self) -> tiledb.VFS:
        return engine.vfs(self._ctx)  # a VFS per call: cheap, and safe to use from any thread

    def _path(self, key: str) -> str:
        return engine.join(self.root, _check_key(key))

    def _ensure_dir(self, vfs: tiledb.VFS, key: str) -> None:
        if not self._local:  # object stores have no directories
            return
        d = self.root
        for part in key.split("/")[:-1]:
            d = engine.join(d, part)
            if not vfs.is_dir(d):
                vfs.create_dir(d)

    def put(self, key: str, obj: Any) -> None:
        """Write ``obj`` as JSON at ``key``, replacing any previous object whole.

        Local stores write a temporary file and rename it, so a reader never sees half an
        object; object stores replace objects atomically themselves.
        """
        data = json.dumps(obj, sort_keys=True).encode()
        path = self._path(key)
        with engine.mapped(path, "writing a moldb object"):
            vfs = self._vfs()
            if self._local:
                if not vfs.is_dir(self.root):
                    vfs.create_dir(self.root)
                self._ensure_dir(vfs, key)
                tmp = f"{path}.tmp-{secrets.token_hex(6)}"
                with vfs.open(tmp, "wb") as f:
                    f.write(data)
                vfs.move_file(tmp, path)  # a rename: replaces an existing object atomically
            else:
                with vfs.open(path, "wb") as f:
                    f.write(data)

    def get(self, key: str) -> Any | None:
        """The object at ``key``, or None if there is none."""
        path = self._path(key)
        with engine.mapped(path, "reading a moldb object"):
            vfs = self._vfs()
            if not vfs.is_file(path):
                return None
            with vfs.open(path, "rb") as f:
                data = f.read()
        return json.loads(data)

    def delete(self, key: str) -> bool:
        """Remove the object at ``key``; False if there was none."""
        path = self._path(key)
        with engine.mapped(path, "deleting a moldb object"):
            vfs = self._vfs()
            if not vfs.is_file(path):
                return False
            vfs.remove_file(path)
        return True

    def list(self, prefix: str) -> list[str]:
        """Keys of the objects directly under folder ``prefix`` (e.g. ``"tokens"``), sorted."""
        folder = self._path(prefix)
        with engine.mapped(folder, "listing moldb objects"):
            vfs = self._vfs()
            if self._local and not vfs.is_dir(folder):
                return []
            names = [str(u).rstrip("/").rsplit("/", 1)[-1] for u in vfs.ls(folder)]
        return sorted(f"{prefix}/{n}" for n in names if _SEGMENT.match(n) and ".tmp-" not in n)
