"""H5MD 1.1 reader (h5py): particles, box, observables and connectivity of one particles group.

* **Particles** — ``particles/<group>`` (``trajectory`` if present, else the first group):
  ``position`` / ``velocity`` / ``force`` (``forces``) elements with their ``step`` and
  ``time`` (explicit, or the fixed-increment scalar form with an ``offset`` attribute),
  ``box/edges`` (time-dependent or fixed; cuboid vectors or triclinic matrices),
  ``species``. Lengths, times, velocities and forces are converted to Å, ps, Å/ps and
  kJ/(mol·Å) from their ``unit`` attributes.
* **Observables** — every time-dependent element under ``/observables`` (also in subgroups,
  e.g. ``observables/atoms/energy`` for the particles group ``atoms``) becomes a
  :class:`~moldb.ir.trajectory.FrameObservable`: its samples are put on the frame axis by
  ``step`` (a frame without a sample at its step gets NaN), or by index when there is no
  step to match and the counts agree; the ``moldb_kind`` / ``derived_from`` / ``categories``
  attributes moldb's export gives frame labels land in its ``attrs``. Time-independent
  observables are recorded as constants (value, unit, dtype) in the trajectory's ``source``.
* **Connectivity** — every tuple element under ``/connectivity`` (a ``[N][T]`` dataset, a
  time-dependent group with ``value [variable][N][T]``, or either inside a subgroup named
  after a particles group, as ZnH5MD writes ``connectivity/atoms/bonds``) whose
  ``particles_group`` reference (or subgroup name) is the particles group read: pairs,
  triples and quadruples become a :class:`~moldb.ir.trajectory.Connectivity`, time-dependent
  elements with every sample (:mod:`moldb.ingest.h5md_connectivity`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from moldb.errors import ParseError
from moldb.ingest.h5md_connectivity import read_connectivity
from moldb.ingest.trajectory import _FORCE, _LENGTH, _TIME, _VELOCITY, FrameSource, _f32, _require_h5py
from moldb.ir.trajectory import FrameObservable

__all__ = ["open_h5md", "read_connectivity", "read_observables"]

_CONSTANT_MAX = 64  # elements of a time-independent observable kept as a constant


def _h5md_particles(f: Any, path: Path) -> Any:
    if "particles" not in f or not len(f["particles"]):
        raise ParseError(str(path), "not an H5MD file: no /particles group (H5MD 1.1 needs particles/<group>)")
    groups = list(f["particles"])
    name = "trajectory" if "trajectory" in groups else groups[0]
    g = f["particles"][name]
    if "position" not in g or "value" not in g["position"]:
        raise ParseError(str(path), f"H5MD group particles/{name} has no position/value dataset")
    return g


def _unit(ds: Any) -> str | None:
    unit = ds.attrs.get("unit", None)
    if isinstance(unit, bytes):
        unit = unit.decode()
    return None if unit is None else str(unit)


def _scale(ds: Any, table: dict[str, float]) -> tuple[float, str]:
    unit = _unit(ds)
    if unit is None:
        return 1.0, ""
    if unit not in table:
        return 1.0, unit  # kept as given (recorded in the descriptor's units)
    return table[unit], ""


def _series(ds: Any, n: int) -> np.ndarray:
    """Explicit values of a ``step`` / ``time`` dataset: an array, or a scalar increment with ``offset``."""
    if ds.shape == ():
        inc = np.asarray(ds[()])
        off = np.asarray(ds.attrs.get("offset", 0))
        return off + inc * np.arange(n, dtype=inc.dtype if inc.dtype.kind == "f" else np.int64)
    return np.asarray(ds[:n])


def open_h5md(path: Path) -> FrameSource:
    """Open an H5MD file: counts, per-frame arrays, observables, connectivity and a frame iterator.

    Raises
    ------
    ParseError
        Not HDF5 / H5MD, no position data, inconsistent shapes, or connectivity naming
        particles the group does not have; nothing is stored.
    """
    h5py = _require_h5py(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ParseError(str(path), f"cannot open as HDF5/H5MD ({exc})") from exc
    try:
        if "h5md" not in f:
            raise ParseError(str(path), "not an H5MD file: no /h5md group with the version attribute")
        g = _h5md_particles(f, path)
        pos = g["position"]["value"]
        if pos.ndim != 3 or pos.shape[2] != 3:
            raise ParseError(str(path), f"position/value has shape {pos.shape}; expected (frames, atoms, 3)")
        n_frames, n_atoms = int(pos.shape[0]), int(pos.shape[1])
        lscale, lunit = _scale(pos, _LENGTH)
        units = {"length": lunit or "Angstrom", "time": "ps"}

        def series(name: str) -> np.ndarray | None:
            for grp in ("position", "velocity", "force", "box/edges"):
                if grp in g and isinstance(g[grp], h5py.Group) and name in g[grp]:
                    ds = g[grp][name]
                    a = _series(ds, n_frames)
                    if name == "time":
                        tscale, u = _scale(ds, _TIME)
                        if u:
                            units["time"] = u
                        return a.astype(np.float64) * tscale
                    return a.astype(np.int64)
            return None

        file_step = series("step")
        time = series("time")
        step = np.arange(n_frames, dtype=np.int64) if file_step is None else file_step
        time = step.astype(np.float64) if time is None else time
        box = None
        if "box" in g and "edges" in g["box"]:
            e = g["box"]["edges"]
            val = e["value"] if isinstance(e, h5py.Group) else e
            bscale, _ = _scale(val, _LENGTH)
            a = np.asarray(val[()], dtype=np.float64) * bscale
            # time-dependent (a group with value/step/time) or fixed
            a = a[:n_frames] if isinstance(e, h5py.Group) else np.broadcast_to(a, (n_frames, *a.shape))
            if a.ndim == 2:  # rectangular: edge lengths
                a = np.stack([np.diag(r) for r in a])
            box = a.astype(np.float32)
        fields = ["position"]
        extra: dict[str, tuple[Any, float]] = {}
        for name, key, table in (
            ("velocity", "velocity", _VELOCITY),
            ("force", "force", _FORCE),
            ("force", "forces", _FORCE),
        ):
            if key in g and "value" in g[key] and name not in extra:
                ds = g[key]["value"]
                if ds.shape[:2] != (n_frames, n_atoms):
                    raise ParseError(
                        str(path),
                        f"{key}/value has shape {ds.shape}; expected ({n_frames}, {n_atoms}, 3) like position/value",
                    )
                s, u = _scale(ds, table)
                units[name] = u or {"velocity": "Angstrom ps-1", "force": "kJ mol-1 Angstrom-1"}[name]
                extra[name] = (ds, s)
                fields.append(name)
        species = None
        if "species" in g:
            sp = g["species"]
            sv = sp["value"] if isinstance(sp, h5py.Group) else sp
            species = np.asarray(sv[0] if sv.ndim == 2 else sv[()])
        observables, obs_notes = read_observables(f, g, n_frames, file_step)
        conn, conn_notes = read_connectivity(f, g, n_atoms, path, step)
    except ParseError:
        f.close()
        raise
    except (KeyError, OSError, ValueError, TypeError) as exc:
        f.close()
        raise ParseError(str(path), f"unreadable H5MD ({exc})") from exc

    def chunks(size: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        try:
            for lo in range(0, n_frames, size):
                hi = min(lo + size, n_frames)
                out = {"position": _f32(pos[lo:hi], lscale)}
                for name, (ds, s) in extra.items():
                    out[name] = _f32(ds[lo:hi], s)
                yield lo, out
        except (OSError, ValueError) as exc:
            raise ParseError(str(path), f"unreadable frame data ({exc})") from exc
        finally:
            f.close()

    src = FrameSource(path, "H5MD", n_atoms, n_frames, time, step, box, fields, units, species, chunks)
    src.extras = [*observables, *([conn] if conn is not None else [])]
    src.notes = {**obs_notes, **conn_notes}
    return src


# -- observables -----------------------------------------------------------------------------------------
def _name(rel: str, group: str, taken: set[str]) -> str:
    """Observable name from its path below ``/observables`` (the particles group's own subgroup dropped)."""
    if rel.startswith(group + "/"):
        rel = rel[len(group) + 1 :]
    name = re.sub(r"[^A-Za-z0-9_]", "_", rel)
    if not name[:1].isalpha():
        name = "obs_" + name
    base, k = name, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _on_frames(
    value: np.ndarray, steps: np.ndarray | None, frame_steps: np.ndarray | None, n_frames: int
) -> tuple[np.ndarray, int] | str:
    """Put samples on the frame axis; returns (values, frames matched) or why it cannot."""
    n_s = value.shape[0]
    if steps is not None and frame_steps is not None:
        order = np.argsort(steps, kind="stable")
        ss = steps[order]
        pos = np.searchsorted(ss, frame_steps)
        ok = (pos < n_s) & (ss[np.minimum(pos, max(n_s - 1, 0))] == frame_steps) if n_s else np.zeros(n_frames, bool)
        if not ok.any():
            return "no sample at the step of any frame"
        src = order[np.minimum(pos, max(n_s - 1, 0))]
        if ok.all():
            return value[src], n_frames
        out = np.full((n_frames, *value.shape[1:]), np.nan, dtype=np.float64)
        out[ok] = value[src[ok]]
        return out, int(ok.sum())
    if n_s == n_frames:
        return value, n_frames
    return f"{n_s} samples and no step to match them with the {n_frames} frames"


def _label_attrs(item: Any) -> dict[str, Any]:
    """What a frame-label series written by moldb's export says of itself (kind, derived_from, categories)."""
    out: dict[str, Any] = {}
    for key in ("moldb_kind", "derived_from", "categories"):
        if key in item.attrs:
            v = item.attrs[key]
            v = (
                [x.decode() if isinstance(x, bytes) else str(x) for x in np.asarray(v).ravel()]
                if key == "categories"
                else (v.decode() if isinstance(v, bytes) else str(v))
            )
            out[key] = v
    return out


def read_observables(
    f: Any, particles: Any, n_frames: int, frame_steps: np.ndarray | None
) -> tuple[list[FrameObservable], dict[str, Any]]:
    """The ``/observables`` of an open H5MD file on the frame axis.

    Returns
    -------
    observables : list of FrameObservable
    notes : dict
        ``observables_constant`` (time-independent ones: path → value, unit) and
        ``observables_skipped`` (path → reason).
    """
    import h5py

    out: list[FrameObservable] = []
    constant: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    if "observables" not in f or not isinstance(f["observables"], h5py.Group):
        return out, {}
    group = particles.name.rsplit("/", 1)[-1]
    taken: set[str] = set()

    def walk(g: Any, prefix: str) -> None:
        for key in g:
            item, rel = g[key], f"{prefix}{key}"
            if isinstance(item, h5py.Dataset):
                a = np.asarray(item[()])
                if a.dtype.kind in "biuf" and a.size <= _CONSTANT_MAX:
                    constant[rel] = {"value": a.tolist(), "unit": _unit(item) or "", "dtype": a.dtype.str}
                else:
                    skipped[rel] = f"time-independent {a.dtype} {list(a.shape)}: not stored"
                continue
            if not isinstance(item, h5py.Group):
                continue
            if "value" not in item or not isinstance(item["value"], h5py.Dataset):
                walk(item, rel + "/")
                continue
            ds = item["value"]
            if ds.ndim < 1 or ds.dtype.kind not in "biuf":
                skipped[rel] = f"value of type {ds.dtype} and shape {list(ds.shape)}: not numeric per sample"
                continue
            value = np.asarray(ds[()])
            if value.dtype.kind == "b":
                value = value.astype(np.int8)
            steps = _series(item["step"], value.shape[0]).astype(np.int64) if "step" in item else None
            got = _on_frames(value, steps, frame_steps if steps is not None else None, n_frames)
            if isinstance(got, str):
                skipped[rel] = got
                continue
            values, matched = got
            o = FrameObservable(
                name=_name(rel, group, taken),
                values=values,
                unit=_unit(ds) or "",
                path=f"observables/{rel}",
                n_samples=int(value.shape[0]),
                n_matched=matched,
            )
            o.provenance.source = "ingest:h5md/observables"
            o.attrs = _label_attrs(item)
            out.append(o)

    walk(f["observables"], "")
    notes: dict[str, Any] = {}
    if constant:
        notes["observables_constant"] = constant
    if skipped:
        notes["observables_skipped"] = skipped
    return out, notes
