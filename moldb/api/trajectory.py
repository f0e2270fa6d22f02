"""Trajectories through the Store facade: ingest and random frame access.

``store.trajectory(entry)`` returns a :class:`Trajectory`; ``t.frame(i)`` is one TileDB query
of one frame's cells; ``t.frames(slice(0, 250, 10), select="name CA")`` evaluates the
selection on the topology (the entry's atoms, ``docs/query.md``), then reads only the
frames asked for and only the atom parts (``trace``, ``backbone`` …) the selected atoms
live in — see ``docs/trajectories.md``. Ingest lives in :mod:`moldb.api.trajectory_ingest`,
which version's trajectory a read uses in :mod:`moldb.api.trajectory_versions`, frame labels and
``frames_where`` in :mod:`moldb.api.frame_query`, H5MD / multi-model export in
:mod:`moldb.api.trajectory_h5md` / :mod:`moldb.api.trajectory_export` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.api.frame_query import FrameSelection, check_frame_labels, frame_labels_target, frames_where
from moldb.api.trajectory_export import export_h5md, write_frames
from moldb.api.trajectory_ingest import ingest_trajectory, is_trajectory
from moldb.api.trajectory_versions import TrajectoryTopologyError, resolve_trajectory
from moldb.errors import EntryNotFoundError, ValidationError
from moldb.ir.trajectory import PART_NAMES, Connectivity, FrameLabels, FrameObservable, TrajectoryDescriptor
from moldb.schema.records import VersionInfo
from moldb.storage import frames as fstore

__all__ = [
    "FrameIndexError",
    "FrameSelection",
    "Trajectory",
    "TrajectoryTopologyError",
    "check_frame_labels",
    "export_h5md",
    "frame_labels_target",
    "frames_where",
    "ingest_trajectory",
    "is_trajectory",
    "open_trajectory",
    "write_frames",
]

_BATCH = 256  # frames per TileDB query in Trajectory.frames


class FrameIndexError(ValidationError, IndexError):
    """A frame index outside the trajectory."""


def _trajectory_descriptor(
    store: Any,
    entry: str,
    version: int | str | None,
) -> tuple[VersionInfo, VersionInfo, TrajectoryDescriptor]:
    """The version asked for, the version holding its trajectory (:mod:`moldb.api.trajectory_versions`), and it."""
    from moldb.ir.store_ops import descriptor_objects

    asked, holder, cells = resolve_trajectory(store, entry, version)
    d = descriptor_objects(store._backend, holder.entry, {"trajectory": cells["trajectory"]})[0]
    if not isinstance(d, TrajectoryDescriptor):
        raise EntryNotFoundError(
            f"{holder.entry} v{holder.version}: descriptor 'trajectory' is a {d.type!r}, "
            "not a trajectory; re-ingest the trajectory"
        )
    return asked, holder, d


class Trajectory:
    """Random access to the frames of one entry version's trajectory.

    Attributes
    ----------
    entry : str
    version : int
        The version holding the trajectory (its ``record``; ``topology()`` reads it).
    for_version : int
        The version asked for: newer than ``version`` after a topology-only re-deposit
        (``docs/trajectories.md``, "Versions").
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

    def __init__(
        self, store: Any, rec: VersionInfo, desc: TrajectoryDescriptor, for_version: int | None = None
    ) -> None:
        self._store = store
        self.record = rec
        self.descriptor = desc
        self.entry = rec.entry
        self.version = rec.version
        self.for_version = rec.version if for_version is None else int(for_version)
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
        held = "" if self.for_version == self.version else f" (read for v{self.for_version})"
        return (
            f"<moldb Trajectory {self.entry} v{self.version}{held}: {self.n_frames} frames x {self.n_atoms} "
            f"atoms, fields {self.fields}>"
        )

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
            raise FrameIndexError(
                f"frame {k} is out of range for {self.entry}: it has {self.n_frames} frames (0 … {self.n_frames - 1})"
            )
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
        dec = (
            out
            if uniq.size == fr.size and np.array_equal(uniq, fr)
            else np.empty((uniq.size, idx.size, 3), dtype=np.float32)
        )
        for lo in range(0, uniq.size, _BATCH):
            cells = self._reader.read(uniq[lo : lo + _BATCH].tolist(), parts)
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

    def _descriptors(self, *types: str) -> list[Any]:
        from moldb.ir.store_ops import descriptor_objects

        _, cells = self._store._ir_cells("descriptors", self.entry, self.version, None)
        wanted = {k: c for k, c in cells.items() if c["tag"] in types}
        return descriptor_objects(self._store._backend, self.entry, wanted) if wanted else []

    def labels(self) -> dict[str, np.ndarray]:
        """Frame labels of this version: name → one value per frame."""
        return {d.name: d.values() for d in self._descriptors(FrameLabels.TYPE) if isinstance(d, FrameLabels)}

    def observables(self) -> dict[str, FrameObservable]:
        """Per-frame observables of the source (H5MD ``/observables``): name → descriptor.

        ``t.observables()["energy"].values`` has one value per frame (NaN where the file had
        no sample at that frame's step); ``.unit``, ``.path`` say what and where it was.
        """
        return {d.name: d for d in self._descriptors(FrameObservable.TYPE) if isinstance(d, FrameObservable)}

    def connectivity(self, frame: int | None = None) -> Connectivity | None:
        """The stored connectivity (H5MD ``/connectivity``: tuples of trajectory particles), or None.

        Without ``frame``: every tuple, with one row per run of a time-dependent element
        (``step_lo`` / ``step_hi``); with ``frame``: the tuples in effect at that frame (its step).
        """
        got = [d for d in self._descriptors(Connectivity.TYPE) if isinstance(d, Connectivity)]
        if not got:
            return None
        return got[0] if frame is None else got[0].at_step(int(self.step[self._index(frame)]))

    def bonds(self) -> pa.Table:
        """Bonds between trajectory particles: the entry's ``Structure.bonds()`` mapped onto the frames' atoms.

        Columns as :meth:`moldb.api.structure.Structure.bonds`, but ``atom_1`` / ``atom_2``
        index the atoms of :meth:`frame` (they equal the entry's atom rows unless the
        topology has several models).
        """
        b = self.topology().bonds()
        if self._rows is None:
            keep = (b.column("atom_1").to_numpy() < self.n_atoms) & (b.column("atom_2").to_numpy() < self.n_atoms)
            return b.filter(pa.array(keep))
        pos = np.full(
            int(max(self._rows.max(initial=-1), b.column("atom_2").to_numpy().max(initial=-1))) + 1, -1, dtype=np.int64
        )
        pos[self._rows] = np.arange(self._rows.size)
        a1, a2 = pos[b.column("atom_1").to_numpy()], pos[b.column("atom_2").to_numpy()]
        keep = (a1 >= 0) & (a2 >= 0)
        b = b.filter(pa.array(keep))
        return b.set_column(0, "atom_1", pa.array(a1[keep])).set_column(1, "atom_2", pa.array(a2[keep]))


def open_trajectory(store: Any, entry: str, version: int | str | None = None) -> Trajectory:
    """The :class:`Trajectory` of ``entry``'s latest version (or ``version``).

    A version without a trajectory of its own (a topology-only re-deposit) reads the one of
    the newest earlier version whose topology has as many atoms (:mod:`moldb.api.trajectory_versions`).

    Raises
    ------
    EntryNotFoundError
        Unknown entry / version, or no trajectory up to that version.
    TrajectoryTopologyError
        Only earlier versions with another atom count have one (both versions named).
    """
    asked, holder, d = _trajectory_descriptor(store, entry, version)
    return Trajectory(store, holder, d, for_version=asked.version)
