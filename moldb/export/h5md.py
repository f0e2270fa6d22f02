"""H5MD 1.1 writer (h5py, the ``md`` extra).

Layout written (readable by MDAnalysis's ``H5MDReader`` and any H5MD 1.1 reader)::

    h5md/            version = [1, 1]; author/name; creator/name, version
    particles/trajectory/
        position/    value (n, N, 3) float32 "Angstrom", step (n,) int, time (n,) float "ps"
        box/         dimension = 3, boundary = periodic ×3 (or none ×3);
                     edges/{value (n, 3, 3) Å, step, time}  when the trajectory has a box
        velocity/    value "Angstrom ps-1"          (when stored)
        force/       value "kJ mol-1 Angstrom-1"    (when stored)
        species      (N,) int32 atomic numbers (time-independent; 0 unknown)
    observables/<name>/  value (n, ...), step, time (one sample per frame; ``unit`` as stored)
    connectivity/<name>  (n_pairs, 2) int particle indices, attribute particles_group → particles/trajectory
    connectivity/bond_orders (or <name>_orders)  (n_pairs,) float64 when orders are known
    parameters/      moldb_title; atom names / elements as string datasets (vlen)

Every ``step`` / ``time`` is a hard link to ``position/step`` / ``position/time``, as the spec
asks for ``box`` and allows for the other elements. Coordinates are written in Å exactly as
moldb decodes them, chunked one frame per chunk, so MDAnalysis reads back identical float32
values (no unit conversion: ``Angstrom``); MDAnalysis puts the observables in ``ts.data``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from moldb.errors import ValidationError

__all__ = ["write_h5md"]

_BATCH = 256
_DEFAULT_UNITS = {"velocity": "Angstrom ps-1", "force": "kJ mol-1 Angstrom-1"}


def write_h5md(path: Path, *, n_atoms: int, n_frames: int, positions: Callable[[int, int], np.ndarray],
               time: np.ndarray, step: np.ndarray, box: np.ndarray | None,
               extra: dict[str, Callable[[int, int], np.ndarray]] | None = None,
               units: dict[str, str] | None = None, names: list[str] | None = None,
               elements: list[str] | None = None, author: str = "moldb", title: str = "",
               species: np.ndarray | None = None, observables: dict[str, tuple[np.ndarray, str]] | None = None,
               connectivity: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None) -> Path:
    """Write an H5MD 1.1 file.

    Parameters
    ----------
    path : pathlib.Path
    n_atoms, n_frames : int
    positions : callable
        ``positions(lo, hi)`` → float32 (hi - lo, n_atoms, 3) in Å.
    time : numpy.ndarray, shape (n_frames,), float64 (ps)
    step : numpy.ndarray, shape (n_frames,), int64
    box : numpy.ndarray, shape (n_frames, 3, 3), float32 (Å), optional
    extra : dict, optional
        ``"velocity"`` / ``"force"`` → callable like ``positions``.
    units : dict, optional
        Units of the extra fields (default Å/ps and kJ/(mol·Å)).
    names, elements : list of str, optional
        Atom names and element symbols, written under ``parameters/``.
    species : numpy.ndarray, shape (n_atoms,), optional
        Atomic numbers, written as ``particles/trajectory/species``.
    observables : dict, optional
        Name → (values with one row per frame, unit), written as ``observables/<name>``.
    connectivity : dict, optional
        Element name → ((n, 2) particle index pairs, orders or None), written as
        ``connectivity/<name>`` with a ``particles_group`` reference.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValidationError
        h5py is missing, an observable has not one row per frame, or a pair names a
        particle outside 0 … n_atoms-1.
    """
    try:
        import h5py
    except ImportError as exc:
        raise ValidationError("writing H5MD needs h5py; install the extra with `pip install 'moldb[md]'`") from exc
    from moldb import __version__

    for name, (vals, _) in (observables or {}).items():
        if np.shape(vals)[:1] != (n_frames,):
            raise ValidationError(f"observable {name!r} has {np.shape(vals)[:1]} rows; expected one per frame "
                                  f"({n_frames})")
    for name, (pairs, _) in (connectivity or {}).items():
        p = np.asarray(pairs)
        if p.size and (p.ndim != 2 or p.shape[1] != 2 or p.min() < 0 or p.max() >= n_atoms):
            raise ValidationError(f"connectivity {name!r}: pairs must be (n, 2) indices in 0 … {n_atoms - 1}")
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    units = dict(units or {})
    has_box = box is not None and bool(np.any(box))
    with h5py.File(tmp, "w") as f:
        h = f.create_group("h5md")
        h.attrs["version"] = np.array([1, 1], dtype=np.int32)
        h.create_group("author").attrs["name"] = author
        c = h.create_group("creator")
        c.attrs["name"] = "moldb"
        c.attrs["version"] = str(__version__)
        g = f.create_group("particles").create_group("trajectory")

        def element(name: str, unit: str, fill: Callable[[int, int], np.ndarray]) -> None:
            grp = g.create_group(name)
            ds = grp.create_dataset("value", shape=(n_frames, n_atoms, 3), dtype=np.float32,
                                    chunks=(1, n_atoms, 3) if n_frames and n_atoms else None)
            ds.attrs["unit"] = unit
            for lo in range(0, n_frames, _BATCH):
                hi = min(lo + _BATCH, n_frames)
                ds[lo:hi] = fill(lo, hi)
            if name == "position":
                grp.create_dataset("step", data=np.asarray(step, dtype=np.int64))
                grp.create_dataset("time", data=np.asarray(time, dtype=np.float64)).attrs["unit"] = "ps"
            else:
                link(grp)

        def link(grp: Any) -> None:
            grp["step"] = g["position/step"]
            grp["time"] = g["position/time"]

        element("position", "Angstrom", positions)
        b = g.create_group("box")
        b.attrs["dimension"] = np.int32(3)
        b.attrs["boundary"] = np.array(["periodic" if has_box else "none"] * 3, dtype=h5py.string_dtype())
        if has_box and box is not None:
            e = b.create_group("edges")
            v = e.create_dataset("value", data=np.asarray(box, dtype=np.float32), chunks=(1, 3, 3) if n_frames
                                 else None)
            v.attrs["unit"] = "Angstrom"
            link(e)
        for name, fill in (extra or {}).items():
            element(name, units.get(name, _DEFAULT_UNITS.get(name, "")), fill)
        if species is not None:
            g.create_dataset("species", data=np.asarray(species, dtype=np.int32))
        if observables:
            obs = f.create_group("observables")
            for name, (vals, unit) in observables.items():
                grp = obs.create_group(name)
                ds = grp.create_dataset("value", data=np.asarray(vals))
                if unit:
                    ds.attrs["unit"] = unit
                link(grp)
        if connectivity:
            conn = f.create_group("connectivity")
            idx_type = np.int32 if n_atoms < 2**31 else np.int64
            for name, (pairs, orders) in connectivity.items():
                ds = conn.create_dataset(name, data=np.asarray(pairs, dtype=idx_type).reshape(-1, 2))
                ds.attrs["particles_group"] = g.ref
                if orders is not None and np.isfinite(np.asarray(orders, dtype=np.float64)).any():
                    oname = "bond_orders" if name == "bonds" else f"{name}_orders"
                    conn.create_dataset(oname, data=np.asarray(orders, dtype=np.float64))
        params = f.create_group("parameters")
        if title:
            params.attrs["moldb_title"] = title
        if names is not None:
            params.create_dataset("atom_names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        if elements is not None:
            params.create_dataset("elements", data=np.array(elements, dtype=object), dtype=h5py.string_dtype())
    tmp.replace(path)
    return path
