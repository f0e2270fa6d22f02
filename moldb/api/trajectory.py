"""Trajectories through the Store facade: ingest, random frame access, labels, frame queries, H5MD export.

``store.trajectory(entry)`` returns a :class:`Trajectory`; ``t.frame(i)`` is one TileDB query
of one frame's cells; ``t.frames(slice(0, 250, 10), select="name CA")`` evaluates the
selection on the topology (the entry's atoms, ``docs/query.md``), then reads only the
frames asked for and only the atom parts (``trace``, ``backbone`` …) the selected atoms
live in — see ``docs/trajectories.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from moldb.errors import EntryNotFoundError, ValidationError
from moldb.ir.trajectory import PART_NAMES, FrameLabels, TrajectoryDescriptor
from moldb.schema.records import VersionInfo
from moldb.storage import frames as fstore

__all__ = ["FrameIndexError", "FrameSelection", "Trajectory", "check_frame_labels", "export_h5md", "frames_where",
           "ingest_trajectory", "is_trajectory"]

_TOPOLOGY_SUFFIXES = (".pdb.gz", ".pdb", ".cif.gz", ".cif", ".bcif", ".bcif.gz", ".mmtf", ".mmtf.gz", ".ent.gz")
_BATCH = 256  # frames per TileDB query in Trajectory.frames


class FrameIndexError(ValidationError, IndexError):
    """A frame index outside the trajectory."""


def is_trajectory(path: str | Path, format: str | None = None) -> bool:
    """Whether ``path`` (or ``format``) names a trajectory format (H5MD, XTC, DCD, TRR, NetCDF)."""
    from moldb.ingest.trajectory import trajectory_format

    return trajectory_format(path, format) is not None


def _sibling_topology(path: Path) -> Path | None:
    stem = path.name.split(".")[0]
    for suf in _TOPOLOGY_SUFFIXES:
        cand = path.with_name(stem + suf)
        if cand.is_file():
            return cand
    return None


def ingest_trajectory(store: Any, path: str | Path, *, topology: str | Path | None = None, entry: str | None = None,
                      format: str | None = None, author: str = "", message: str = "") -> VersionInfo:
    """Store a trajectory: its topology as a new entry version, its frames as the version's trajectory.

    Parameters
    ----------
    store : moldb.Store
    path : str or pathlib.Path
        H5MD, XTC, DCD, TRR or AMBER NetCDF file.
    topology : str or pathlib.Path, optional
        Structure file giving the atoms (PDB, mmCIF, BinaryCIF, MMTF). For H5MD, defaults to a
        file with the same stem next to it (``cobrotoxin.pdb.gz``), else the file's ``species``.
    entry : str, optional
        Entry id (default: the trajectory file's stem).

    Raises
    ------
    ValidationError
        No topology, atom counts differ (both files named), or MDAnalysis is missing (``moldb[md]``).
    ParseError
        The trajectory or topology cannot be read; nothing is written.
    """
    from moldb.ingest.formats import read_file
    from moldb.ingest.load import commit
    from moldb.ingest.trajectory import (
        atom_parts,
        encode_trajectory,
        open_trajectory,
        pending,
        reset,
        species_topology,
    )

    p = Path(path)
    src = open_trajectory(p, format)
    top = Path(topology) if topology is not None else (_sibling_topology(p) if src.format == "H5MD" else None)
    if top is None and not (src.format == "H5MD" and src.species is not None):
        raise ValidationError(
            f"{p}: a {src.format} trajectory has no atoms of its own; pass topology=<PDB/mmCIF file with "
            f"{src.n_atoms} atoms> (e.g. store.ingest({p.name!r}, topology='top.pdb.gz'))")
    atom_rows: np.ndarray | None = None
    if top is not None:
        parsed = read_file(top)
        n_top = parsed.n_atoms
        if n_top != src.n_atoms:
            models = parsed.atoms.column("pdbx_PDB_model_num").to_numpy(zero_copy_only=False) \
                if "pdbx_PDB_model_num" in parsed.atoms.column_names else None
            first = np.flatnonzero(models == models[0]) if models is not None and len(models) else np.zeros(0, int)
            if first.size != src.n_atoms:
                raise ValidationError(
                    f"atom count mismatch: topology {top} has {n_top} atoms"
                    + (f" ({first.size} in its first model)" if first.size != n_top else "")
                    + f", trajectory {p} has {src.n_atoms} atoms per frame; pass the topology of this trajectory")
            atom_rows = first.astype(np.int64)
        atoms = parsed.atoms if atom_rows is None else parsed.atoms.take(atom_rows)
        part = atom_parts(atoms)
        enc = encode_trajectory(src, part, atom_rows)
    else:
        part = np.full(src.n_atoms, PART_NAMES.index("other"), dtype=np.uint8)
        enc = encode_trajectory(src, part, None)
        first_xyz = np.zeros((src.n_atoms, 3), dtype=np.float32)
        if enc.descriptor.n_frames:
            first_xyz = fstore.decode_cell(enc.position_cells[0][PART_NAMES.index("other")], src.n_atoms)
        parsed = species_topology(src, first_xyz)
    eid = entry or p.name.split(".")[0]
    msg = message or f"ingest {p.name}" + (f" (topology {top.name})" if top is not None else "")
    token = pending(enc)
    try:
        return commit(store._backend, parsed, entry_id=eid, author=author, message=msg, mode="new")
    finally:
        reset(token)


def _trajectory_descriptor(store: Any, entry: str, version: int | str | None) -> tuple[VersionInfo, Any]:
    rec, cells = store._ir_cells("descriptors", entry, version, None)
    cell = cells.get("trajectory")
    if cell is None or cell["tag"] != TrajectoryDescriptor.TYPE:
        raise EntryNotFoundError(f"{rec.entry} v{rec.version} has no trajectory; store one with "
                                 f"store.ingest('traj.xtc', topology='top.pdb', entry={rec.entry!r})")
    from moldb.ir.store_ops import descriptor_objects

    (d,) = descriptor_objects(store._backend, rec.entry, {"trajectory": cell})
    return rec, d


class Trajectory:
    """Random access to the frames of one entry version's trajectory.

    Attributes
    ----------
    entry : str
    version : int
    n_frames, n_atoms : int
    time : numpy.ndarray, shape (n_frames,), float64
        Time of each frame (ps).
    step : numpy.ndarray, shape (n_frames,), int64
    box : numpy.ndarray, shape (n_frames, 3, 3), float32, or None
        Box edge vectors (Å).
    fields : list of str
        ``position`` and, when stored, ``velocity`` / ``force``.
    last_read : dict
        After each read: ``bytes_read`` (cells fetched), ``atoms_decoded``, ``atoms_returned``,
        ``bytes_returned`` (float32 output), ``cells``.
    """

    def __init__(self, store: Any, rec: VersionInfo, desc: TrajectoryDescriptor) -> None:
        self._store = store
        self.record = rec
        self.descriptor = desc
        self.entry = rec.entry
        self.version = rec.version
        self.n_frames = int(desc.n_frames)
        self.n_atoms = int(desc.n_atoms)
        self.time = np.asarray(desc.time, dtype=np.float64)
        self.step = np.asarray(desc.step, dtype=np.int64)
        self.box = None if desc.box is None else np.asarray(desc.box, dtype=np.float32)
        self.fields = list(desc.fields)
        self.decimals = desc.decimals
        self.units = dict(desc.units)
        self._part = np.asarray(desc.part, dtype=np.uint8)
        self._part_idx = [np.flatnonzero(self._part == p) for p in range(len(PART_NAMES))]
        self._rows = None if desc.atom_rows is None else np.asarray(desc.atom_rows, dtype=np.int64)
        self._reader = fstore.FrameReader(store._backend, int(desc.traj_id), int(desc.max_cell))
        self.last_read: dict[str, int] = {}

    def __repr__(self) -> str:
        return (f"<moldb Trajectory {self.entry} v{self.version}: {self.n_frames} frames x {self.n_atoms} atoms, "
                f"fields {self.fields}>")

    def __len__(self) -> int:
        return self.n_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        for lo in range(0, self.n_frames, _BATCH):
            yield from self.frames(slice(lo, min(lo + _BATCH, self.n_frames)))

    # -- indices --------------------------------------------------------------------------------------
    def _index(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise FrameIndexError(f"frame index {i!r} of {self.entry}: use an integer")
        k = int(i)
        if not -self.n_frames <= k < self.n_frames:
            raise FrameIndexError(f"frame {k} is out of range for {self.entry}: it has {self.n_frames} frames "
                                  f"(0 … {self.n_frames - 1})")
        return k % self.n_frames

    def frame_indices(self, frames: Any = None) -> np.ndarray:
        """Frame numbers (int64) for a slice, int, list / array of ints or boolean mask (None: all)."""
        if frames is None:
            return np.arange(self.n_frames, dtype=np.int64)
        if isinstance(frames, slice):
            return np.arange(self.n_frames, dtype=np.int64)[frames]
        if isinstance(frames, int | np.integer):
            return np.array([self._index(frames)], dtype=np.int64)
        a = np.asarray(frames)
        if a.dtype == bool:
            if a.shape != (self.n_frames,):
                raise FrameIndexError(f"frame mask of length {a.size}; {self.entry} has {self.n_frames} frames")
            return np.flatnonzero(a).astype(np.int64)
        if a.size and a.dtype.kind not in "iu":
            raise FrameIndexError(f"frames of {self.entry}: use ints, a slice or a boolean mask, not {a.dtype}")
        return np.array([self._index(int(v)) for v in a.ravel()], dtype=np.int64)

    def atom_indices(self, select: Any = None) -> np.ndarray:
        """Trajectory atom indices (int64, sorted) of a selection string, index array or boolean mask."""
        if select is None:
            return np.arange(self.n_atoms, dtype=np.int64)
        if isinstance(select, str):
            from moldb.query import parse
            from moldb.query.evaluate import EntryContext, evaluate

            rec = self.record
            ctx = EntryContext(self._store._backend, rec.entry, dict(rec.blocks), rec.n_atoms, {})
            rows = np.flatnonzero(evaluate(parse(select), ctx))
            if self._rows is None:
                return rows[rows < self.n_atoms].astype(np.int64)
            pos = np.searchsorted(self._rows, rows)
            ok = (pos < self._rows.size) & (self._rows[np.minimum(pos, self._rows.size - 1)] == rows)
            return pos[ok].astype(np.int64)
        a = np.asarray(select)
        if a.dtype == bool:
            if a.shape != (self.n_atoms,):
                raise ValidationError(f"atom mask of length {a.size}; the trajectory has {self.n_atoms} atoms")
            return np.flatnonzero(a).astype(np.int64)
        idx = np.unique(a.astype(np.int64).ravel())
        if idx.size and (idx[0] < 0 or idx[-1] >= self.n_atoms):
            raise ValidationError(f"atom index out of range 0 … {self.n_atoms - 1}")
        return idx

    # -- reads ----------------------------------------------------------------------------------------
    def frame(self, i: int, select: Any = None, field: str = "position") -> np.ndarray:
        """Coordinates of frame ``i``: float32 array (n_atoms or n_selected, 3), Å.

        ``field``: ``"position"``, ``"velocity"`` (Å/ps) or ``"force"`` (kJ/(mol·Å)).
        """
        return self.frames([self._index(i)], select=select, field=field)[0]

    def velocities(self, i: int) -> np.ndarray:
        """Velocities of frame ``i`` (n_atoms, 3) float32, Å/ps."""
        return self.frame(i, field="velocity")

    def forces(self, i: int) -> np.ndarray:
        """Forces of frame ``i`` (n_atoms, 3) float32, kJ/(mol·Å)."""
        return self.frame(i, field="force")

    def frames(self, frames: Any = None, select: Any = None, field: str = "position") -> np.ndarray:
        """Coordinates of several frames: float32 array (n_frames_selected, n_atoms_selected, 3).

        Only the requested frames are read, and of each only the atom parts holding selected
        atoms (``last_read`` reports bytes read and atoms decoded vs returned).
        """
        if field not in self.fields:
            raise ValidationError(f"{self.entry}: the trajectory has no {field!r} data (it has {self.fields})")
        fr = self.frame_indices(frames)
        idx = self.atom_indices(select)
        out = np.empty((fr.size, idx.size, 3), dtype=np.float32)
        plan: list[tuple[int, int, np.ndarray | None, np.ndarray]]
        stats = {"bytes_read": 0, "atoms_decoded": 0, "atoms_returned": int(fr.size * idx.size), "cells": 0}
        if field == "position":
            whole = idx.size == self.n_atoms
            plan = []
            for p, pidx in enumerate(self._part_idx):
                if not pidx.size:
                    continue
                if whole:
                    plan.append((p, pidx.size, None, pidx))
                    continue
                mask = self._part[idx] == p
                if mask.any():
                    plan.append((p, pidx.size, np.searchsorted(pidx, idx[mask]), np.flatnonzero(mask)))
        else:
            pid = fstore.VELOCITY_PART if field == "velocity" else fstore.FORCE_PART
            plan = [(pid, self.n_atoms, idx if idx.size != self.n_atoms else None, np.arange(idx.size))]
        parts = sorted(p for p, *_ in plan)
        by_part = {p: (n, src, dst) for p, n, src, dst in plan}
        uniq, inv = np.unique(fr, return_inverse=True)
        dec = out if uniq.size == fr.size and np.array_equal(uniq, fr) else np.empty((uniq.size, idx.size, 3),
                                                                                       dtype=np.float32)
        for lo in range(0, uniq.size, _BATCH):
            cells = self._reader.read(uniq[lo:lo + _BATCH].tolist(), parts)
            stats["bytes_read"] += self._reader.last_bytes
            for k, row in enumerate(cells):
                for j, p in enumerate(parts):
                    n, src, dst = by_part[p]
                    xyz = fstore.decode_cell(row[j], n)
                    stats["atoms_decoded"] += n
                    stats["cells"] += 1
                    dec[lo + k, dst] = xyz if src is None else xyz[src]
        if dec is not out:
            out[:] = dec[inv]
        stats["bytes_returned"] = int(out.nbytes)
        self.last_read = stats
        return out

    def topology(self) -> Any:
        """The entry version's :class:`~moldb.api.structure.Structure` (the atoms of the frames)."""
        return self._store.get(self.entry, version=self.version)

    def labels(self) -> dict[str, np.ndarray]:
        """Frame labels of this version: name → one value per frame."""
        return {d.name: d.values() for d in self._store.descriptors(self.entry, version=self.version)
                if isinstance(d, FrameLabels)}


def open_trajectory(store: Any, entry: str, version: int | str | None = None) -> Trajectory:
    """The :class:`Trajectory` of ``entry`` (latest version with one unless ``version``)."""
    rec, d = _trajectory_descriptor(store, entry, version)
    return Trajectory(store, rec, d)


# -- frame labels ----------------------------------------------------------------------------------------
def check_frame_labels(store: Any, entry: str, d: FrameLabels) -> FrameLabels:
    """Validate frame labels against the entry's trajectory; add the ``derived_from`` edge to it."""
    from moldb.ir.model import Edge

    if not d.name:
        raise ValidationError("FrameLabels needs a name, e.g. moldb.FrameLabels('cluster', labels)")
    if d.labels is None:
        raise ValidationError(f"FrameLabels {d.name!r}: no labels given")
    t = open_trajectory(store, entry)
    n = int(np.asarray(d.labels).shape[0])
    if n != t.n_frames:
        raise ValidationError(f"FrameLabels {d.name!r}: {n} labels for the {t.n_frames} frames of {t.entry}; "
                              "give one label per frame")
    d = d.model_copy(deep=True)
    if not any(e.kind == "derived_from" and e.parent == "trajectory" for e in d.edges):
        d.edges.append(Edge(kind="derived_from", parent="trajectory", function=d.derived_from, materialized=True))
    return d


def _label_mask(node: Any, cols: dict[str, np.ndarray], n: int) -> np.ndarray:
    from moldb.query.nodes import All, And, Cmp, IsIn, Not, Or, Range

    ops = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
           ">=": np.greater_equal}
    if isinstance(node, All):
        return np.ones(n, dtype=bool)
    if isinstance(node, Cmp):
        v = cols[node.column]
        val: Any = node.value
        if v.dtype == object:
            val = str(val)
        return np.asarray(ops[node.op](v, val), dtype=bool)
    if isinstance(node, IsIn):
        v = cols[node.column]
        return np.isin(v, [str(x) if v.dtype == object else x for x in node.values])
    if isinstance(node, Range):
        v = cols[node.column]
        return np.asarray((v >= node.lo) & (v <= node.hi), dtype=bool)
    if isinstance(node, And):
        m = np.ones(n, dtype=bool)
        for it in node.items:
            m &= _label_mask(it, cols, n)
        return m
    if isinstance(node, Or):
        m = np.zeros(n, dtype=bool)
        for it in node.items:
            m |= _label_mask(it, cols, n)
        return m
    if isinstance(node, Not):
        return ~_label_mask(node.item, cols, n)
    raise ValidationError(f"frame label expressions support comparisons, and/or/not; not {type(node).__name__}")


