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
    observables/<name>/  value (n, ...), step, time (one sample per frame; ``unit`` as stored;
                     frame labels too, with attributes moldb_kind, derived_from, categories)
    observables/<path>   time-independent observables: a plain dataset (``unit`` as stored)
    connectivity/<name>  (n_tuples, T) int particle indices, attribute particles_group → particles/trajectory;
                     time-dependent: a group with value (k, N_max, T) (fill value -1), step, time
    connectivity/bond_orders (or <name>_orders)  (n_pairs,) float64 when orders are known
    parameters/      moldb_title; atom names / elements as string datasets (vlen)

Every per-frame ``step`` / ``time`` is a hard link to ``position/step`` / ``position/time``, as
the spec asks for ``box`` and allows for the other elements. Coordinates are written in Å exactly
as moldb decodes them, chunked one frame per chunk, so MDAnalysis reads back identical float32
values (no unit conversion: ``Angstrom``); MDAnalysis puts the time series of ``/observables`` in
``ts.data`` (its H5MDReader refuses time-independent observables, which are valid H5MD).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moldb.errors import ValidationError

__all__ = ["Series", "TupleElement", "write_h5md"]

_BATCH = 256
_DEFAULT_UNITS = {"velocity": "Angstrom ps-1", "force": "kJ mol-1 Angstrom-1"}


@dataclass
class Series:
    """One ``observables/<name>`` time series: a value per frame, its unit and attributes of the group."""

    values: np.ndarray
    unit: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TupleElement:
    """One ``connectivity/<name>`` element (particle indices of the written file).

    ``tuples`` (n, T) and ``orders`` for a time-independent element; for a time-dependent one,
    ``samples`` (the tuples at each sample), ``sample_orders`` and ``sample_frames`` (the written
    frame each sample belongs to), ``tuples`` then only giving T by its shape.
    """

    tuples: np.ndarray
    orders: np.ndarray | None = None
    samples: list[np.ndarray] | None = None
    sample_orders: list[np.ndarray] | None = None
    sample_frames: np.ndarray | None = None

    @property
    def arity(self) -> int:
        """Particles per tuple."""
        return int(np.shape(self.tuples)[1]) if np.ndim(self.tuples) == 2 else 2


def _oname(name: str) -> str:
    return "bond_orders" if name == "bonds" else f"{name}_orders"


def _check(
    n_atoms: int,
    n_frames: int,
    observables: Mapping[str, Series],
    connectivity: Mapping[str, TupleElement],
) -> None:
    for name, o in observables.items():
        if np.shape(o.values)[:1] != (n_frames,):
            raise ValidationError(
                f"observable {name!r} has {np.shape(o.values)[:1]} rows; expected one per frame ({n_frames})"
            )
    for name, e in connectivity.items():
        for t in [e.tuples, *(e.samples or [])]:
            a = np.asarray(t)
            if a.size and (a.ndim != 2 or a.shape[1] not in (2, 3, 4) or a.min() < 0 or a.max() >= n_atoms):
                raise ValidationError(
                    f"connectivity {name!r}: tuples must be (n, 2 … 4) particle indices in 0 … {n_atoms - 1}"
                )


def _write_observables(
    f: Any,
    observables: Mapping[str, Series],
    constants: Mapping[str, tuple[np.ndarray, str]],
    link: Callable[[Any], None],
) -> None:
    obs = f.create_group("observables")
    for name, o in observables.items():
        grp = obs.create_group(name)
        vals = np.asarray(o.values)
        ds = grp.create_dataset("value", data=vals.astype(np.int8) if vals.dtype == bool else vals)
        if o.unit:
            ds.attrs["unit"] = o.unit
        for k, v in o.attrs.items():
            grp.attrs[k] = v
        link(grp)
    for path, (value, unit) in constants.items():
        ds = obs.create_dataset(path, data=np.asarray(value))
        if unit:
            ds.attrs["unit"] = unit


