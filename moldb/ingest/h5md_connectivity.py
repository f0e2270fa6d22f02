"""H5MD 1.1 ``/connectivity`` reader: particle pairs of one particles group as a :class:`Connectivity`.

Follows the spec's "Connectivity group" and "Storage of particles and tuples lists": an element is an
``Integer[N][T]`` dataset or a time-dependent group (``value [variable][N][T]``, first sample used),
directly under ``/connectivity`` (ESPResSo's ``connectivity/atoms``) or in a subgroup named after a
particles group (ZnH5MD's ``connectivity/atoms/bonds``). Its ``particles_group`` object reference (else
the subgroup's name, else the file's only particles group) must be the group read; tuples holding a
user-defined fill value, and negative padding, are ignored; values map through the group's ``id``
element when it has one. Pairs are kept; larger tuples and other groups' elements are reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moldb.errors import ParseError
from moldb.ir.trajectory import Connectivity

__all__ = ["read_connectivity"]


def _particle_ids(particles: Any) -> dict[int, int] | None:
    import h5py

    if "id" not in particles:
        return None
    e = particles["id"]
    v = np.asarray((e["value"] if isinstance(e, h5py.Group) else e)[()])
    v = v[0] if v.ndim == 2 else v
    return {int(x): i for i, x in enumerate(v.tolist())}


def _target(f: Any, item: Any, default: str | None) -> str | None:
    """Name of the particles group a connectivity element refers to."""
    import h5py

    ref = item.attrs.get("particles_group", None)
    if isinstance(ref, h5py.Reference) and ref:
        try:
            return str(f[ref].name).rsplit("/", 1)[-1]
        except (KeyError, ValueError):
            return None
    return default


def read_connectivity(f: Any, particles: Any, n_atoms: int, path: Path) -> tuple[Connectivity | None, dict[str, Any]]:
    """The ``/connectivity`` pairs of an open H5MD file that refer to ``particles``.

    Raises
    ------
    ParseError
        A tuple names a particle index (or id) the group does not have.
    """
    import h5py

    if "connectivity" not in f or not isinstance(f["connectivity"], h5py.Group):
        return None, {}
    group = particles.name.rsplit("/", 1)[-1]
    pgroups = list(f["particles"])
    ids = _particle_ids(particles)
    elements: list[str] = []
    pairs: list[np.ndarray] = []
    orders: list[np.ndarray] = []
    skipped: dict[str, str] = {}
    varies: list[str] = []

    def first_sample(item: Any) -> tuple[np.ndarray, Any, bool]:
        if isinstance(item, h5py.Dataset):
            return np.asarray(item[()]), item, False
        ds = item["value"]
        v = np.asarray(ds[()])
        same = all(np.array_equal(v[0], v[k]) for k in range(1, v.shape[0])) if v.ndim >= 1 else True
        return (v[0] if v.shape[0] else v[:0].reshape(0, *v.shape[2:])), ds, not same

    def element(item: Any, rel: str, name: str, default: str | None, siblings: Any) -> None:
        target = _target(f, item, default)
        if target != group:
            skipped[rel] = f"refers to particles group {target!r}, not {group!r}" if target else \
                "no particles_group reference and more than one particles group"
            return
        tup, ds, changes = first_sample(item)
        if tup.ndim != 2 or tup.dtype.kind not in "iu":
            skipped[rel] = f"not a list of integer tuples (shape {list(tup.shape)}, {tup.dtype})"
            return
        if tup.shape[1] != 2:
            skipped[rel] = f"tuples of {tup.shape[1]} particles (angles / dihedrals): only pairs are stored"
            return
        keep = np.ones(len(tup), dtype=bool)
        if ds.id.get_create_plist().fill_value_defined() == h5py.h5d.FILL_VALUE_USER_DEFINED:
            keep &= ~np.any(tup == ds.fillvalue, axis=1)
        t = tup.astype(np.int64)
        if ids is not None:
            if min(ids, default=0) >= 0:  # negative values are padding unless the group uses negative ids
                keep &= np.all(t >= 0, axis=1)
            unknown = sorted({int(x) for x in t[keep].ravel()} - set(ids))
            if unknown:
                raise ParseError(str(path), f"connectivity/{rel}: particle id(s) {unknown[:5]} are not in "
                                            f"particles/{group}/id")
            t = np.vectorize(ids.__getitem__, otypes=[np.int64])(t[keep]) if keep.any() else t[:0]
        else:
            keep &= np.all(t >= 0, axis=1)
            t = t[keep]
            if t.size and int(t.max()) >= n_atoms:
                raise ParseError(str(path), f"connectivity/{rel}: particle index {int(t.max())} is out of range "
                                            f"for the {n_atoms} particles of particles/{group}")
        o = np.full(len(t), np.nan, dtype=np.float32)
        oname = "bond_orders" if name == "bonds" else f"{name}_orders"
        if oname in siblings:
            ov, _, _ = first_sample(siblings[oname])
            if ov.ndim == 1 and len(ov) == len(keep):
                o = ov[keep].astype(np.float32)
        if name in elements:
            name = rel
        if changes:
            varies.append(name)
        elements.append(name)
        pairs.append(t.reshape(-1, 2))
        orders.append(o)

    def walk(g: Any, prefix: str, default: str | None) -> None:
        for key in g:
            item, rel = g[key], f"{prefix}{key}"
            if key.endswith("_orders"):
                continue
            if isinstance(item, h5py.Dataset) or (isinstance(item, h5py.Group) and "value" in item):
                name = rel[len(group) + 1:] if rel.startswith(group + "/") else rel
                own = default if default is not None else (
                    pgroups[0] if len(pgroups) == 1 else (key if key in pgroups else None))
                element(item, rel, name, own, g)
            elif isinstance(item, h5py.Group):
                walk(item, rel + "/", key if key in pgroups else default)

    walk(f["connectivity"], "", None)
    notes: dict[str, Any] = {}
    if skipped:
        notes["connectivity_skipped"] = skipped
    if varies:
        notes["connectivity_time_dependent"] = {"changing": varies, "stored": "first sample"}
    if not elements:
        return None, notes
    n = [len(p) for p in pairs]
    both = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    order = np.concatenate(orders) if orders else np.zeros(0, np.float32)
    c = Connectivity(elements=elements, atom_1=both[:, 0], atom_2=both[:, 1],
                     element=np.repeat(np.arange(len(elements), dtype=np.int16), n),
                     order=order if np.isfinite(order).any() else None)
    c.provenance.source = "ingest:h5md/connectivity"
    c.attrs = {"particles_group": group, **({"time_dependent": varies} if varies else {})}
    return c, notes
