"""Groupings as queryable tables: one row per group, with the parameters of the descriptors scoped on it.

``Store.group_table(entry, "tls")`` returns, per group: its name and index, the member
count, and for every descriptor whose scope is that grouping its per-group parameters —
1-D per-group arrays as they are stored (``<id>.amplitude``), and for TLS the isotropic
summaries ``<id>.T_iso`` (tr T / 3, Å²), ``<id>.L_trace`` (rad²) and ``<id>.u_iso`` — the
mean over the group's atoms of tr U_TLS / 3 (Å²), i.e. how much disorder that level puts
on its atoms. When exactly one descriptor is scoped on the grouping its columns are also
given without the ``<id>.`` prefix, and ``amplitude`` defaults to ``u_iso``, so
``store.select(grouping="echt.residue/v1", where="amplitude > q90")`` reads as the chapter
writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.operators.adp import tls_v1

__all__ = ["group_table"]


def _per_atom_group(membership: pa.Table, n_atoms: int) -> np.ndarray:
    g = np.full(n_atoms, -1, dtype=np.int64)
    rows = membership.column("row").to_numpy()
    g[rows] = membership.column("group_index").to_numpy()
    return g


def group_table(membership: pa.Table, names: Sequence[str], descriptors: Sequence[Any], xyz: np.ndarray) -> pa.Table:
    """Build the table of one grouping.

    Parameters
    ----------
    membership : pyarrow.Table
        ``Store.grouping`` output (``group``, ``group_index``, ``row``).
    names : sequence of str
        Group names, in group-index order.
    descriptors : sequence of Descriptor
        Descriptors whose ``scope`` is this grouping.
    xyz : numpy.ndarray, shape (n_atoms, 3), float64
        Atom coordinates of the version (for TLS ``u_iso``).

    Returns
    -------
    pyarrow.Table
        ``group`` (str), ``group_index`` (int32), ``n_members`` (int64) and parameter columns (float64).
    """
    n_groups = len(names)
    gi = membership.column("group_index").to_numpy().astype(np.int64)
    cols: dict[str, Any] = {"group": pa.array(list(names), pa.string()),
                            "group_index": pa.array(np.arange(n_groups), pa.int32()),
                            "n_members": pa.array(np.bincount(gi, minlength=n_groups), pa.int64())}
    per_desc: list[dict[str, np.ndarray]] = []
    for d in descriptors:
        vals: dict[str, np.ndarray] = {}
        arrays = d.arrays()
        for k, a in arrays.items():
            if a.ndim == 1 and len(a) == n_groups and a.dtype.kind in "fiu" and getattr(d, "PER_GROUP", True):
                vals[k] = a.astype(np.float64)
        if d.type == "tls" and arrays.get("T") is not None and len(arrays["T"]) == n_groups:
            T, L, S, origin = (np.asarray(arrays[k], np.float64) for k in ("T", "L", "S", "origin"))
            vals["T_iso"] = np.trace(T, axis1=1, axis2=2) / 3
            vals["L_trace"] = np.trace(L, axis1=1, axis2=2)
            g = _per_atom_group(membership, len(xyz))
            U = tls_v1(xyz, T, L, S, origin, group=g, amplitude=vals.get("amplitude"))
            iso = np.trace(U, axis1=1, axis2=2) / 3
            inside = g >= 0
            total = np.bincount(g[inside], weights=iso[inside], minlength=n_groups)
            count = np.bincount(g[inside], minlength=n_groups)
            vals["u_iso"] = np.divide(total, count, out=np.full(n_groups, np.nan), where=count > 0)
        for k, v in vals.items():
            cols[f"{d.id}.{k}"] = pa.array(v, pa.float64())
        per_desc.append(vals)
    if len(per_desc) == 1:
        for k, v in per_desc[0].items():
            cols.setdefault(k, pa.array(v, pa.float64()))
        if "u_iso" in per_desc[0]:
            cols.setdefault("amplitude", pa.array(per_desc[0]["u_iso"], pa.float64()))
    return pa.table(cols)
