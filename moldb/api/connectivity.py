"""Stored connectivity (H5MD ``/connectivity``) as bonds of the entry, and the bonds an H5MD export writes.

An entry ingested from an H5MD file with ``/connectivity`` stores the pairs as a
:class:`~moldb.ir.trajectory.Connectivity` descriptor (trajectory particle indices).
:meth:`moldb.api.structure.Structure.bonds` adds them to the bonds moldb derives itself
(CCD templates, polymer links, ``struct_conn``): a pair both know keeps the derived row, a
pair only the file knows gets ``kind`` ``connectivity/<element>`` and the element's bond
order (0 when unknown). On export, :func:`export_pairs` turns ``Structure.bonds()`` back
into connectivity elements, so bonds survive an export → ingest round trip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from moldb.ir.trajectory import Connectivity, TrajectoryDescriptor
from moldb.schema.records import VersionInfo
from moldb.topology import BOND_SCHEMA

__all__ = ["export_pairs", "merge_bonds", "stored_bonds", "stored_connectivity"]

_KIND = "connectivity/"


def stored_connectivity(store: Any, entry: str, version: int) -> tuple[Connectivity | None, np.ndarray | None]:
    """The version's :class:`Connectivity` (or None) and its trajectory's ``atom_rows`` (None: identity)."""
    from moldb.ir.store_ops import descriptor_objects

    _, cells = store._ir_cells("descriptors", entry, version, None)
    if "connectivity" not in cells or cells["connectivity"]["tag"] != Connectivity.TYPE:
        return None, None
    wanted = {k: cells[k] for k in ("connectivity", "trajectory") if k in cells}
    conn: Connectivity | None = None
    rows: np.ndarray | None = None
    for d in descriptor_objects(store._backend, entry, wanted):
        if isinstance(d, Connectivity):
            conn = d
        elif isinstance(d, TrajectoryDescriptor) and d.atom_rows is not None:
            rows = np.asarray(d.atom_rows, dtype=np.int64)
    return conn, rows


def _as_bonds(conn: Connectivity, rows: np.ndarray | None) -> pa.Table:
    a1 = np.asarray(conn.atom_1, dtype=np.int64)
    a2 = np.asarray(conn.atom_2, dtype=np.int64)
    if rows is not None:
        a1, a2 = rows[a1], rows[a2]
    el = np.asarray(conn.element, dtype=np.int64)
    order = np.full(len(a1), np.nan, np.float32) if conn.order is None else np.asarray(conn.order, np.float32)
    arom = order == 1.5
    o = np.where(np.isfinite(order) & (order == np.round(order)), order, np.where(arom, 1.0, 0.0)).astype(np.int8)
    kinds = np.array([_KIND + n for n in conn.elements], dtype=object)[el] if len(el) else np.zeros(0, object)
    lo, hi = np.minimum(a1, a2), np.maximum(a1, a2)
    return pa.table({"atom_1": lo, "atom_2": hi, "order": o, "aromatic": arom,
                     "kind": pa.array(kinds, type=pa.string())}, schema=BOND_SCHEMA)


def stored_bonds(store: Any, rec: VersionInfo) -> pa.Table | None:
    """The stored connectivity of version ``rec`` as bond rows (atom rows of the entry), or None."""
    conn, rows = stored_connectivity(store, rec.entry, rec.version)
    return None if conn is None else _as_bonds(conn, rows)


def merge_bonds(derived: pa.Table, stored: pa.Table) -> pa.Table:
    """``derived`` plus the pairs of ``stored`` it lacks (once each), sorted by (atom_1, atom_2)."""
    if not stored.num_rows:
        return derived
    key = np.int64(max(int(np.max(stored.column("atom_2").to_numpy(), initial=0)),
                       int(np.max(derived.column("atom_2").to_numpy(), initial=0))) + 1)

    def keys(t: pa.Table) -> np.ndarray:
        return t.column("atom_1").to_numpy().astype(np.int64) * key + t.column("atom_2").to_numpy()

    k_stored = keys(stored)
    _, first = np.unique(k_stored, return_index=True)
    new = np.sort(first[~np.isin(k_stored[first], keys(derived))])
    both = pa.concat_tables([derived, stored.take(pa.array(new, pa.int64()))])
    srt = np.lexsort((both.column("atom_2").to_numpy(), both.column("atom_1").to_numpy()))
    return both.take(pa.array(srt, pa.int64()))


def export_pairs(bonds: pa.Table, conn: Connectivity | None, rows: np.ndarray | None, atoms: np.ndarray,
                 n_atoms: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Connectivity elements to write for the exported particles.

    Parameters
    ----------
    bonds : pyarrow.Table
        ``Structure.bonds()`` of the version (atom rows).
    conn : Connectivity or None
        The version's stored connectivity.
    rows : numpy.ndarray or None
        Atom row of each trajectory particle (None: particle ``i`` is row ``i``).
    atoms : numpy.ndarray
        Trajectory particles being exported, in output order.
    n_atoms : int
        Particles of the trajectory.

    Returns
    -------
    dict
        Element name → ((n, 2) int64 pairs of *output* particle indices, float64 orders, NaN
        unknown). Stored elements are written as stored (pairs with both particles exported);
        the bonds moldb derives (templates, polymer links, ``struct_conn``) that no stored
        element has go to ``bonds`` (``moldb_bonds`` when a stored element has that name).
    """
    atoms = np.asarray(atoms, dtype=np.int64)
    out_of_particle = np.full(n_atoms, -1, dtype=np.int64)
    out_of_particle[atoms] = np.arange(len(atoms))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    stored_keys = np.zeros(0, np.int64)
    if conn is not None:
        pairs = conn.pairs()
        el = np.asarray(conn.element, np.int64)
        order = np.full(len(pairs), np.nan) if conn.order is None else np.asarray(conn.order, np.float64)
        lo_hi = np.sort(pairs, axis=1)
        stored_keys = lo_hi[:, 0] * np.int64(len(out_of_particle) + 1) + lo_hi[:, 1]
        for k, name in enumerate(conn.elements):
            m = el == k
            p = out_of_particle[pairs[m]] if len(pairs) else pairs[m]
            ok = np.all(p >= 0, axis=1)
            out[name] = (p[ok], order[m][ok])
    # derived bonds (not from a stored element), as trajectory particles
    derived = np.asarray([not k.startswith(_KIND) for k in bonds.column("kind").to_pylist()], dtype=bool)
    r1 = bonds.column("atom_1").to_numpy()[derived]
    r2 = bonds.column("atom_2").to_numpy()[derived]
    order_d = bonds.column("order").to_numpy()[derived].astype(np.float64)
    order_d[bonds.column("aromatic").to_numpy(zero_copy_only=False)[derived]] = 1.5
    if rows is None:
        p1, p2 = r1, r2
        inside = (p1 < len(out_of_particle)) & (p2 < len(out_of_particle))
    else:
        particle_of_row = np.full(int(max(np.max(rows, initial=-1), np.max(r2, initial=-1))) + 1, -1, np.int64)
        particle_of_row[rows] = np.arange(len(rows))
        p1, p2 = particle_of_row[r1], particle_of_row[r2]
        inside = (p1 >= 0) & (p2 >= 0)
    p1, p2, order_d = p1[inside], p2[inside], order_d[inside]
    lo, hi = np.minimum(p1, p2), np.maximum(p1, p2)
    fresh = ~np.isin(lo * np.int64(len(out_of_particle) + 1) + hi, stored_keys)
    q = out_of_particle[np.stack([p1[fresh], p2[fresh]], axis=1)] if fresh.any() else np.zeros((0, 2), np.int64)
    ok = np.all(q >= 0, axis=1)
    if ok.any():
        name = "moldb_bonds" if "bonds" in out else "bonds"
        pairs_d, orders_d = q[ok], np.where(order_d[fresh][ok] > 0, order_d[fresh][ok], np.nan)
        if name in out:  # a stored element of that name (written by moldb before): extend it
            pairs_d = np.concatenate([out[name][0], pairs_d])
            orders_d = np.concatenate([out[name][1], orders_d])
        out[name] = (pairs_d, orders_d)
    return out