def frames_where(store: Any, expr: str, entry: str | None = None) -> np.ndarray:
    """Frame indices (int64, sorted) where the frame-label expression holds (``"cluster == 3"``).

    Without ``entry``, the one entry whose trajectory has every label named in ``expr``.
    """
    from moldb.query import parse

    entries = [entry] if entry is not None else [str(e) for e in store.entries().column("entry").to_pylist()]
    found: list[tuple[str, dict[str, np.ndarray]]] = []
    for e in entries:
        try:
            rec, cells = store._ir_cells("descriptors", e, None, None)
        except EntryNotFoundError:
            if entry is not None:
                raise
            continue
        if not any(c["tag"] == FrameLabels.TYPE for c in cells.values()):
            continue
        labels = {d.name: d.values() for d in store.descriptors(rec.entry, version=rec.version)
                  if isinstance(d, FrameLabels)}
        found.append((rec.entry, labels))
    kinds = {}
    for _, labels in found:
        for k, v in labels.items():
            kinds[k] = "str" if v.dtype == object else "float" if v.dtype.kind == "f" else "int"
    node = parse(expr, columns=kinds, keywords={})
    from moldb.query.nodes import columns

    needed = columns(node)
    hits = [(e, lab) for e, lab in found if needed <= set(lab)]
    if not hits:
        raise ValidationError(f"no trajectory has frame labels {sorted(needed)}"
                              + (f" in {entry}" if entry else "") + "; add them with store.add_descriptor("
                              "entry, moldb.FrameLabels(name, labels))")
    if len(hits) > 1:
        raise ValidationError(f"frame labels {sorted(needed)} exist in several entries "
                              f"({', '.join(e for e, _ in hits)}); pass entry=...")
    _, labels = hits[0]
    n = len(next(iter(labels.values())))
    return np.flatnonzero(_label_mask(node, labels, n)).astype(np.int64)


