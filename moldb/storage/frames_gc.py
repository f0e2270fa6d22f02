"""Orphan trajectories: ``frames`` fragments that no committed version can read.

A trajectory's frame cells are written inside its version's commit, before the commit point
(:mod:`moldb.ingest.trajectory`), into fragments of their own (one trajectory id per
fragment, at the commit's timestamp; dense consolidation never merges two trajectories).
They become unreadable when

* the writer died (or the commit failed) after writing them and before its ``versions``
  cell — no version was committed;
* :func:`moldb.storage.maintenance.purge_versions` deleted the version that owned them.

A trajectory id is *referenced* when a ``trajectory`` descriptor cell names it and that cell
counts for a committed version (written at or after the version's commit timestamp, the rule
of :func:`moldb.ir.store_ops.resolve_cells`); those fragments are never touched, so every
version — also through ``as_of`` — keeps reading its frames. :func:`collect_orphan_frames`
deletes the fragments of the other trajectories once they are older than the grace period,
with ``tiledb.Array.delete_fragments`` over their exact timestamp range, and only when no
fragment of a referenced trajectory lies in that range. It runs under the writer lock
(:func:`moldb.storage.maintenance.maintain`), so no commit is in flight.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import tiledb

from moldb.storage import engine, ir_store
from moldb.storage.backend import Backend

__all__ = ["collect_orphan_frames", "find_orphan_frames", "referenced_trajectories"]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def referenced_trajectories(backend: Backend) -> set[int]:
    """Trajectory ids named by a ``trajectory`` descriptor of a committed version (fresh reads)."""
    if not ir_store.has_ir(backend):
        return set()
    cells = backend.read_versions(attrs=["ts"])
    committed = {(_s(e), int(v)): int(t) for e, v, t in zip(cells["entry"], cells["version"], cells["ts"],
                                                              strict=True)}
    arr = backend.reader("descriptors", refresh=True)
    with engine.mapped(arr.uri, "listing trajectory descriptors"):
        res = arr.query(attrs=["ts", "type", "spec"], order="U")[:]
    out: set[int] = set()
    for i in np.flatnonzero(np.array([_s(t) == "trajectory" for t in res["type"]], dtype=bool)):
        owner = committed.get((_s(res["entry"][i]), int(res["version"][i])))
        if owner is None or int(res["ts"][i]) < owner:
            continue
        out.add(int(json.loads(_s(res["spec"][i]))["traj_id"]))  # a cell we cannot read raises: collect nothing
    return out


def _fragments(backend: Backend) -> list[dict[str, Any]]:
    uri = backend.array_uri("frames")
    vfs = engine.vfs(backend.ctx)
    with engine.mapped(uri, "listing trajectory fragments"):
        frags = tiledb.array_fragments(uri, ctx=backend.ctx)
        return [{"uri": f.uri, "traj": tuple(int(x) for x in f.nonempty_domain[0]),
                 "timestamp": tuple(int(x) for x in f.timestamp_range), "bytes": int(vfs.dir_size(f.uri))}
                for f in frags]


def find_orphan_frames(backend: Backend, cutoff: int) -> dict[str, list[dict[str, Any]]]:
    """Trajectories in ``frames`` that no committed version references.

    Parameters
    ----------
    backend : Backend
    cutoff : int
        Orphans whose newest fragment is at or before ``cutoff`` (ms) are ``old`` (collectable),
        later ones ``young``.

    Returns
    -------
    dict
        ``{"old": [...], "young": [...]}``, each item ``{"traj", "timestamp", "fragments", "bytes"}``
        (``timestamp``: [first, last] write time). Fragments holding several trajectories
        (never written by moldb) are left alone and not listed.
    """
    out: dict[str, list[dict[str, Any]]] = {"old": [], "young": []}
    if not backend.has_array("frames"):
        return out
    ref = referenced_trajectories(backend)
    by_traj: dict[int, list[dict[str, Any]]] = {}
    for f in _fragments(backend):
        lo, hi = f["traj"]
        if lo == hi and lo not in ref:
            by_traj.setdefault(lo, []).append(f)
    for traj, frags in sorted(by_traj.items()):
        t0 = min(f["timestamp"][0] for f in frags)
        t1 = max(f["timestamp"][1] for f in frags)
        item = {"traj": traj, "timestamp": [t0, t1], "fragments": len(frags), "bytes": sum(f["bytes"] for f in frags)}
        out["old" if t1 <= cutoff else "young"].append(item)
    return out


def collect_orphan_frames(backend: Backend, cutoff: int, collect: bool = True) -> dict[str, Any]:
    """Find orphan trajectories and (``collect``) delete the fragments of those older than ``cutoff``.

    The caller holds the writer lock; cached array handles are closed before anything is deleted.

    Returns
    -------
    dict
        ``collected``, ``young`` and ``uncollected_old`` lists (items as :func:`find_orphan_frames`),
        ``bytes_collected``.
    """
    found = find_orphan_frames(backend, cutoff)
    report: dict[str, Any] = {"collected": [], "young": found["young"], "uncollected_old": [], "bytes_collected": 0}
    if not found["old"]:
        return report
    if not collect:
        report["uncollected_old"] = found["old"]
        return report
    doomed = {o["traj"] for o in found["old"]}
    frags = _fragments(backend)
    backend.close()  # no cached handle may be open on an array whose fragments are deleted
    uri = backend.array_uri("frames")
    for item in found["old"]:
        t0, t1 = item["timestamp"]
        clash = [f for f in frags if f["timestamp"][0] <= t1 and f["timestamp"][1] >= t0
                 and not (f["traj"][0] == f["traj"][1] and f["traj"][0] in doomed)]
        if clash:  # a live trajectory written in the same window: never delete around it
            report["uncollected_old"].append({**item, "reason": "shares its write window with a live trajectory"})
            continue
        with engine.mapped(uri, "deleting orphan trajectory fragments"):
            tiledb.Array.delete_fragments(uri, t0, t1, ctx=backend.ctx)
        frags = [f for f in frags if not (f["timestamp"][0] >= t0 and f["timestamp"][1] <= t1)]
        report["collected"].append(item)
        report["bytes_collected"] += item["bytes"]
    return report
