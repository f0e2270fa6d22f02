"""Trajectory ingest: H5MD (:mod:`moldb.ingest.h5md`), XTC / DCD / TRR / NetCDF (MDAnalysis: :mod:`moldb.ingest.md`).

The topology becomes a normal entry version (its atoms, through :func:`moldb.ingest.load.commit`);
the frames become a :class:`~moldb.ir.trajectory.TrajectoryDescriptor` plus cells of the
``frames`` array (:mod:`moldb.storage.frames`). Every frame is read and encoded *before*
the writer lock is taken, so a corrupt or truncated file raises :class:`ParseError` with
nothing written; the frame cells and the descriptor are then written by the ingest hook
``moldb.trajectory`` inside the version's commit, before its commit point.

Units on the way in (MDAnalysis's base units): positions and box Å, time ps, velocities
Å/ps, forces kJ/(mol·Å).
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ParseError, UnsupportedFormatError, ValidationError
from moldb.ingest.hooks import register_ingest_hook
from moldb.ir.model import Descriptor, Edge
from moldb.ir.trajectory import PART_NAMES, TrajectoryDescriptor
from moldb.schema.parsed import ParsedEntry, SourceInfo
from moldb.storage import frames as fstore
from moldb.storage import ir_store
from moldb.storage.backend import Backend

__all__ = ["MD_FORMATS", "EncodedTrajectory", "FrameSource", "atom_parts", "encode_trajectory", "open_trajectory",
           "require_mdanalysis", "trajectory_format"]

#: suffix → MDAnalysis format name
MD_FORMATS = {".xtc": "XTC", ".dcd": "DCD", ".trr": "TRR", ".nc": "NCDF", ".ncdf": "NCDF", ".netcdf": "NCDF"}
_NAMED = {"xtc": "XTC", "dcd": "DCD", "trr": "TRR", "netcdf": "NCDF", "ncdf": "NCDF", "nc": "NCDF", "h5md": "H5MD"}
_LENGTH = {"nm": 10.0, "Angstrom": 1.0, "angstrom": 1.0, "A": 1.0, "pm": 0.01, "fm": 1e-5}
_TIME = {"ps": 1.0, "fs": 1e-3, "ns": 1e3, "s": 1e12, "second": 1e12, "sec": 1e12, "AKMA": 4.888821e-2}
_VELOCITY = {"nm ps-1": 10.0, "Angstrom ps-1": 1.0, "A ps-1": 1.0, "Angstrom fs-1": 1e3, "A fs-1": 1e3,
             "nm ns-1": 1e-2, "pm ps-1": 1e-2, "m s-1": 1e-2}
_EV = 96.48533212331  # kJ/mol per eV
_FORCE = {"kJ mol-1 nm-1": 0.1, "kJ mol-1 Angstrom-1": 1.0, "kJ mol-1 A-1": 1.0, "kcal mol-1 Angstrom-1": 4.184,
          "kcal mol-1 A-1": 4.184, "eV/Angstrom": _EV, "eV Angstrom-1": _EV, "eV/A": _EV, "eV A-1": _EV}
_WATER = {"HOH", "WAT", "SOL", "TIP3", "TIP4", "TIP5", "T3P", "T4P", "SPC", "H2O", "DOD", "TIP"}
_BACKBONE = {"N", "C", "O", "OXT", "O5'", "C5'", "C4'", "C3'", "O3'", "OP1", "OP2", "O1P", "O2P"}
CHUNK_FRAMES = 256  # frames encoded and written per fragment


def trajectory_format(path: str | Path, format: str | None = None) -> str | None:
    """``"H5MD"`` or an MDAnalysis format name for a trajectory file, None for other files."""
    if format is not None:
        return _NAMED.get(format.lower())
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".h5md":
        return "H5MD"
    return MD_FORMATS.get(suffix)


def require_mdanalysis(path: str | Path) -> Any:
    """Import MDAnalysis or raise a :class:`ValidationError` naming the ``md`` extra."""
    try:
        import MDAnalysis
    except ImportError as exc:
        raise ValidationError(
            f"{path}: reading XTC/DCD/TRR/NetCDF trajectories needs MDAnalysis, which is not installed; "
            "install the extra with `pip install 'moldb[md]'`") from exc
    return MDAnalysis


def _require_h5py(path: str | Path) -> Any:
    try:
        import h5py
    except ImportError as exc:
        raise ValidationError(f"{path}: reading or writing H5MD needs h5py; install the extra with "
                              "`pip install 'moldb[md]'`") from exc
    return h5py


@dataclass
class FrameSource:
    """An open trajectory file: counts, per-frame arrays and a frame iterator.

    Attributes
    ----------
    path : pathlib.Path
    format : str
        ``"H5MD"`` or the MDAnalysis format name.
    n_atoms, n_frames : int
    time : numpy.ndarray, shape (n_frames,), float64 (ps)
    step : numpy.ndarray, shape (n_frames,), int64
    box : numpy.ndarray, shape (n_frames, 3, 3), float32 (Å), or None
    fields : list of str
        ``position`` plus ``velocity`` / ``force`` when present.
    units : dict[str, str]
        Units of the stored values.
    species : numpy.ndarray or None
        H5MD ``species`` of the first frame (used when there is no topology file).
    extras : list of moldb.ir.Descriptor
        Descriptors read with the frames and stored with them (H5MD observables, connectivity).
    notes : dict
        What the reader recorded but did not store as frames (skipped or constant observables,
        connectivity elements it left out); kept in the trajectory descriptor's ``source``.
    """

    path: Path
    format: str
    n_atoms: int
    n_frames: int
    time: np.ndarray
    step: np.ndarray
    box: np.ndarray | None
    fields: list[str]
    units: dict[str, str]
    species: np.ndarray | None = None
    _iter: Any = field(default=None, repr=False)
    extras: list[Any] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def chunks(self, size: int = CHUNK_FRAMES) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(first frame, {field: (k, n_atoms, 3) float32})`` chunks in frame order."""
        it: Iterator[tuple[int, dict[str, np.ndarray]]] = self._iter(size)
        return it


