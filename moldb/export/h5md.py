"""H5MD 1.1 writer (h5py, the ``md`` extra).

Layout written (readable by MDAnalysis's ``H5MDReader`` and any H5MD 1.1 reader)::

    h5md/            version = [1, 1]; author/name; creator/name, version
    particles/trajectory/
        box/         dimension = 3, boundary = periodic ×3 (or none ×3);
                     edges/{value (n, 3, 3) Å, step, time}  when the trajectory has a box
        position/    value (n, N, 3) float32 "Angstrom", step (n,) int, time (n,) float "ps"
        velocity/    value "Angstrom ps-1"          (when stored)
        force/       value "kJ mol-1 Angstrom-1"    (when stored)
    parameters/      moldb_title; atom names / elements as string datasets (vlen)

Coordinates are written in Å exactly as moldb decodes them, chunked one frame per chunk,
so MDAnalysis reads back identical float32 values (no unit conversion: ``Angstrom``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from moldb.errors import ValidationError

__all__ = ["write_h5md"]

_BATCH = 256
_DEFAULT_UNITS = {"velocity": "Angstrom ps-1", "force": "kJ mol-1 Angstrom-1"}


def write_h5md(path: Path, *, n_atoms: int, n_frames: int, positions: Callable[[int, int], np.ndarray],
               time: np.ndarray, step: np.ndarray, box: np.ndarray | None,
               extra: dict[str, Callable[[int, int], np.ndarray]] | None = None,
               units: dict[str, str] | None = None, names: list[str] | None = None,
               elements: list[str] | None = None, author: str = "moldb", title: str = "") -> Path:
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

    Returns
    -------
    pathlib.Path
    """
    try:
        import h5py
    except ImportError as exc:
        raise ValidationError("writing H5MD needs h5py; install the extra with `pip install 'moldb[md]'`") from exc
    from moldb import __version__

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
        b = g.create_group("box")
        b.attrs["dimension"] = np.int32(3)
        b.attrs["boundary"] = np.array(["periodic" if has_box else "none"] * 3, dtype=h5py.string_dtype())
        if has_box and box is not None:
            e = b.create_group("edges")
            v = e.create_dataset("value", data=np.asarray(box, dtype=np.float32), chunks=(1, 3, 3) if n_frames
                                 else None)
            v.attrs["unit"] = "Angstrom"
            e.create_dataset("step", data=np.asarray(step, dtype=np.int64))
            e.create_dataset("time", data=np.asarray(time, dtype=np.float64)).attrs["unit"] = "ps"

        def element(name: str, unit: str, fill: Callable[[int, int], np.ndarray]) -> None:
            grp = g.create_group(name)
            ds = grp.create_dataset("value", shape=(n_frames, n_atoms, 3), dtype=np.float32,
                                    chunks=(1, n_atoms, 3) if n_frames and n_atoms else None)
            ds.attrs["unit"] = unit
            for lo in range(0, n_frames, _BATCH):
                hi = min(lo + _BATCH, n_frames)
                ds[lo:hi] = fill(lo, hi)
            grp.create_dataset("step", data=np.asarray(step, dtype=np.int64))
            grp.create_dataset("time", data=np.asarray(time, dtype=np.float64)).attrs["unit"] = "ps"

        element("position", "Angstrom", positions)
        for name, fill in (extra or {}).items():
            element(name, units.get(name, _DEFAULT_UNITS.get(name, "")), fill)
        params = f.create_group("parameters")
        if title:
            params.attrs["moldb_title"] = title
        if names is not None:
            params.create_dataset("atom_names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        if elements is not None:
            params.create_dataset("elements", data=np.array(elements, dtype=object), dtype=h5py.string_dtype())
    tmp.replace(path)
    return path
