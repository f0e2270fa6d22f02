"""Which version's trajectory a read of an entry version uses.

A trajectory is stored with the version its ingest committed. A later *topology-only* deposit
(``store.deposit("top.pdb", entry=...)``, a corrected structure without frames) writes a version
with no trajectory of its own. Following the read-time inheritance of the versioning design
(user descriptors carry over to later versions when read, nothing is copied on write;
``docs/versioning.md``), version N reads the trajectory of the newest version ≤ N that has one
*and* whose topology has as many atoms as version N's. The ``trajectory`` cells are not copied,
so purging the version that holds the frames (``purge_versions``) removes them from every later
version too, and maintenance then collects them.
"""

from __future__ import annotations

from typing import Any

from moldb.errors import EntryNotFoundError
from moldb.ir.trajectory import TrajectoryDescriptor
from moldb.schema.records import VersionInfo
from moldb.storage import ir_store

__all__ = ["TrajectoryTopologyError", "find_trajectory", "resolve_trajectory"]


class TrajectoryTopologyError(EntryNotFoundError):
    """The version has no trajectory of its own, and the earlier ones belong to a topology of another size."""


def find_trajectory(
    store: Any,
    entry: str,
    version: int | str | None = None,
) -> tuple[VersionInfo, VersionInfo, dict[str, dict[str, Any]]] | None:
    """The version asked for, the version holding its trajectory and that version's descriptor cells.

    Returns None when no version up to the one asked for has a trajectory.

    Raises
    ------
    EntryNotFoundError
        Unknown entry, version or tag.
    TrajectoryTopologyError
        Earlier versions have trajectories, but none for a topology with this version's atom count.
    """
    rec = store._resolve(entry, version, None)
    by_version = {r.version: r for r in store._records(rec.entry)}
    pin = store.as_of
    holders: set[int] = set()
    for c in ir_store.read_cells(store._backend, "descriptors", rec.entry):
        if c["tag"] != TrajectoryDescriptor.TYPE or c["name"] != "trajectory" or c["version"] > rec.version:
            continue
        owner = by_version.get(c["version"])
        if owner is None or c["ts"] < owner.timestamp or (pin is not None and c["ts"] > pin):
            continue  # uncommitted, purged, or written after the store's as_of
        holders.add(c["version"])
    if not holders:
        return None
    newest = max(holders)
    fits = [v for v in sorted(holders, reverse=True) if v == rec.version or by_version[v].n_atoms == rec.n_atoms]
    if not fits:
        old = by_version[newest]
        raise TrajectoryTopologyError(
            f"{rec.entry} v{rec.version} has no trajectory of its own, and its topology ({rec.n_atoms} atoms) does "
            f"not match the one of v{newest} ({old.n_atoms} atoms), the newest version with a trajectory; read that "
            f"one with store.trajectory({rec.entry!r}, version={newest}), or deposit a topology with "
            f"{old.n_atoms} atoms"
        )
    holder = rec if fits[0] == rec.version else by_version[fits[0]]
    _, cells = store._ir_cells("descriptors", rec.entry, holder.version, None)
    return rec, holder, cells


def resolve_trajectory(
    store: Any,
    entry: str,
    version: int | str | None = None,
) -> tuple[VersionInfo, VersionInfo, dict[str, dict[str, Any]]]:
    """:func:`find_trajectory`, raising when there is no trajectory.

    Raises
    ------
    EntryNotFoundError
        Unknown entry / version, or no trajectory up to that version (with how to store one).
    TrajectoryTopologyError
        See :func:`find_trajectory`.
    """
    got = find_trajectory(store, entry, version)
    if got is None:
        rec = store._resolve(entry, version, None)
        raise EntryNotFoundError(
            f"{rec.entry} v{rec.version} has no trajectory; a trajectory is stored as a new "
            "entry: store.ingest('traj.xtc', topology='top.pdb', entry='NEW-ID')"
        )
    return got