def _f32(a: Any, scale: float) -> np.ndarray:
    x = np.asarray(a)
    if scale != 1.0:
        return (x.astype(np.float64) * scale).astype(np.float32)
    return x.astype(np.float32, copy=False)


def open_trajectory(path: str | Path, format: str | None = None) -> FrameSource:
    """Open a trajectory file (H5MD with h5py, other formats with MDAnalysis).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    UnsupportedFormatError
        Not a trajectory format moldb reads.
    ParseError
        The file cannot be read.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such trajectory file")
    fmt = trajectory_format(p, format)
    if fmt is None:
        raise UnsupportedFormatError(str(p), "not a trajectory format moldb reads (H5MD, XTC, DCD, TRR, NetCDF)")
    if fmt == "H5MD":
        from moldb.ingest.h5md import open_h5md

        return open_h5md(p)
    from moldb.ingest.md import open_md

    return open_md(p, fmt)


def atom_parts(atoms: pa.Table) -> np.ndarray:
    """Part index (into :data:`~moldb.ir.trajectory.PART_NAMES`) of each atom row, uint8.

    ``trace``: CA carbons / P of polymer residues; ``backbone``: N, C, O, OXT and the nucleic
    sugar-phosphate backbone; ``water``: water residues; ``other``: HETATM (ligands, ions);
    ``sidechain``: every other atom.
    """
    n = atoms.num_rows

    def col(name: str) -> np.ndarray:
        if name not in atoms.column_names:
            return np.full(n, "", dtype=object)
        return np.asarray(atoms.column(name).cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False),
                          dtype=object)

    name, comp, grp, elem = col("label_atom_id"), col("label_comp_id"), col("group_PDB"), col("type_symbol")
    part = np.full(n, PART_NAMES.index("sidechain"), dtype=np.uint8)
    het = grp == "HETATM"
    part[het] = PART_NAMES.index("other")
    part[np.isin(name, list(_BACKBONE)) & ~het] = PART_NAMES.index("backbone")
    trace = ((name == "CA") & (np.char.upper(elem.astype(str)) == "C")) | ((name == "P") & ~het)
    part[trace & ~het] = PART_NAMES.index("trace")
    part[np.isin(comp, list(_WATER))] = PART_NAMES.index("water")
    return part


def detect_decimals(x: np.ndarray) -> int | None:
    """Smallest decimals (0-5) at which float32 ``x`` sits on a decimal grid, else None (keep float32)."""
    if not x.size:
        return None
    xmax = float(np.abs(x).max())
    ulp = float(np.spacing(np.float32(max(xmax, 1.0))))
    xd = x.astype(np.float64)
    for dec in range(6):
        if 10.0 ** -dec < 8 * ulp:
            break
        back = (np.rint(xd * 10.0 ** dec) / 10.0 ** dec).astype(np.float32)
        if float(np.abs(back - x).max()) <= 2 * ulp:
            return dec
    return None


@dataclass
class EncodedTrajectory:
    """A trajectory encoded into ``frames`` cells, ready for the commit hook."""

    descriptor: TrajectoryDescriptor
    position_cells: list[list[bytes]]
    extra_cells: dict[int, list[list[bytes]]]
    extras: list[Descriptor] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        """Bytes of all cells."""
        return sum(len(c) for rows in [self.position_cells, *self.extra_cells.values()] for r in rows for c in r)


def encode_trajectory(src: FrameSource, part: np.ndarray, atom_rows: np.ndarray | None) -> EncodedTrajectory:
    """Read every frame of ``src`` and encode it into cells (one per atom part, plus velocity / force).

    Raises
    ------
    ParseError
        A frame cannot be read or holds non-finite coordinates.
    """
    idx = [np.flatnonzero(part == p) for p in range(len(PART_NAMES))]
    traj = fstore.new_traj_id()
    tag = fstore.cell_tag
    decimals: int | None = -1  # undecided
    pos_cells: list[list[bytes]] = []
    extra: dict[int, list[list[bytes]]] = {}
    seen = 0
    for first, chunk in src.chunks():
        xyz = chunk["position"]
        if xyz.shape[1:] != (src.n_atoms, 3):
            raise ParseError(str(src.path), f"frame {first} has shape {xyz.shape[1:]}, expected ({src.n_atoms}, 3)")
        if not np.all(np.isfinite(xyz)):
            bad = first + int(np.flatnonzero(~np.all(np.isfinite(xyz), axis=(1, 2)))[0])
            raise ParseError(str(src.path), f"frame {bad} has non-finite coordinates")
        if decimals == -1:
            decimals = detect_decimals(xyz[: min(3, len(xyz))])
        for k in range(len(xyz)):
            pos_cells.append([fstore.encode_cell(xyz[k][ix], decimals, tag(traj, first + k, p))
                              for p, ix in enumerate(idx)])
        for name, pid in (("velocity", fstore.VELOCITY_PART), ("force", fstore.FORCE_PART)):
            if name in chunk:
                extra.setdefault(pid, []).extend([fstore.encode_cell(v, None, tag(traj, first + k, pid))]
                                                 for k, v in enumerate(chunk[name]))
        seen += len(xyz)
    if seen != src.n_frames:
        raise ParseError(str(src.path), f"read {seen} frames, the file declares {src.n_frames}")
    box = src.box
    state = src.__dict__.get("_box_state")
    if box is not None and state is not None and not state["box_seen"]:
        box = None
    digest = hashlib.sha256()
    with open(src.path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    d = TrajectoryDescriptor(
        id="trajectory", traj_id=traj, n_frames=src.n_frames, n_atoms=src.n_atoms,
        decimals=None if decimals == -1 else decimals, fields=list(src.fields),
        max_cell=max([fstore.cell_sizes(pos_cells), *(fstore.cell_sizes(c) for c in extra.values())]),
        units=dict(src.units),
        source={"path": str(src.path), "format": src.format, "sha256": digest.hexdigest(),
                "size": src.path.stat().st_size, **src.notes},
        time=src.time.astype(np.float64), step=src.step.astype(np.int64), box=box, part=part.astype(np.uint8),
        atom_rows=atom_rows)
    d.provenance.source = f"ingest:{src.format.lower()}"
    extras = []
    for x in src.extras:  # observables / connectivity: derived from the trajectory
        x = x.model_copy(deep=True)
        x.edges.append(Edge(kind="derived_from", parent=d.id, function=f"ingest:{src.format.lower()}"))
        extras.append(x)
    return EncodedTrajectory(d, pos_cells, extra, extras)


# -- the commit hook -------------------------------------------------------------------------------------
_PENDING: contextvars.ContextVar[EncodedTrajectory | None] = contextvars.ContextVar("moldb_trajectory",
                                                                                     default=None)


def pending(enc: EncodedTrajectory | None) -> contextvars.Token[EncodedTrajectory | None]:
    """Mark ``enc`` as the trajectory the next commit in this context writes (returns the reset token)."""
    return _PENDING.set(enc)


def reset(token: contextvars.Token[EncodedTrajectory | None]) -> None:
    """Undo :func:`pending`."""
    _PENDING.reset(token)


def trajectory_hook(backend: Backend, ts: int, entry: str, parsed: Any, blocks: dict[str, int],
                    new_groups: list[str]) -> None:
    """Write the pending trajectory's frame cells and descriptor inside the version's commit."""
    enc = _PENDING.get()
    if enc is None:
        return
    if not ir_store.has_ir(backend):
        raise ValidationError(f"{backend.uri}: this store predates descriptors; run `moldb migrate {backend.uri}` "
                              "before storing trajectories")
    fstore.ensure_frames_array(backend)
    d = enc.descriptor
    n_parts = len(PART_NAMES)
    for lo in range(0, d.n_frames, CHUNK_FRAMES):
        fstore.write_frames(backend, ts, d.traj_id, range(n_parts), enc.position_cells[lo:lo + CHUNK_FRAMES], lo)
    for pid, cells in enc.extra_cells.items():
        for lo in range(0, d.n_frames, CHUNK_FRAMES):
            fstore.write_frames(backend, ts, d.traj_id, [pid], cells[lo:lo + CHUNK_FRAMES], lo)
    index = backend.read_versions(entry, attrs=["ts"])
    version = int(np.max(index["version"])) + 1 if len(index["version"]) else 1
    ir_cells = []
    for x in [d, *enc.extras]:
        spec = x.spec()
        ir_cells.append((x.id, str(spec["type"]), spec, ir_store.pack_arrays(x.arrays())))
    ir_store.write_ir_cells(backend, "descriptors", ts, entry, version, ir_cells)


register_ingest_hook("moldb.trajectory", trajectory_hook)


def species_topology(src: FrameSource, first_xyz: np.ndarray) -> ParsedEntry:
    """A minimal topology (one atom per particle, element from H5MD ``species``) when there is no file."""
    import gemmi

    n = src.n_atoms
    sp = src.species if src.species is not None else np.zeros(n)
    elems = []
    for v in np.asarray(sp).ravel()[:n]:
        z = round(float(v)) if np.isfinite(v) else 0
        elems.append(gemmi.Element(z).name if 1 <= z <= 118 else "X")
    dict_t = pa.dictionary(pa.int32(), pa.string())

    def s(vals: list[str]) -> pa.Array:
        return pa.array(vals, pa.string()).dictionary_encode().cast(dict_t)

    xyz = first_xyz.astype(np.float64)
    atoms = pa.table({
        "group_PDB": s(["HETATM"] * n), "id": pa.array(np.arange(1, n + 1), pa.int64()),
        "type_symbol": s(elems), "label_atom_id": s(elems), "label_comp_id": s(elems),
        "label_asym_id": s(["A"] * n), "label_entity_id": s(["1"] * n),
        "Cartn_x": pa.array(np.round(xyz[:, 0], 3)), "Cartn_y": pa.array(np.round(xyz[:, 1], 3)),
        "Cartn_z": pa.array(np.round(xyz[:, 2], 3)),
        "occupancy": pa.array(np.ones(n)), "B_iso_or_equiv": pa.array(np.zeros(n)),
        "auth_seq_id": pa.array(np.arange(1, n + 1), pa.int64()), "auth_asym_id": s(["A"] * n),
        "pdbx_PDB_model_num": pa.array(np.ones(n, dtype=np.int64), pa.int64()),
    })
    digest = hashlib.sha256(src.path.read_bytes()).hexdigest()
    return ParsedEntry(entry_id=src.path.name.split(".")[0], atoms=atoms, atom_masks={}, atom_items=atoms.column_names,
                       decimals={"Cartn_x": 3, "Cartn_y": 3, "Cartn_z": 3, "occupancy": 2, "B_iso_or_equiv": 2},
                       categories=[], source=SourceInfo(str(src.path), "h5md", digest, src.path.stat().st_size))