class FrameSelection:
    """Atoms of a :class:`~moldb.query.Selection` over chosen frames of each entry's trajectory.

    ``rows()`` as for a selection; ``to_numpy()`` → entry → (n_frames, n_atoms, 3) float32.
    """

    def __init__(self, store: Any, selection: Any, frames: Any) -> None:
        self.store = store
        self.selection = selection
        self.frames = frames

    def __repr__(self) -> str:
        return f"<moldb FrameSelection {self.selection!r} frames={self.frames!r}>"

    def rows(self) -> dict[str, np.ndarray]:
        """Entry → selected atom rows."""
        return dict(self.selection.rows())

    def entries(self) -> list[str]:
        """Entries with selected atoms."""
        return list(self.selection.entries())

    def frame_indices(self) -> dict[str, np.ndarray]:
        """Entry → frame indices."""
        return {e: open_trajectory(self.store, e).frame_indices(self.frames) for e in self.entries()}

    def to_numpy(self, what: str = "xyz") -> dict[str, np.ndarray]:
        """Entry → coordinates of the selected atoms over the selected frames, (k, m, 3) float32."""
        if what != "xyz":
            raise ValidationError(f"FrameSelection.to_numpy({what!r}): only 'xyz'")
        out = {}
        for e, rows in self.rows().items():
            t = open_trajectory(self.store, e)
            if t._rows is None:
                idx = rows[rows < t.n_atoms]
            else:
                pos = np.searchsorted(t._rows, rows)
                idx = pos[(pos < t._rows.size) & (t._rows[np.minimum(pos, t._rows.size - 1)] == rows)]
            out[e] = t.frames(self.frames, select=idx)
        return out


