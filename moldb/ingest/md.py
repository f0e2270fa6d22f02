"""XTC / DCD / TRR / AMBER NetCDF through MDAnalysis (the ``md`` extra), as a :class:`FrameSource`.

Positions and box in Å, time in ps, velocities Å/ps, forces kJ/(mol·Å) (MDAnalysis's base units).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from moldb.errors import ParseError
from moldb.ingest.trajectory import FrameSource, require_mdanalysis

__all__ = ["open_md", "triclinic"]


def triclinic(dims: np.ndarray | None) -> np.ndarray:
    """(a, b, c, alpha, beta, gamma) → 3×3 edge vectors (rows), as MDAnalysis's ``triclinic_vectors``."""
    out = np.zeros((3, 3), dtype=np.float32)
    if dims is None or not np.all(np.isfinite(dims)) or np.any(np.asarray(dims[:3]) <= 0):
        return out
    a, b, c, al, be, ga = (float(v) for v in dims)
    if al == 90.0 and be == 90.0 and ga == 90.0:
        return np.diag([a, b, c]).astype(np.float32)
    al, be, ga = np.deg2rad([al, be, ga])
    bx, by = b * np.cos(ga), b * np.sin(ga)
    cx = c * np.cos(be)
    cy = c * (np.cos(al) - np.cos(be) * np.cos(ga)) / np.sin(ga)
    cz = np.sqrt(max(c * c - cx * cx - cy * cy, 0.0))
    return np.array([[a, 0, 0], [bx, by, 0], [cx, cy, cz]], dtype=np.float32)


def open_md(path: Path, fmt: str) -> FrameSource:
    """Open an XTC / DCD / TRR / NetCDF file with MDAnalysis (frames are read by ``chunks``).

    Raises
    ------
    ValidationError
        MDAnalysis is not installed (names the ``md`` extra).
    ParseError
        MDAnalysis cannot read the file.
    """
    mda = require_mdanalysis(path)
    import warnings

    from MDAnalysis.coordinates.core import get_reader_for

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = get_reader_for(str(path), format=fmt)(str(path))
        n_frames, n_atoms = int(reader.n_frames), int(reader.n_atoms)
    except (OSError, ValueError, EOFError, RuntimeError, TypeError, IndexError) as exc:
        raise ParseError(str(path), f"cannot read as {fmt} ({type(exc).__name__}: {exc})") from exc
    del mda
    time = np.zeros(n_frames, dtype=np.float64)
    step = np.arange(n_frames, dtype=np.int64)
    box = np.zeros((n_frames, 3, 3), dtype=np.float32)
    ts0 = reader.ts
    fields = ["position"] + (["velocity"] if ts0.has_velocities else []) + (["force"] if ts0.has_forces else [])
    state = {"box_seen": False}

    def chunks(size: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        try:
            buf: dict[str, list[np.ndarray]] = {k: [] for k in fields}
            first = 0
            for i, ts in enumerate(reader):
                time[i] = float(ts.time)
                step[i] = int(ts.data.get("step", i))
                if ts.dimensions is not None:
                    box[i] = triclinic(np.asarray(ts.dimensions))
                    state["box_seen"] = True
                buf["position"].append(ts.positions.copy())
                if "velocity" in buf:
                    buf["velocity"].append(ts.velocities.copy())
                if "force" in buf:
                    buf["force"].append(ts.forces.copy())
                if len(buf["position"]) == size:
                    yield first, {k: np.stack(v) for k, v in buf.items()}
                    first = i + 1
                    buf = {k: [] for k in fields}
            if buf["position"]:
                yield first, {k: np.stack(v) for k, v in buf.items()}
        except (OSError, ValueError, EOFError, RuntimeError) as exc:
            raise ParseError(str(path), f"unreadable frame ({type(exc).__name__}: {exc})") from exc
        finally:
            reader.close()

    src = FrameSource(path, fmt, n_atoms, n_frames, time, step, box, fields,
                      {"length": "Angstrom", "time": "ps", **({"velocity": "Angstrom ps-1"} if "velocity" in fields
                                                              else {}),
                       **({"force": "kJ mol-1 Angstrom-1"} if "force" in fields else {})}, None, chunks)
    src.__dict__["_box_state"] = state
    return src
