"""Fragment consolidation that copes with cells larger than TileDB's copy buffers.

TileDB's fragment consolidator copies cells through buffers holding one part in six of
``sm.mem.total_budget`` (``sm.mem.consolidation.buffers_weight`` 1, against reader 3 and
writer 2), shared between the attributes by their average cell size. A cell larger than its
attribute's share stops it with *"Consolidation read 0 cells, no progress can be made"*, and
the fragment it had begun to write stays behind uncommitted (vacuum never removes it).

moldb's budget (:func:`moldb.storage.backend.consolidation_budget`: four times the array's
size, at least 64 MB) gives the blob attribute of a small ``blocks`` array ~10.6 MB. A store
holding a large entry in the single-blob layout (chunking off, ``MOLDB_CHUNK_ROWS=0``) has
cells larger than that — BIG8's coordinates are one 10.3 MB cell in a 12.8 MB array — and
``maintain()`` failed on it. :func:`consolidate_fragments` keeps the budget (a large one costs
buffer set-up on every consolidation) and, when TileDB reports no progress, removes the
uncommitted fragment and retries with four times the budget. A cell never exceeds the array,
so the second try (sixteen times the array) always has room for the largest one.
"""

from __future__ import annotations

from collections.abc import Mapping

import tiledb

from moldb.storage import engine

__all__ = ["GROWTH", "NO_PROGRESS", "consolidate_fragments"]

NO_PROGRESS = "no progress can be made"  # TileDB's message when a cell does not fit its copy buffer
GROWTH = 4
MAX_BUDGET = 1 << 40


def _fragment_dirs(uri: str, ctx: tiledb.Ctx) -> set[str]:
    vfs = engine.vfs(ctx)
    frags = engine.join(uri, "__fragments")
    return {u.rstrip("/") for u in vfs.ls(frags)} if vfs.is_dir(frags) else set()


def _drop_uncommitted(uri: str, ctx: tiledb.Ctx, before: set[str]) -> list[str]:
    """Remove the fragment directories that appeared since ``before`` and have no commit file.

    Only called under the store's writer lock: no other writer can be creating a fragment.
    """
    vfs = engine.vfs(ctx)
    dropped = []
    for frag in sorted(_fragment_dirs(uri, ctx) - before):
        name = frag.rsplit("/", 1)[-1]
        if not vfs.is_file(engine.join(uri, "__commits", name + ".wrt")):
            vfs.remove_dir(frag)
            dropped.append(frag)
    return dropped


def consolidate_fragments(uri: str, config: Mapping[str, str], ctx: tiledb.Ctx) -> int:
    """``tiledb.consolidate`` in ``fragments`` mode, retried with a larger budget while a cell does not fit.

    Parameters
    ----------
    uri : str
        The array.
    config : mapping
        Consolidation settings, including ``sm.mem.total_budget`` (the first try's budget).
    ctx : tiledb.Ctx

    Returns
    -------
    int
        The budget that succeeded.

    Raises
    ------
    tiledb.TileDBError
        Any other failure, or no progress even at :data:`MAX_BUDGET`.
    """
    budget = int(config["sm.mem.total_budget"])
    while True:
        before = _fragment_dirs(uri, ctx)
        cfg = {**config, "sm.consolidation.mode": "fragments", "sm.mem.total_budget": str(budget)}
        try:
            tiledb.consolidate(uri, config=tiledb.Config(cfg), ctx=ctx)
            return budget
        except tiledb.TileDBError as exc:
            if NO_PROGRESS not in str(exc) or budget >= MAX_BUDGET:
                raise
        _drop_uncommitted(uri, ctx, before)
        budget = min(budget * GROWTH, MAX_BUDGET)
