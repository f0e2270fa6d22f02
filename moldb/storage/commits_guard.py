"""Keep delete commits out of TileDB's commits consolidation (TileDB issue #5771).

TileDB's commits consolidator copies a delete commit (``__commits/*.del``) into the
consolidated commits file (``*.con``), and ``vacuum`` in ``commits`` mode then removes the
``.del`` file. The next commits consolidation lists the ``.del`` again from the ``.con`` file,
asks the file system for its size and fails with *"Cannot get file size of ... .del"*: after a
``purge_versions`` (a TileDB delete), the second ``maintain()`` failed. TileDB PR #5772 fixes
this upstream; until moldb can require a release with it, :func:`has_delete_commits` tells
:func:`moldb.storage.maintenance.maintain` to leave the commit files of such an array
unconsolidated. That costs one small file per write on that array until the next fragment
consolidation (which folds the data, not the commit list) — no data and no time travel.
"""

from __future__ import annotations

import tiledb

from moldb.storage import engine

__all__ = ["has_delete_commits"]


def has_delete_commits(uri: str, ctx: tiledb.Ctx) -> bool:
    """True when the array at ``uri`` has a delete commit, standalone or inside a ``.con`` file."""
    vfs = engine.vfs(ctx)
    commits = engine.join(uri, "__commits")
    if not vfs.is_dir(commits):
        return False
    for name in vfs.ls(commits):
        name = name.rstrip("/")
        if name.endswith(".del"):
            return True
        if name.endswith(".con"):
            size = vfs.file_size(name)
            with vfs.open(name, "rb") as f:
                if b".del" in f.read(size):
                    return True
    return False