def _write_connectivity(
    f: Any, g: Any, connectivity: Mapping[str, TupleElement], n_atoms: int, step: np.ndarray, time: np.ndarray
) -> None:
    conn = f.create_group("connectivity")
    itype = np.int32 if n_atoms < 2**31 else np.int64
    for name, e in connectivity.items():
        arity = e.arity
        if e.samples is None:
            ds = conn.create_dataset(name, data=np.asarray(e.tuples, dtype=itype).reshape(-1, arity))
            ds.attrs["particles_group"] = g.ref
            if e.orders is not None and np.isfinite(np.asarray(e.orders, dtype=np.float64)).any():
                conn.create_dataset(_oname(name), data=np.asarray(e.orders, dtype=np.float64))
            continue
        k, width = len(e.samples), max([len(s) for s in e.samples], default=0)
        value = np.full((k, width, arity), -1, dtype=itype)
        orders = np.full((k, width), np.nan)
        for i, s in enumerate(e.samples):
            value[i, : len(s)] = s
            if e.sample_orders is not None:
                orders[i, : len(s)] = e.sample_orders[i]
        grp = conn.create_group(name)
        grp.attrs["particles_group"] = g.ref
        grp.create_dataset("value", data=value, fillvalue=itype(-1))
        frames = np.asarray(e.sample_frames, dtype=np.int64)
        grp.create_dataset("step", data=np.asarray(step, np.int64)[frames])
        grp.create_dataset("time", data=np.asarray(time, np.float64)[frames]).attrs["unit"] = "ps"
        if np.isfinite(orders).any():
            og = conn.create_group(_oname(name))
            og.create_dataset("value", data=orders)
            og["step"], og["time"] = grp["step"], grp["time"]


def write_h5md(
    path: Path,
    *,
    n_atoms: int,
    n_frames: int,
    positions: Callable[[int, int], np.ndarray],
    time: np.ndarray,
    step: np.ndarray,
    box: np.ndarray | None,
    extra: dict[str, Callable[[int, int], np.ndarray]] | None = None,
    units: dict[str, str] | None = None,
    names: list[str] | None = None,
    elements: list[str] | None = None,
    author: str = "moldb",
    title: str = "",
    species: np.ndarray | None = None,
    observables: Mapping[str, Series | tuple[np.ndarray, str]] | None = None,
    constants: Mapping[str, tuple[np.ndarray, str]] | None = None,
    connectivity: Mapping[str, TupleElement | tuple[np.ndarray, np.ndarray | None]] | None = None,
) -> Path:
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
        Name → :class:`Series` (or (values, unit)) with one row per frame, written as
        ``observables/<name>`` (booleans as int8).
    constants : dict, optional
        Path below ``/observables`` → (value, unit): time-independent observables.
    connectivity : dict, optional
        Element name → :class:`TupleElement` (or ((n, 2) pairs, orders)), written as
        ``connectivity/<name>`` with a ``particles_group`` reference.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValidationError
        h5py is missing, an observable has not one row per frame, or a tuple names a
        particle outside 0 … n_atoms-1.
    """
    try:
        import h5py
    except ImportError as exc:
        raise ValidationError("writing H5MD needs h5py; install the extra with `pip install 'moldb[md]'`") from exc
    from moldb import __version__

    series = {k: v if isinstance(v, Series) else Series(np.asarray(v[0]), v[1]) for k, v in (observables or {}).items()}
    tuples = {
        k: v
        if isinstance(v, TupleElement)
        else TupleElement(np.asarray(v[0]) if np.size(v[0]) else np.zeros((0, 2), np.int64), v[1])
        for k, v in (connectivity or {}).items()
    }
    _check(n_atoms, n_frames, series, tuples)
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
            ds = grp.create_dataset(
                "value",
                shape=(n_frames, n_atoms, 3),
                dtype=np.float32,
                chunks=(1, n_atoms, 3) if n_frames and n_atoms else None,
            )
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
            v = e.create_dataset(
                "value", data=np.asarray(box, dtype=np.float32), chunks=(1, 3, 3) if n_frames else None
            )
            v.attrs["unit"] = "Angstrom"
            link(e)
        for name, fill in (extra or {}).items():
            element(name, units.get(name, _DEFAULT_UNITS.get(name, "")), fill)
        if species is not None:
            g.create_dataset("species", data=np.asarray(species, dtype=np.int32))
        if series or constants:
            _write_observables(f, series, constants or {}, link)
        if tuples:
            _write_connectivity(f, g, tuples, n_atoms, step, time)
        params = f.create_group("parameters")
        if title:
            params.attrs["moldb_title"] = title
        if names is not None:
            params.create_dataset("atom_names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        if elements is not None:
            params.create_dataset("elements", data=np.array(elements, dtype=object), dtype=h5py.string_dtype())
    tmp.replace(path)
    return path
