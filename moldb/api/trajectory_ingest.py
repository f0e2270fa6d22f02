"""Storing a trajectory: its topology as a new entry version, its frames as that version's trajectory.

``store.ingest("traj.xtc", topology="top.pdb.gz", entry=...)`` lands here (re-exported by
:mod:`moldb.api.trajectory`); ``docs/trajectories.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moldb.errors import ValidationError
from moldb.ir.trajectory import PART_NAMES
from moldb.schema.records import VersionInfo
from moldb.storage import frames as fstore

__all__ = ["ingest_trajectory", "is_trajectory"]

_TOPOLOGY_SUFFIXES = (".pdb.gz", ".pdb", ".cif.gz", ".cif", ".bcif", ".bcif.gz", ".mmtf", ".mmtf.gz", ".ent.gz")


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


def ingest_trajectory(
    store: Any,
    path: str | Path,
    *,
    topology: str | Path | None = None,
    entry: str | None = None,
    format: str | None = None,
    author: str = "",
    message: str = "",
) -> VersionInfo:
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
            f"{src.n_atoms} atoms> (e.g. store.ingest({p.name!r}, topology='top.pdb.gz'))"
        )
    atom_rows: np.ndarray | None = None
    if top is not None:
        parsed = read_file(top)
        n_top = parsed.n_atoms
        if n_top != src.n_atoms:
            models = (
                parsed.atoms.column("pdbx_PDB_model_num").to_numpy(zero_copy_only=False)
                if "pdbx_PDB_model_num" in parsed.atoms.column_names
                else None
            )
            first = np.flatnonzero(models == models[0]) if models is not None and len(models) else np.zeros(0, int)
            if first.size != src.n_atoms:
                raise ValidationError(
                    f"atom count mismatch: topology {top} has {n_top} atoms"
                    + (f" ({first.size} in its first model)" if first.size != n_top else "")
                    + f", trajectory {p} has {src.n_atoms} atoms per frame; pass the topology of this trajectory"
                )
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
