"""Stored connectivity (H5MD ``/connectivity``) as bonds of the entry, and the bonds an H5MD export writes.

An entry ingested from an H5MD file with ``/connectivity`` stores the pairs as a
:class:`~moldb.ir.trajectory.Connectivity` descriptor (trajectory particle indices).
:meth:`moldb.api.structure.Structure.bonds` adds them to the bonds moldb derives itself
(CCD templates, polymer links, ``struct_conn``): a pair both know keeps the derived row, a
pair only the file knows gets ``kind`` ``connectivity/<element>`` and the element's bond
order (0 when unknown) — pairs only (angles and dihedrals are not bonds), and of a time-dependent
element the pairs in effect at the first frame. On export, :func:`export_elements` turns the
stored elements (pairs, triples, quadruples; time-dependent ones sampled on the written frames)
and ``Structure.bonds()`` back into connectivity elements, so they survive an export → ingest
round trip.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from moldb.export.h5md import TupleElement
from moldb.ir.trajectory import Connectivity, TrajectoryDescriptor
from moldb.schema.records import VersionInfo
from moldb.topology import BOND_SCHEMA

__all__ = ["export_elements", "merge_bonds", "stored_bonds", "stored_connectivity"]

_KIND = "connectivity/"


def _stored(store: Any, entry: str, version: int) -> tuple[Connectivity | None, np.ndarray | None, int]:
    """The version's :class:`Connectivity`, its trajectory's ``atom_rows`` and the step of its first frame."""
    from moldb.ir.store_ops import descriptor_objects

    _, cells = store._ir_cells("descriptors", entry, version, None)
    if "connectivity" not in cells:  # a topology-only re-deposit reads its trajectory's (trajectory_versions)
        cells = _inherited_cells(store, entry, version)
    if "connectivity" not in cells or cells["connectivity"]["tag"] != Connectivity.TYPE:
        return None, None, 0
    wanted = {k: cells[k] for k in ("connectivity", "trajectory") if k in cells}
    conn: Connectivity | None = None
    rows: np.ndarray | None = None
    step0 = 0
    for d in descriptor_objects(store._backend, entry, wanted):
        if isinstance(d, Connectivity):
            conn = d
        elif isinstance(d, TrajectoryDescriptor):
            rows = None if d.atom_rows is None else np.asarray(d.atom_rows, dtype=np.int64)
            step0 = int(np.asarray(d.step)[0]) if d.step is not None and np.size(d.step) else 0
    return conn, rows, step0


def _inherited_cells(store: Any, entry: str, version: int) -> dict[str, dict[str, Any]]:
    """Descriptor cells of the version whose trajectory ``version`` reads ({} when none fits its atoms)."""
    from moldb.api.trajectory_versions import find_trajectory
    from moldb.errors import EntryNotFoundError

    try:
        found = find_trajectory(store, entry, version)
    except EntryNotFoundError:  # the trajectory belongs to a topology of another size: its indices do not apply
        return {}
    return {} if found is None else found[2]


def stored_connectivity(store: Any, entry: str, version: int) -> tuple[Connectivity | None, np.ndarray | None]:
    """The version's :class:`Connectivity` (or None) and its trajectory's ``atom_rows`` (None: identity)."""
    conn, rows, _ = _stored(store, entry, version)
    return conn, rows


def _as_bonds(conn: Connectivity, rows: np.ndarray | None, step0: int) -> pa.Table:
    conn = conn.at_step(step0)
    pair_el = [k for k, n in enumerate(conn.arities()) if n == 2]
    keep = np.isin(np.asarray(conn.element, dtype=np.int64), pair_el)
    a1 = np.asarray(conn.atom_1, dtype=np.int64)[keep]
    a2 = np.asarray(conn.atom_2, dtype=np.int64)[keep]
    if rows is not None:
        a1, a2 = rows[a1], rows[a2]
    el = np.asarray(conn.element, dtype=np.int64)[keep]
    order = np.full(len(a1), np.nan, np.float32) if conn.order is None else np.asarray(conn.order, np.float32)[keep]
    arom = order == 1.5
    o = np.where(np.isfinite(order) & (order == np.round(order)), order, np.where(arom, 1.0, 0.0)).astype(np.int8)
    kinds = np.array([_KIND + n for n in conn.elements], dtype=object)[el] if len(el) else np.zeros(0, object)
    lo, hi = np.minimum(a1, a2), np.maximum(a1, a2)
    return pa.table(
        {"atom_1": lo, "atom_2": hi, "order": o, "aromatic": arom, "kind": pa.array(kinds, type=pa.string())},
        schema=BOND_SCHEMA,
    )


def stored_bonds(store: Any, rec: VersionInfo) -> pa.Table | None:
    """The stored connectivity pairs of version ``rec`` (at its first frame) as bond rows (atom rows), or None."""
    conn, rows, step0 = _stored(store, rec.entry, rec.version)
    return None if conn is None else _as_bonds(conn, rows, step0)


def merge_bonds(derived: pa.Table, stored: pa.Table) -> pa.Table:
    """``derived`` plus the pairs of ``stored`` it lacks (once each), sorted by (atom_1, atom_2)."""
    if not stored.num_rows:
        return derived
    key = np.int64(
        max(
            int(np.max(stored.column("atom_2").to_numpy(), initial=0)),
            int(np.max(derived.column("atom_2").to_numpy(), initial=0)),
        )
        + 1
    )

    def keys(t: pa.Table) -> np.ndarray:
        return t.column("atom_1").to_numpy().astype(np.int64) * key + t.column("atom_2").to_numpy()

    k_stored = keys(stored)
    _, first = np.unique(k_stored, return_index=True)
    new = np.sort(first[~np.isin(k_stored[first], keys(derived))])
    both = pa.concat_tables([derived, stored.take(pa.array(new, pa.int64()))])
    srt = np.lexsort((both.column("atom_2").to_numpy(), both.column("atom_1").to_numpy()))
    return both.take(pa.array(srt, pa.int64()))


def _sampled(tup: np.ndarray, order: np.ndarray, lo: np.ndarray, hi: np.ndarray, steps: np.ndarray) -> TupleElement:
    """A time-dependent element on the written frames: a sample at the first frame and wherever it changes."""
    steps = np.asarray(steps, np.int64)
    every = not bool(np.all(np.diff(steps) > 0))  # unsorted / repeated frames: one sample per frame
    samples: list[np.ndarray] = []
    orders: list[np.ndarray] = []
    frames: list[int] = []
    prev: np.ndarray | None = None
    for j, st in enumerate(steps.tolist()):
        m = (lo <= st) & (st < hi)
        if prev is None or every or not np.array_equal(m, prev):
            samples.append(tup[m])
            orders.append(order[m])
            frames.append(j)
        prev = m
    return TupleElement(tup[:0], samples=samples, sample_orders=orders, sample_frames=np.asarray(frames, np.int64))


def export_elements(
    bonds: pa.Table,
    conn: Connectivity | None,
    rows: np.ndarray | None,
    atoms: np.ndarray,
    n_atoms: int,
    steps: np.ndarray,
) -> dict[str, TupleElement]:
    """Connectivity elements to write for the exported particles and frames.

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
    steps : numpy.ndarray
        Steps of the exported frames, in output order.

    Returns
    -------
    dict
        Element name → :class:`~moldb.export.h5md.TupleElement` of *output* particle indices
        (tuples with every particle exported). Stored elements are written as stored: pairs,
        triples, quadruples, time-dependent ones sampled where they change on the written frames;
        the bonds moldb derives (templates, polymer links, ``struct_conn``) that no stored pair
        element has go to ``bonds`` (``moldb_bonds`` when a stored element has that name).
    """
    atoms = np.asarray(atoms, dtype=np.int64)
    out_of_particle = np.full(n_atoms, -1, dtype=np.int64)
    out_of_particle[atoms] = np.arange(len(atoms))
    out: dict[str, TupleElement] = {}
    stored_keys = np.zeros(0, np.int64)
    if conn is not None:
        el = np.asarray(conn.element, np.int64)
        order = np.full(len(el), np.nan) if conn.order is None else np.asarray(conn.order, np.float64)
        pairs = conn.pairs()
        lo_hi = np.sort(pairs, axis=1)
        stored_keys = lo_hi[:, 0] * np.int64(len(out_of_particle) + 1) + lo_hi[:, 1]
        for k, name in enumerate(conn.elements):
            m = el == k
            t = conn.tuples(name)
            p = out_of_particle[t] if len(t) else t
            ok = np.all(p >= 0, axis=1)
            if name in conn.time_dependent and conn.step_lo is not None and conn.step_hi is not None:
                out[name] = _sampled(
                    p[ok], order[m][ok], np.asarray(conn.step_lo)[m][ok], np.asarray(conn.step_hi)[m][ok], steps
                )
            else:
                out[name] = TupleElement(p[ok], order[m][ok])
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
        pairs_d, orders_d = q[ok], np.where(order_d[fresh][ok] > 0, order_d[fresh][ok], np.nan)
        name = next(
            n
            for n in ("bonds", "moldb_bonds", *(f"moldb_bonds_{i}" for i in range(2, 10**6)))
            if n not in out or (n != "bonds" and out[n].samples is None and out[n].arity == 2)
        )
        if name in out:  # a stored pair element of that name (written by moldb before): extend it
            old = out[name]
            pairs_d = np.concatenate([old.tuples, pairs_d])
            orders_d = np.concatenate(
                [np.full(len(old.tuples), np.nan) if old.orders is None else old.orders, orders_d]
            )
        out[name] = TupleElement(pairs_d, orders_d)
    return out
