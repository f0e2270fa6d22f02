"""``Store.level``: one level of an entry's multiscale pyramid, computed on demand or read back if stored."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ValidationError
from moldb.ir.multiscale import LEVELS, LevelMap, build_level, centroids

__all__ = ["level"]

_DOMAIN_HINT = ("add one with store.add_grouping(entry, 'domains/v1', kind='domain', members={...}) "
                "or pass grouping='NAME'")


def _domain_grouping(table: pa.Table) -> str | None:
    for name, kind in zip(table.column("name").to_pylist(), table.column("kind").to_pylist(), strict=True):
        if "domain" in str(kind).lower() or str(name).lower().startswith("domain"):
            return str(name)
    return None


def _table(lv: LevelMap, atoms: pa.Table, xyz: np.ndarray, source: str) -> pa.Table:
    f = lv.first

    def col(name: str) -> pa.Array:
        if name not in atoms.column_names:
            return pa.nulls(len(f), pa.string())
        return atoms.column(name).take(pa.array(f)).cast(
            pa.string() if pa.types.is_dictionary(atoms.column(name).type) else atoms.column(name).type)

    counts = np.bincount(lv.group, minlength=len(lv.groups))
    return pa.table({
        "level": pa.array([lv.name] * len(f), pa.string()),
        "group": pa.array(lv.groups, pa.string()),
        "model": col("pdbx_PDB_model_num"),
        "chain": col("label_asym_id"),
        "residue": col("auth_seq_id"),
        "comp_id": col("label_comp_id"),
        "atom_name": col("label_atom_id") if lv.name in ("atoms", "backbone") else pa.nulls(len(f), pa.string()),
        "n_members": pa.array(counts, pa.int64()),
        "x": pa.array(xyz[:, 0]), "y": pa.array(xyz[:, 1]), "z": pa.array(xyz[:, 2]),
    }).replace_schema_metadata({"weighting": lv.weighting, "source": source,
                                "operator": "centroid (W·X, rows of W sum to 1)"})


def level(st: Any, entry: str, name: str, version: int | str | None = None, weighting: str = "unweighted",
          grouping: str | None = None, store: bool = False) -> pa.Table:
    """See :meth:`moldb.Store.level` (``st`` is the store)."""
    store_it = store
    valid = ", ".join((*LEVELS, "grouping:NAME"))
    if name not in LEVELS and not name.startswith("grouping:"):
        raise ValidationError(f"unknown level {name!r}; valid levels: {valid}")
    s = st.get(entry, version=version)
    key = f"level/{name.replace(':', '-')}/{weighting}"
    descs = {d.id: d for d in st.descriptors(entry, version=s.version.version)}
    got = descs.get(key)
    if got is not None and not store_it and got.attrs.get("weighting") == weighting:
        members = st.grouping(entry, key, version=s.version.version)
        lv = LevelMap(name, [str(g) for g in got.attrs["groups"]],
                      members.column("group_index").to_numpy().astype(np.int64),
                      members.column("row").to_numpy(), members.column("weight").to_numpy(),
                      np.asarray(got.params["first"]), weighting)
        return _table(lv, s.atoms, np.asarray(got.params["xyz"]), "stored")
    groups = None
    if name == "domain_centroids" or name.startswith("grouping:"):
        gname = grouping or (name.split(":", 1)[1] if name.startswith("grouping:") else None)
        gname = gname or _domain_grouping(st.groupings(entry, version=s.version.version))
        if gname is None:
            raise ValidationError(f"{s.entry} v{s.version.version} has no domain grouping; {_DOMAIN_HINT}")
        m = st.grouping(entry, gname, version=s.version.version)
        names = [str(v) for v in m.column("group").combine_chunks().dictionary.to_pylist()]
        groups = (names, m.column("group_index").to_numpy(), m.column("row").to_numpy())
    lv = build_level(s.atoms, name, weighting, groups)
    xyz_atoms = np.column_stack([s.atoms.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                                 for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
    xyz = centroids(lv, xyz_atoms)
    if store_it:
        _persist(st, entry, key, lv, xyz)
    return _table(lv, s.atoms, xyz, "computed")


def _persist(store: Any, entry: str, key: str, lv: LevelMap, xyz: np.ndarray) -> None:
    from moldb.ir.descriptors import GenericDescriptor
    from moldb.ir.model import Mode, Regime

    order = np.argsort(lv.group, kind="stable")
    cuts = np.cumsum(np.bincount(lv.group, minlength=len(lv.groups)))[:-1]
    members = dict(zip(lv.groups, np.split(lv.rows[order], cuts), strict=True))
    weights = dict(zip(lv.groups, np.split(lv.weights[order], cuts), strict=True))
    prov = {"source": "moldb.level", "notes": f"{lv.name}, {lv.weighting} centroids"}
    store.add_grouping(entry, key, members, kind="multiscale.level", weights=weights, provenance=prov, replace=True)
    d = GenericDescriptor(id=key, regime=Regime.DISCRETE, scope=key, mode=Mode.A,
                          attrs={"type": "multiscale_level", "level": lv.name, "weighting": lv.weighting,
                                 "groups": lv.groups, "operator": "centroid"},
                          params={"xyz": xyz, "first": lv.first})
    existing = {x.id for x in store.descriptors(entry)}
    if key in existing:
        return  # the coordinates of this level are already stored for this version
    store.add_descriptor(entry, d, provenance=prov)
