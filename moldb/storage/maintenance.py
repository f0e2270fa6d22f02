"""Store maintenance: consolidation, vacuum, orphan-block collection, explicit version purges.

Everything here runs under the store's writer lock (:meth:`Backend.writing`), so no commit
interleaves with it, and every step writes at the lock's fresh timestamp.

Why history survives maintenance
--------------------------------
* ``versions`` and ``tags`` are sparse arrays. Consolidating sparse fragments keeps each
  cell's own timestamp (TileDB writes them into the consolidated fragment), so opening
  ``versions`` at ``(0, t)`` still returns exactly the cells committed at or before ``t``;
  moldb's own time travel filters on the ``ts`` attribute anyway.
* Blocks are immutable and never overwritten (random 62-bit ids). Consolidation rewrites
  them into one fragment byte for byte; a version reads its blocks by id at "now".

``tests/test_maintain.py`` checks both: every earlier version reads back bit-identical and
``as_of`` answers as before, after consolidation and vacuum.

Orphan blocks
-------------
A writer that dies between writing its blocks and its ``versions`` cell leaves blocks no
version references. :func:`maintain` deletes those older than a grace period (default one
hour) with a TileDB delete query, then purges them during consolidation. Under the writer
lock (a ``flock`` locally, a lease object on S3: ``docs/storage-s3.md``) no commit is in
flight, so the grace period only protects a writer whose lease was taken over while it
stalled, and is deliberately generous.

Orphan trajectories (``frames`` fragments of a crashed commit or of purged versions) are
collected the same way, by :mod:`moldb.storage.frames_gc`.

The chunk cells of a chunked block (:mod:`moldb.storage.chunks`, group ``"<group>#<k>@<parent>"``)
belong to their parent: they are referenced exactly when it is, and are collected with it (a
version's blocks and their chunks land in one fragment, so a crash never splits them).

Readers in *other* processes that hold an open store across a vacuum must reopen it: their
TileDB handles still list the vacuumed fragment files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import tiledb

from moldb.errors import EntryNotFoundError, ValidationError
from moldb.storage import engine
from moldb.storage.arrays import ARRAY_NAMES
from moldb.storage.backend import Backend, consolidation_budget
from moldb.storage.chunks import chunk_parent
from moldb.storage.commits_guard import has_delete_commits
from moldb.storage.consolidate import consolidate_fragments
from moldb.storage.frames_gc import collect_orphan_frames

__all__ = ["DEFAULT_ORPHAN_GRACE_S", "find_orphans", "maintain", "maintenance_log", "purge_versions", "store_stats"]

DEFAULT_ORPHAN_GRACE_S = 3600.0
LOG_KEY = "moldb.maintenance.log"
LOG_KEEP = 50  # entries of the maintenance log kept in the store metadata
_DELETE_CHUNK = 500  # block ids per delete condition
SENTINEL_BLOCK = 1  # never a real block id (those start at 16)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def store_stats(backend: Backend) -> dict[str, dict[str, int]]:
    """Fragments and bytes on disk per array."""
    vfs = engine.vfs(backend.ctx)
    out = {}
    for name in ARRAY_NAMES:
        if not backend.has_array(name):  # added after the store was created (e.g. ``frames``)
            out[name] = {"fragments": 0, "bytes": 0}
            continue
        uri = backend.array_uri(name)
        with engine.mapped(uri, "measuring fragments"):
            frags = len(tiledb.array_fragments(uri, ctx=backend.ctx))
            size = int(vfs.dir_size(uri))
        out[name] = {"fragments": frags, "bytes": size}
    return out


def _referenced_blocks(backend: Backend) -> set[int]:
    cells = backend.read_versions(attrs=["blocks"])
    ref: set[int] = set()
    for b in cells["blocks"]:
        ref.update(int(v) for v in json.loads(_s(b)).values())
    return ref


def _block_cells(backend: Backend, until: int) -> dict[str, Any]:
    uri = backend.array_uri("blocks")
    with engine.mapped(uri, "listing blocks"), tiledb.open(uri, "r", timestamp=(0, until), ctx=backend.ctx) as arr:
        return arr.query(attrs=["entry", "group"], order="U")[:]


def find_orphans(backend: Backend, until: int, cutoff: int) -> dict[str, list[dict[str, Any]]]:
    """Blocks that no version references.

    Parameters
    ----------
    backend : Backend
    until : int
        Look at blocks written at or before this timestamp (ms).
    cutoff : int
        Orphans written at or before ``cutoff`` are ``old`` (collectable), later ones ``young``.

    Returns
    -------
    dict
        ``{"old": [...], "young": [...]}``, each item ``{"block", "entry", "group"}``.
    """
    ref = _referenced_blocks(backend)
    cells = _block_cells(backend, until)
    ids = np.asarray(cells["block"], dtype=np.uint64)
    groups = [_s(g) for g in cells["group"]]
    # a chunk cell (group "xyz#3") is referenced through its parent block
    owner = [chunk_parent(int(b), g) or int(b) for b, g in zip(ids, groups, strict=True)]
    orphan = np.array([o not in ref for o in owner], dtype=bool)
    old_ids: set[int] = set()
    if orphan.any():
        old_cells = _block_cells(backend, cutoff) if cutoff > 0 else {"block": np.zeros(0, np.uint64)}
        old_ids = {int(b) for b in old_cells["block"]}
    out: dict[str, list[dict[str, Any]]] = {"old": [], "young": []}
    for i in np.flatnonzero(orphan):
        b = int(ids[i])
        item = {"block": b, "entry": _s(cells["entry"][i]), "group": groups[i]}
        out["old" if b in old_ids else "young"].append(item)
    return out


def _delete_blocks(backend: Backend, ids: list[int], ts: int) -> None:
    uri = backend.array_uri("blocks")
    with engine.mapped(uri, "deleting orphan blocks"), tiledb.open(uri, "d", timestamp=ts, ctx=backend.ctx) as arr:
        for k in range(0, len(ids), _DELETE_CHUNK):
            chunk = ids[k:k + _DELETE_CHUNK]
            arr.query(cond=f"block in {[int(b) for b in chunk]}").submit()


def _consolidate(backend: Backend, name: str, ts: int, vacuum: bool, nbytes: int) -> None:
    uri = backend.array_uri(name)
    window = {"sm.consolidation.timestamp_start": "0", "sm.consolidation.timestamp_end": str(ts),
              "sm.mem.total_budget": str(consolidation_budget(nbytes))}
    # an array with delete commits keeps its commit files: TileDB #5771 (moldb.storage.commits_guard)
    skip = has_delete_commits(uri, backend.ctx)
    modes = [m for m in ("fragments", "commits", "fragment_meta", "array_meta") if not (skip and m == "commits")]
    with engine.mapped(uri, "consolidating"):
        for mode in modes:
            cfg = {**window, "sm.consolidation.mode": mode}
            if mode == "fragments":  # a cell larger than TileDB's copy buffers: retried with a larger budget
                cfg["sm.consolidation.purge_deleted_cells"] = "true"
                consolidate_fragments(uri, cfg, backend.ctx)
                continue
            tiledb.consolidate(uri, config=tiledb.Config(cfg), ctx=backend.ctx)
        if vacuum:
            for mode in modes:
                tiledb.vacuum(uri, config=tiledb.Config({"sm.vacuum.mode": mode}), ctx=backend.ctx)


def _log(backend: Backend, record: dict[str, Any]) -> None:
    """Append ``record`` to the maintenance log in the store metadata (caller holds the writer lock)."""
    log = [*maintenance_log(backend), record][-LOG_KEEP:]
    backend.set_meta(LOG_KEY, json.dumps(log))


def maintenance_log(backend: Backend) -> list[dict[str, Any]]:
    """Past maintenance runs and purges recorded in the store metadata (oldest first)."""
    with engine.mapped(backend.uri, "reading store metadata"), tiledb.Group(backend.uri, "r", ctx=backend.ctx) as g:
        raw = g.meta.get(LOG_KEY, "[]")
    try:
        return list(json.loads(str(raw)))
    except ValueError:
        return []


def maintain(backend: Backend, *, vacuum: bool = True, orphan_grace_s: float = DEFAULT_ORPHAN_GRACE_S,
             collect_orphans: bool = True, arrays: Iterable[str] = ARRAY_NAMES) -> dict[str, Any]:
    """Consolidate and vacuum the store's arrays and collect orphan blocks.

    Parameters
    ----------
    backend : Backend
    vacuum : bool
        Also delete the fragments that consolidation superseded (reclaims the space).
    orphan_grace_s : float
        Unreferenced blocks younger than this are reported, not deleted.
    collect_orphans : bool
        Delete old orphan blocks (otherwise only report them).
    arrays : iterable of str
        Arrays to consolidate (default: all).

    Returns
    -------
    dict
        ``timestamp``, ``seconds``, per array ``fragments_before/after`` and
        ``bytes_before/after``, totals, ``orphans`` (``collected`` and ``young`` blocks) and
        ``orphan_frames`` (orphan trajectories, :func:`moldb.storage.frames_gc.collect_orphan_frames`).
    """
    if orphan_grace_s < 0:
        raise ValidationError(f"orphan_grace_s={orphan_grace_s}: use a grace period of 0 s or more")
    names = [n for n in arrays]
    unknown = [n for n in names if n not in ARRAY_NAMES]
    if unknown:
        raise ValidationError(f"unknown array(s) {', '.join(unknown)}; the store has {', '.join(ARRAY_NAMES)}")
    t0 = time.perf_counter()
    with backend.writing() as ts:
        before = store_stats(backend)
        orphans = find_orphans(backend, until=ts, cutoff=ts - int(orphan_grace_s * 1000))
        frame_orphans = collect_orphan_frames(backend, ts - int(orphan_grace_s * 1000), collect_orphans)
        collected = orphans["old"] if collect_orphans else []
        backend.close()  # cached handles would still list the fragments vacuumed below
        if collected:
            # A sentinel block written and deleted at ``ts`` guarantees a second fragment: TileDB skips
            # consolidating a lone fragment, and only consolidation purges deleted cells from disk.
            backend.write_blocks(ts, "", [(SENTINEL_BLOCK, "", 0, "", b"")])
            _delete_blocks(backend, sorted({SENTINEL_BLOCK, *(o["block"] for o in collected)}), ts)
        for name in names:
            if not backend.has_array(name):
                continue
            _consolidate(backend, name, ts, vacuum, before[name]["bytes"])
        backend.close()
        backend.versions_index(refresh=True)
        after = store_stats(backend)
        report: dict[str, Any] = {
            "timestamp": ts,
            "vacuum": vacuum,
            "seconds": round(time.perf_counter() - t0, 3),
            "arrays": {n: {"fragments_before": before[n]["fragments"], "fragments_after": after[n]["fragments"],
                           "bytes_before": before[n]["bytes"], "bytes_after": after[n]["bytes"]}
                       for n in ARRAY_NAMES},
            "bytes_before": sum(v["bytes"] for v in before.values()),
            "bytes_after": sum(v["bytes"] for v in after.values()),
            "fragments_before": sum(v["fragments"] for v in before.values()),
            "fragments_after": sum(v["fragments"] for v in after.values()),
            "orphans": {"collected": collected, "young": orphans["young"],
                        "uncollected_old": [] if collect_orphans else orphans["old"],
                        "grace_s": orphan_grace_s},
            "orphan_frames": frame_orphans,
        }
        _log(backend, {"op": "maintain", "timestamp": ts, "vacuum": vacuum,
                       "bytes_before": report["bytes_before"], "bytes_after": report["bytes_after"],
                       "fragments_before": report["fragments_before"], "fragments_after": report["fragments_after"],
                       "orphans_collected": len(collected), "orphans_young": len(orphans["young"]),
                       "orphan_trajectories_collected": len(frame_orphans["collected"])})
    return report


def purge_versions(backend: Backend, entry: str, keep_last: int, author: str = "") -> dict[str, Any]:
    """Delete all but the last ``keep_last`` versions of ``entry`` (explicit retention; logged).

    The purged versions' cells are deleted (they no longer read, not even with ``as_of``),
    tags naming them are deleted, and their blocks (and trajectory frames) become orphans that
    the next :func:`maintain` collects once they are older than its grace period (blocks shared
    with a kept version stay referenced). Version numbers are never reused.

    Returns
    -------
    dict
        ``entry``, ``purged`` (version numbers), ``kept``, ``tags_removed``, ``timestamp``.
    """
    if keep_last < 1:
        raise ValidationError(f"keep_last={keep_last}: keep at least the latest version (keep_last >= 1)")
    with backend.writing() as ts:
        cells = backend.read_versions(entry, attrs=["ts"])
        versions = sorted(int(v) for v in cells["version"])
        if not versions:
            raise EntryNotFoundError(f"entry {entry} is not in the store (see `moldb ls`)")
        purged = versions[:-keep_last]
        tags = backend.read_tags(entry)
        doomed_tags = [_s(t) for t, v in zip(tags["tag"], tags["version"], strict=True) if int(v) in set(purged)]
        if purged:
            esc = entry.replace("'", "")
            uri = backend.array_uri("versions")
            with engine.mapped(uri, "purging versions"), \
                    tiledb.open(uri, "d", timestamp=ts, ctx=backend.ctx) as arr:
                arr.query(cond=f"entry == '{esc}' and version <= {max(purged)}").submit()
            if doomed_tags:
                turi = backend.array_uri("tags")
                with engine.mapped(turi, "purging tags"), tiledb.open(turi, "d", timestamp=ts, ctx=backend.ctx) as arr:
                    names = ", ".join(repr(t) for t in doomed_tags)
                    arr.query(cond=f"entry == '{esc}' and tag in [{names}]").submit()
            backend.close()
            backend.versions_index(refresh=True)
        record = {"op": "purge_versions", "timestamp": ts, "entry": entry, "purged": purged,
                  "kept": versions[len(purged):], "tags_removed": doomed_tags, "author": author}
        _log(backend, record)
    return record
