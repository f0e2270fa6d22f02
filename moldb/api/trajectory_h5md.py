"""H5MD 1.1 export of a stored trajectory: frames, box, observables, frame labels, constants, connectivity.

``store.export(entry, "out.h5md")`` and ``moldb frames ... -o out.h5md`` land in :func:`export_h5md`
(re-exported by :mod:`moldb.api.trajectory` and :mod:`moldb.api.trajectory_export`); the file layout is
:mod:`moldb.export.h5md`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["export_h5md"]


def _atomic_numbers(symbols: list[str]) -> np.ndarray:
    import gemmi

    out = np.zeros(len(symbols), dtype=np.int32)
    cache: dict[str, int] = {}
    for i, sym in enumerate(symbols):
        if sym not in cache:
            z = gemmi.Element(sym).atomic_number if sym and sym not in ("X", "?", ".") else 0
            cache[sym] = int(z)
        out[i] = cache[sym]
    return out


_LABEL_ATTRS = ("moldb_kind", "derived_from", "categories")


def _free(name: str, taken: set[str]) -> str:
    base, k = name, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _observable_series(t: Any, fr: np.ndarray) -> dict[str, Any]:
    """Observables and frame labels of ``t`` on the frames ``fr`` as ``observables/<name>`` series.

    A label whose name an observable has is written as ``<name>_label``; string labels as their
    codes with a ``categories`` attribute (MDAnalysis's H5MDReader puts the codes in ``ts.data``).
    """
    from moldb.export.h5md import Series
    from moldb.ir.trajectory import FrameLabels

    out: dict[str, Any] = {}
    for name, o in t.observables().items():
        out[name] = Series(np.asarray(o.values)[fr], o.unit, {k: v for k, v in o.attrs.items() if k in _LABEL_ATTRS})
    taken = set(out)
    for d in t._descriptors(FrameLabels.TYPE):
        if not isinstance(d, FrameLabels) or d.labels is None:
            continue
        attrs: dict[str, Any] = {"moldb_kind": "frame_labels", "derived_from": d.derived_from}
        if d.categories is not None:
            attrs["categories"] = list(d.categories)
        out[_free(d.name if d.name not in taken else f"{d.name}_label", taken)] = Series(
            np.asarray(d.labels)[fr], "", attrs
        )
    return out


def _constants(t: Any, taken: set[str]) -> dict[str, tuple[np.ndarray, str]]:
    """The source's time-independent observables (``source["observables_constant"]``) by their path."""
    out: dict[str, tuple[np.ndarray, str]] = {}
    for path, c in dict(t.descriptor.source.get("observables_constant", {})).items():
        value = np.asarray(c["value"], dtype=np.dtype(c["dtype"]) if "dtype" in c else None)
        if path.split("/")[0] in taken:  # an observable or label has that name: flatten the path
            path = _free(path.replace("/", "_") + "_constant", taken)
        taken.add(path.split("/")[0])
        out[path] = (value, str(c.get("unit", "")))
    return out


def export_h5md(
    store: Any,
    entry: str,
    path: str | Path,
    version: int | str | None = None,
    author: str = "moldb",
    frames: Any = None,
    select: Any = None,
    bonds: bool = True,
    constants: bool = True,
) -> Path:
    """Write the trajectory of ``entry`` as H5MD 1.1 (``particles/trajectory``, Å, ps) at ``path``.

    Parameters
    ----------
    store : moldb.Store
    entry : str
    path : str or pathlib.Path
    version : int or str, optional
    author : str
        ``h5md/author/name``.
    frames : slice, int, array of int or bool, optional
        Frames to write (default: all), as :meth:`Trajectory.frames` takes them.
    select : str or array, optional
        Atoms to write (a selection such as ``"name CA"``, indices or a mask; default: all).
    bonds : bool
        Write ``/connectivity``: the stored elements (pairs, triples, quadruples; time-dependent
        ones as time-dependent groups) and the bonds moldb derives (templates, polymer links,
        ``struct_conn``), restricted to the atoms written.
    constants : bool
        Write the source's time-independent observables as ``observables/<path>`` datasets
        (valid H5MD; MDAnalysis's H5MDReader refuses files that have them, as it refused the source).

    Returns
    -------
    pathlib.Path
        Besides positions / velocities / forces, box, time and step it holds the per-frame
        observables and frame labels (``observables/<name>``), ``species`` (atomic numbers),
        atom names and elements.
    """
    from moldb.api.connectivity import export_elements, stored_connectivity
    from moldb.api.trajectory import open_trajectory
    from moldb.export.h5md import write_h5md

    t = open_trajectory(store, entry, version)
    fr = t.frame_indices(frames)
    idx = t.atom_indices(select)
    s = t.topology()
    atoms = s.atoms.take(pa.array(t._rows[idx] if t._rows is not None else idx, pa.int64()))
    names = (
        [str(v) for v in atoms.column("label_atom_id").to_pylist()] if "label_atom_id" in atoms.column_names else None
    )
    elements = (
        [str(v or "X") for v in atoms.column("type_symbol").to_pylist()]
        if "type_symbol" in atoms.column_names
        else None
    )
    whole = idx.size == t.n_atoms
    sel = None if whole else idx

    def reader(field: str) -> Callable[[int, int], np.ndarray]:
        return lambda lo, hi: t.frames(fr[lo:hi], select=sel, field=field)

    extra = {f: reader(f) for f in t.fields if f != "position"}
    observables = _observable_series(t, fr)
    consts = _constants(t, set(observables)) if constants else {}
    connectivity: dict[str, Any] | None = None
    if bonds:
        conn, rows = stored_connectivity(store, t.entry, t.version)
        connectivity = dict(
            export_elements(s.bonds(), conn, rows if rows is not None else t._rows, idx, t.n_atoms, t.step[fr])
        )
    return write_h5md(
        Path(path),
        n_atoms=int(idx.size),
        n_frames=int(fr.size),
        positions=reader("position"),
        time=t.time[fr],
        step=t.step[fr],
        box=None if t.box is None else t.box[fr],
        extra=extra,
        units=t.units,
        names=names,
        elements=elements,
        author=author,
        title=f"{t.entry} v{t.version}",
        species=None if elements is None else _atomic_numbers(elements),
        observables=observables,
        constants=consts,
        connectivity=connectivity,
    )
