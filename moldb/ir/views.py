"""The atoms-by-descriptor view (SOMA-like): obs = atoms, var = descriptor features, X = values.

Plain Arrow tables, so it needs nothing beyond pyarrow; a ``tiledbsoma`` Experiment
export is left to an optional extra (see ``docs/ir.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from moldb.ir.model import Descriptor

__all__ = ["OBS_COLUMNS", "atoms_by_descriptor"]

OBS_COLUMNS = ("label_asym_id", "auth_asym_id", "auth_seq_id", "pdbx_PDB_ins_code", "label_comp_id",
               "label_atom_id", "label_alt_id", "type_symbol", "pdbx_PDB_model_num")


def _group_index(membership: pa.Table | None, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    if membership is not None:
        out[membership.column("row").to_numpy()] = membership.column("group_index").to_numpy()
    return out


def atoms_by_descriptor(atoms: pa.Table, descriptors: list[Descriptor],
                        memberships: dict[str, pa.Table]) -> tuple[pa.Table, pa.Table, pa.Table]:
    """Build (obs, var, X) for one version.

    Parameters
    ----------
    atoms : pyarrow.Table
        The version's atom table.
    descriptors : list of Descriptor
    memberships : dict
        Grouping name → membership table (``Store.grouping``), for the scopes used.

    Returns
    -------
    obs : pyarrow.Table
        One row per atom: ``row``, identifier columns, and the group index of each scope grouping.
    var : pyarrow.Table
        One row per feature: ``feature``, ``descriptor``, ``type``, ``regime``, ``scope``, ``mode``, ``operator``.
    X : pyarrow.Table
        One float64 column per feature (NaN where a descriptor does not cover an atom), rows as ``obs``.
    """
    n = atoms.num_rows
    obs: dict[str, Any] = {"row": pa.array(np.arange(n), pa.int64())}
    for c in OBS_COLUMNS:
        if c in atoms.column_names:
            obs[c] = atoms.column(c)
    for name, m in memberships.items():
        obs[f"group:{name}"] = pa.array(_group_index(m, n), pa.float64())  # NaN: atom not in the grouping
    feats: dict[str, np.ndarray] = {}
    var: list[dict[str, Any]] = []

    def add(d: Descriptor, feature: str, values: np.ndarray) -> None:
        feats[feature] = values
        var.append({"feature": feature, "descriptor": d.id, "type": d.type, "regime": int(d.regime),
                    "scope": d.scope, "mode": d.mode.value, "operator": d.operator.name if d.operator else ""})

    for d in descriptors:
        for param, col in d.column_refs.items():
            if col in atoms.column_names:
                add(d, f"{d.id}.{param}",
                    np.asarray(atoms.column(col).cast(pa.float64()).fill_null(np.nan).to_numpy(), np.float64))
        arrays = d.arrays()
        if d.type == "altloc" and "rows" in arrays:
            for k in ("state", "occupancy"):
                v = np.full(n, np.nan)
                v[arrays["rows"]] = arrays[k]
                add(d, f"{d.id}.{k}", v)
        elif d.scope in memberships and d.type != "altloc":
            add(d, f"{d.id}.group", _group_index(memberships[d.scope], n))
        for k, a in arrays.items():
            if d.type != "altloc" and a.ndim == 1 and len(a) == n and a.dtype.kind in "fiu":
                add(d, f"{d.id}.{k}", a.astype(np.float64))
    keys = ("feature", "descriptor", "type", "regime", "scope", "mode", "operator")
    var_t = pa.table({k: [v[k] for v in var] for k in keys}) if var else pa.table({"feature": pa.array([], "string")})
    x = pa.table({k: pa.array(v, pa.float64()) for k, v in feats.items()}) if feats else pa.table({})
    return pa.table(obs), var_t, x
