"""Writing a stored trajectory out: H5MD 1.1 (frames, observables, connectivity), multi-model PDB / mmCIF, XYZ.

:func:`export_h5md` (:mod:`moldb.api.trajectory_h5md`) writes ``store.export(entry, "out.h5md")``;
:func:`write_frames` is the
body of ``moldb frames ENTRY -o out.{h5md,pdb,cif,bcif,xyz}``: chosen frames (a slice, indices,
or ``frames_where`` hits) and atoms (a selection), one model per frame for the structure formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.api.trajectory_h5md import export_h5md
from moldb.errors import ValidationError

__all__ = ["FRAME_FORMATS", "export_h5md", "frame_format", "parse_frames", "write_frames"]

#: formats :func:`write_frames` writes (``.gz`` works for the structure formats)
FRAME_FORMATS = ("h5md", "pdb", "mmcif", "bcif", "xyz")
_FORMAT_NAMES = {"h5md": "h5md", "xyz": "xyz", "pdb": "pdb", "cif": "mmcif", "mmcif": "mmcif", "bcif": "bcif"}
_U6 = ("U11", "U22", "U33", "U12", "U13", "U23")


def parse_frames(spec: str) -> slice | list[int]:
    """``"0:250:10"`` → slice, ``"137"`` / ``"0,5,-1"`` → list of ints (the CLI's ``--frames``).

    Raises
    ------
    ValidationError
        Anything else (with the accepted forms).
    """
    text = spec.strip()
    bits = text.split(":")
    try:
        if len(bits) > 3:
            raise ValueError(text)
        nums = [int(b) if b.strip() else None for b in bits] if len(bits) > 1 else [int(b) for b in text.split(",")]
    except ValueError:
        raise ValidationError(
            f"--frames {spec!r}: use START:STOP[:STEP] (e.g. 0:250:10), one index (137) or a comma list (0,5,9)"
        ) from None
    if len(bits) == 1:
        return [int(v) for v in nums if v is not None]
    if len(nums) == 3 and nums[2] == 0:
        raise ValidationError(f"--frames {spec!r}: the step of a slice cannot be 0")
    return slice(*nums)


def frame_format(path: str | Path, format: str | None = None) -> str:
    """Output format of :func:`write_frames` for ``path`` (suffix, ``.gz`` looked through) or ``format``."""
    if format is not None:
        fmt = _FORMAT_NAMES.get(format.lower())
        if fmt is None:
            raise ValidationError(f"unknown frames format {format!r}; use one of {', '.join(FRAME_FORMATS)}")
        return fmt
    name = Path(path).name.lower()
    if name.endswith(".h5md"):
        return "h5md"
    if name.endswith(".xyz"):
        return "xyz"
    from moldb.export import format_for_path

    try:
        return format_for_path(path)
    except ValidationError:
        raise ValidationError(
            f"{Path(path).name}: cannot tell the format from the suffix; use .h5md, .pdb, .cif, "
            ".bcif or .xyz (.gz for pdb/cif), or pass format="
        ) from None


def _multi_model(s: Any, rows: np.ndarray, xyz: np.ndarray) -> Any:
    """A :class:`~moldb.schema.parsed.ParsedEntry` with one model per frame of ``xyz`` (k, m, 3)."""
    from dataclasses import replace

    k, m = xyz.shape[0], len(rows)
    p = s.to_parsed()
    base = p.atoms.take(pa.array(rows, pa.int64()))
    base = base.drop_columns([c for c in _U6 if c in base.column_names])
    t = base.take(pa.array(np.tile(np.arange(m), k), pa.int64()))
    flat = xyz.reshape(k * m, 3).astype(np.float64)
    new = {
        "Cartn_x": pa.array(flat[:, 0]),
        "Cartn_y": pa.array(flat[:, 1]),
        "Cartn_z": pa.array(flat[:, 2]),
        "pdbx_PDB_model_num": pa.array(np.repeat(np.arange(1, k + 1), m), pa.int64()),
        "id": pa.array(np.arange(1, k * m + 1), pa.int64()),
    }
    for name, arr in new.items():
        if name in t.column_names:
            t = t.set_column(t.column_names.index(name), name, arr.cast(t.schema.field(name).type))
        else:
            t = t.append_column(name, arr)
    masks = {
        c: np.tile(np.asarray(v)[rows], k) for c, v in p.atom_masks.items() if c in t.column_names and c not in new
    }
    decimals = {**p.decimals, **{c: max(int(p.decimals.get(c, 3)), 3) for c in ("Cartn_x", "Cartn_y", "Cartn_z")}}
    items = [i for i in p.atom_items if i in t.column_names]
    items += [c for c in t.column_names if c not in items]
    cats = [c for c in p.categories if c.name not in ("atom_site", "atom_site_anisotrop")]
    return replace(p, atoms=t, atom_masks=masks, atom_items=items, decimals=decimals, categories=cats, aniso_items=[])


def _write_xyz(
    path: Path, symbols: list[str], xyz: np.ndarray, frames: np.ndarray, time: np.ndarray, title: str
) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w") as fh:
        for k, f in enumerate(frames):
            fh.write(f"{len(symbols)}\n{title} frame {int(f)} time {float(time[f]):.6g} ps\n")
            fh.writelines(f"{sym:<2} {x:.5f} {y:.5f} {z:.5f}\n" for sym, (x, y, z) in zip(symbols, xyz[k], strict=True))
    tmp.replace(path)


def write_frames(
    store: Any,
    entry: str,
    path: str | Path,
    frames: Any = None,
    select: Any = None,
    version: int | str | None = None,
    format: str | None = None,
) -> dict[str, Any]:
    """Write chosen frames and atoms of ``entry``'s trajectory to ``path``.

    Parameters
    ----------
    store : moldb.Store
    entry : str
    path : str or pathlib.Path
        ``.h5md`` (H5MD 1.1 with observables and connectivity), ``.pdb`` / ``.cif`` /
        ``.bcif`` (``.gz`` ok; one model per frame, the topology's atom records) or ``.xyz``.
    frames : slice, int, list of int or bool mask, optional
        Frames to write (default: all).
    select : str or array, optional
        Atoms to write (selection language, e.g. ``"name CA"``; default: all).
    version : int or str, optional
    format : str, optional
        Overrides the suffix: ``h5md``, ``pdb``, ``cif``, ``bcif`` or ``xyz``.

    Returns
    -------
    dict
        ``entry``, ``version``, ``output``, ``format``, ``n_frames``, ``n_atoms``, ``first_frames``.

    Raises
    ------
    EntryNotFoundError
        Unknown entry or version, or the version has no trajectory.
    ValidationError
        Bad frames (out of range, not integers), a selection matching no atom, an unknown format.
    """
    from moldb.api.trajectory import open_trajectory
    from moldb.export import write

    fmt = frame_format(path, format)
    t = open_trajectory(store, entry, version)
    fr = t.frame_indices(frames)
    idx = t.atom_indices(select)
    if not fr.size:
        raise ValidationError(f"{t.entry}: no frames selected (it has {t.n_frames}: 0 … {t.n_frames - 1})")
    if not idx.size:
        raise ValidationError(f"{t.entry}: the selection {select!r} matches no atom of the trajectory")
    out = Path(path)
    if fmt == "h5md":
        export_h5md(store, t.entry, out, version=t.version, frames=fr, select=idx)
    else:
        xyz = t.frames(fr, select=idx)
        s = t.topology()
        rows = t._rows[idx] if t._rows is not None else idx
        if fmt == "xyz":
            col = (
                s.atoms.column("type_symbol").take(pa.array(rows, pa.int64())).to_pylist()
                if "type_symbol" in s.atoms.column_names
                else ["X"] * idx.size
            )
            _write_xyz(out, [str(v or "X") for v in col], xyz, fr, t.time, f"{t.entry} v{t.version}")
        else:
            write(_multi_model(s, rows, xyz), out, format=fmt)
    return {
        "entry": t.entry,
        "version": t.version,
        "output": str(out),
        "format": fmt,
        "n_frames": int(fr.size),
        "n_atoms": int(idx.size),
        "first_frames": [int(v) for v in fr[:10]],
    }
