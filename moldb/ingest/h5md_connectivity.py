"""H5MD 1.1 ``/connectivity`` reader: particle tuples of one particles group as a :class:`Connectivity`.

Follows the spec's "Connectivity group" and "Storage of particles and tuples lists": an element is an
``Integer[N][T]`` dataset or a time-dependent group (``value [variable][N][T]`` with ``step``),
directly under ``/connectivity`` (ESPResSo's ``connectivity/atoms``) or in a subgroup named after a
particles group (ZnH5MD's ``connectivity/atoms/bonds``). Its ``particles_group`` object reference (else
the subgroup's name, else the file's only particles group) must be the group read; tuples holding a
user-defined fill value, and negative padding, are ignored; values map through the group's ``id``
element when it has one. Pairs, triples and quadruples (T = 2, 3, 4: bonds, angles, dihedrals) are
kept. A time-dependent element keeps every sample: each tuple becomes one row per run of consecutive
samples (sorted by step) holding it, in effect from the run's first step until the next sample's
step; an element whose samples all hold the same tuples is stored as time-independent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moldb.errors import ParseError
from moldb.ir.trajectory import STEP_MAX, STEP_MIN, Connectivity

__all__ = ["read_connectivity"]

_ARITIES = (2, 3, 4)


def _particle_ids(particles: Any) -> np.ndarray | None:
    """The group's ``id`` values (index i holds particle i's id), or None."""
    import h5py

    if "id" not in particles:
        return None
    e = particles["id"]
    v = np.asarray((e["value"] if isinstance(e, h5py.Group) else e)[()])
    return (v[0] if v.ndim == 2 else v).astype(np.int64)


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


def _runs(
    s: np.ndarray, p: np.ndarray, t: np.ndarray, o: np.ndarray, steps: np.ndarray, n_samples: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """Tuples of all samples (sample ``s``, position ``p``) → one row per run of consecutive samples.

    Returns tuples, orders, step_lo, step_hi (rows sorted by first sample, then position) and whether
    every run spans every sample (the element does not change).
    """
    if not len(t):
        z = np.zeros(0, np.int64)
        return t, o, z, z, True
    uniq, inv = np.unique(t, axis=0, return_inverse=True)
    inv = inv.ravel()
    idx = np.lexsort((p, s, inv))
    u, ss = inv[idx], s[idx]
    dup = np.r_[False, (u[1:] == u[:-1]) & (ss[1:] == ss[:-1])]  # the same tuple twice in one sample
    idx, u, ss = idx[~dup], u[~dup], ss[~dup]
    start = np.r_[True, (u[1:] != u[:-1]) | (ss[1:] != ss[:-1] + 1)]
    first = np.flatnonzero(start)
    last = np.r_[first[1:] - 1, len(u) - 1]
    s_lo, s_hi = ss[first], ss[last]
    lo = steps[s_lo]
    hi = np.where(s_hi + 1 < n_samples, steps[np.minimum(s_hi + 1, n_samples - 1)], STEP_MAX)
    order = np.lexsort((p[idx[first]], s_lo))
    whole = bool(np.all(s_lo == 0) and np.all(s_hi == n_samples - 1))
    return uniq[u[first]][order], o[idx[first]][order], lo[order], hi[order], whole


def read_connectivity(
    f: Any, particles: Any, n_atoms: int, path: Path, frame_steps: np.ndarray | None = None
) -> tuple[Connectivity | None, dict[str, Any]]:
    """The ``/connectivity`` tuples of an open H5MD file that refer to ``particles``.

    Parameters
    ----------
    f : h5py.File
    particles : h5py.Group
        The particles group read (``particles/<group>``).
    n_atoms : int
    path : pathlib.Path
        For messages.
    frame_steps : numpy.ndarray, optional
        Steps of the frames: the steps of a time-dependent element that has no ``step``
        dataset when it has one sample per frame.

    Raises
    ------
    ParseError
        A tuple names a particle index (or id) the group does not have.
    """
    import h5py

    from moldb.ingest.h5md import _series

    if "connectivity" not in f or not isinstance(f["connectivity"], h5py.Group):
        return None, {}
    group = particles.name.rsplit("/", 1)[-1]
    pgroups = list(f["particles"])
    ids = _particle_ids(particles)
    id_order = None if ids is None else np.argsort(ids, kind="stable")
    names: list[str] = []
    arity: list[int] = []
    varies: list[str] = []
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    skipped: dict[str, str] = {}

    def particle_index(t: np.ndarray, keep: np.ndarray, rel: str) -> np.ndarray:
        if ids is None or id_order is None:
            keep &= np.all(t >= 0, axis=-1)
            if keep.any() and int(t[keep].max()) >= n_atoms:
                raise ParseError(
                    str(path),
                    f"connectivity/{rel}: particle index {int(t[keep].max())} is out of "
                    f"range for the {n_atoms} particles of particles/{group}",
                )
            return t
        if ids.size == 0 or ids.min() >= 0:  # negative values are padding unless the group uses negative ids
            keep &= np.all(t >= 0, axis=-1)
        sid = ids[id_order]
        pos = np.minimum(np.searchsorted(sid, t), max(len(sid) - 1, 0))
        known = sid[pos] == t if len(sid) else np.zeros(t.shape, bool)
        bad = keep[..., None] & ~known
        if bad.any():
            raise ParseError(
                str(path),
                f"connectivity/{rel}: particle id(s) {sorted(set(t[bad].tolist()))[:5]} "
                f"are not in particles/{group}/id",
            )
        return id_order[pos] if len(sid) else t

    def element(item: Any, rel: str, name: str, default: str | None, siblings: Any) -> None:
        target = _target(f, item, default)
        if target != group:
            skipped[rel] = (
                f"refers to particles group {target!r}, not {group!r}"
                if target
                else "no particles_group reference and more than one particles group"
            )
            return
        dynamic = isinstance(item, h5py.Group)
        ds = item["value"] if dynamic else item
        v = np.asarray(ds[()])
        if v.ndim != (3 if dynamic else 2) or v.dtype.kind not in "iu":
            skipped[rel] = f"not a list of integer tuples (shape {list(v.shape)}, {v.dtype})"
            return
        if v.shape[-1] not in _ARITIES:
            skipped[rel] = f"tuples of {v.shape[-1]} particles: pairs, triples and quadruples are stored"
            return
        v = v.astype(np.int64) if dynamic else v.astype(np.int64)[None]
        n_s = v.shape[0]
        if dynamic and "step" in item:
            steps = _series(item["step"], n_s).astype(np.int64)
        elif dynamic and frame_steps is not None and len(frame_steps) == n_s:
            steps = np.asarray(frame_steps, np.int64)
        elif dynamic:
            skipped[rel] = f"time-dependent with {n_s} samples and no step to place them on the frames"
            return
        else:
            steps = np.zeros(1, np.int64)
        keep = np.ones(v.shape[:2], dtype=bool)
        if ds.id.get_create_plist().fill_value_defined() == h5py.h5d.FILL_VALUE_USER_DEFINED:
            keep &= ~np.any(v == ds.fillvalue, axis=-1)
        v = particle_index(v, keep, rel)
        o = np.full(v.shape[:2], np.nan, dtype=np.float32)
        oname = "bond_orders" if name == "bonds" else f"{name}_orders"
        if oname in siblings:
            oi = siblings[oname]
            ov = np.asarray((oi["value"] if isinstance(oi, h5py.Group) else oi)[()], dtype=np.float32)
            ov = ov if ov.ndim == 2 else ov[None]
            if ov.shape == o.shape or (ov.shape[0] == 1 and ov.shape[1:] == o.shape[1:]):
                o = np.broadcast_to(ov, o.shape)
        if n_s > 1 and bool((keep == keep[:1]).all()) and bool((v[:, keep[0]] == v[:1, keep[0]]).all()):
            v, keep, o, steps, n_s = v[:1], keep[:1], o[:1], steps[:1], 1  # every sample the same: time-independent
        srt = np.argsort(steps, kind="stable")
        v, keep, o, steps = v[srt], keep[srt], o[srt], steps[srt]
        s, p = np.nonzero(keep)
        t, ov_, lo, hi, whole = _runs(s, p, v[keep], o[keep], steps, n_s)
        if whole:
            lo, hi = np.full(len(t), STEP_MIN, np.int64), np.full(len(t), STEP_MAX, np.int64)
        if name in names:
            name = rel
        if not whole:
            varies.append(name)
        names.append(name)
        arity.append(int(v.shape[-1]))
        rows.append((np.pad(t, ((0, 0), (0, 4 - t.shape[1])), constant_values=-1), ov_, lo, hi))

    def walk(g: Any, prefix: str, default: str | None) -> None:
        for key in g:
            item, rel = g[key], f"{prefix}{key}"
            if key.endswith("_orders"):
                continue
            if isinstance(item, h5py.Dataset) or (isinstance(item, h5py.Group) and "value" in item):
                name = rel[len(group) + 1 :] if rel.startswith(group + "/") else rel
                own = (
                    default
                    if default is not None
                    else (pgroups[0] if len(pgroups) == 1 else (key if key in pgroups else None))
                )
                element(item, rel, name, own, g)
            elif isinstance(item, h5py.Group):
                walk(item, rel + "/", key if key in pgroups else default)

    walk(f["connectivity"], "", None)
    notes: dict[str, Any] = {}
    if skipped:
        notes["connectivity_skipped"] = skipped
    if varies:
        notes["connectivity_time_dependent"] = {"changing": varies, "stored": "every sample, as runs of steps"}
    if not names:
        return None, notes
    tup = np.concatenate([r[0] for r in rows])
    order = np.concatenate([r[1] for r in rows]).astype(np.float32)
    c = Connectivity(
        elements=names,
        arity=arity,
        time_dependent=varies,
        atom_1=tup[:, 0],
        atom_2=tup[:, 1],
        atom_3=tup[:, 2] if max(arity) > 2 else None,
        atom_4=tup[:, 3] if max(arity) > 3 else None,
        element=np.repeat(np.arange(len(names), dtype=np.int16), [len(r[0]) for r in rows]),
        order=order if np.isfinite(order).any() else None,
        step_lo=np.concatenate([r[2] for r in rows]) if varies else None,
        step_hi=np.concatenate([r[3] for r in rows]) if varies else None,
    )
    c.provenance.source = "ingest:h5md/connectivity"
    c.attrs = {"particles_group": group, **({"time_dependent": varies} if varies else {})}
    return c, notes