# -- export ----------------------------------------------------------------------------------------------
def export_h5md(store: Any, entry: str, path: str | Path, version: int | str | None = None,
                author: str = "moldb") -> Path:
    """Write the trajectory of ``entry`` as H5MD 1.1 (``particles/trajectory``, Å, ps) at ``path``."""
    from moldb.export.h5md import write_h5md

    t = open_trajectory(store, entry, version)
    s = t.topology()
    atoms = s.atoms
    if t._rows is not None:
        atoms = atoms.take(t._rows)
    names = [str(v) for v in atoms.column("label_atom_id").to_pylist()] if "label_atom_id" in atoms.column_names \
        else None
    elements = [str(v or "X") for v in atoms.column("type_symbol").to_pylist()] \
        if "type_symbol" in atoms.column_names else None
    def reader(field: str) -> Callable[[int, int], np.ndarray]:
        return lambda lo, hi: t.frames(slice(lo, hi), field=field)

    extra = {f: reader(f) for f in t.fields if f != "position"}
    return write_h5md(Path(path), n_atoms=t.n_atoms, n_frames=t.n_frames,
                      positions=lambda lo, hi: t.frames(slice(lo, hi)), time=t.time, step=t.step, box=t.box,
                      extra=extra, units=t.units, names=names, elements=elements, author=author,
                      title=f"{t.entry} v{t.version}")
