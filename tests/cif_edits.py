"""Edits of real mmCIF files with gemmi, to make new versions of an entry for tests.

Each helper reads ``src``, changes something a re-refinement would change, and writes
``dst`` (plain mmCIF). Values are written as text with the precision of the source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gemmi
import numpy as np


def edit(src: Path, dst: Path, fn: Callable[[gemmi.cif.Block], None]) -> Path:
    """Apply ``fn`` to the sole block of ``src`` and write ``dst``."""
    doc = gemmi.cif.read(str(src))
    fn(doc.sole_block())
    doc.write_file(str(dst))
    return dst


def atom_rows(block: gemmi.cif.Block) -> gemmi.cif.Table:
    return block.find_mmcif_category("_atom_site.")


def col(table: gemmi.cif.Table, item: str) -> int:
    return list(table.tags).index(f"{table.get_prefix()}{item}")


def shift_b(delta: float | np.ndarray) -> Callable[[gemmi.cif.Block], None]:
    """B += delta (scalar or one value per atom), written with 2 decimals."""
    def fn(block: gemmi.cif.Block) -> None:
        t = atom_rows(block)
        j = col(t, "B_iso_or_equiv")
        d = np.broadcast_to(np.asarray(delta, dtype=float), (len(t),))
        for i, row in enumerate(t):
            row[j] = f"{float(row[j]) + d[i]:.2f}"
    return fn


def set_value(tag: str, value: str) -> Callable[[gemmi.cif.Block], None]:
    """Set a single-row item such as ``_refine.ls_R_factor_R_free``."""
    def fn(block: gemmi.cif.Block) -> None:
        block.set_pair(tag, value)
    return fn


def set_row_value(category: str, key_item: str, key: str, item: str, value: str) -> Callable[[gemmi.cif.Block], None]:
    """Set ``item`` in the row of a looped category whose ``key_item`` equals ``key``."""
    def fn(block: gemmi.cif.Block) -> None:
        t = block.find_mmcif_category(f"_{category}.")
        k, j = col(t, key_item), col(t, item)
        for row in t:
            if row[k] == key:
                row[j] = value
    return fn


def add_waters(n: int, offset: tuple[float, float, float] = (3.0, 0.0, 0.0)) -> Callable[[gemmi.cif.Block], None]:
    """Append ``n`` waters copied from the last atom row (which must be a water), shifted by ``offset``."""
    def fn(block: gemmi.cif.Block) -> None:
        t = atom_rows(block)
        last = [str(v) for v in t[len(t) - 1]]
        ids = [col(t, c) for c in ("id", "auth_seq_id", "Cartn_x", "Cartn_y", "Cartn_z")]
        for k in range(1, n + 1):
            row = list(last)
            row[ids[0]] = str(int(last[ids[0]]) + k)
            row[ids[1]] = str(int(last[ids[1]]) + k)
            for c, d in zip(ids[2:], offset, strict=True):
                row[c] = f"{float(last[c]) + k * d:.3f}"
            t.append_row(row)
    return fn


def rename_atom(atom_id: str, new_name: str) -> Callable[[gemmi.cif.Block], None]:
    """Give the atom with ``_atom_site.id == atom_id`` a new label and auth atom name."""
    def fn(block: gemmi.cif.Block) -> None:
        t = atom_rows(block)
        i, la, au = col(t, "id"), col(t, "label_atom_id"), col(t, "auth_atom_id")
        for row in t:
            if row[i] == atom_id:
                row[la] = new_name
                row[au] = new_name
    return fn


def rename_residue(atom_id: str, new_name: str) -> Callable[[gemmi.cif.Block], None]:
    """Give the atom with ``_atom_site.id == atom_id`` a new label and auth residue name."""
    def fn(block: gemmi.cif.Block) -> None:
        t = atom_rows(block)
        i, lc, ac = col(t, "id"), col(t, "label_comp_id"), col(t, "auth_comp_id")
        for row in t:
            if row[i] == atom_id:
                row[lc] = new_name
                row[ac] = new_name
    return fn


def move_atoms(select: Callable[[list[str]], bool], shifts: np.ndarray) -> Callable[[gemmi.cif.Block], None]:
    """Add ``shifts[k]`` (Å, 3 decimals) to the k-th selected atom's coordinates."""
    def fn(block: gemmi.cif.Block) -> None:
        t = atom_rows(block)
        xyz = [col(t, c) for c in ("Cartn_x", "Cartn_y", "Cartn_z")]
        k = 0
        for row in t:
            if select([str(v) for v in row]):
                for j, c in enumerate(xyz):
                    row[c] = f"{float(row[c]) + shifts[k, j]:.3f}"
                k += 1
    return fn


def coords(path: Path) -> np.ndarray:
    """(n, 3) coordinates of a file's ``_atom_site`` rows, parsed by gemmi (independent of moldb)."""
    block = gemmi.cif.read(str(path)).sole_block()
    t = block.find("_atom_site.", ["Cartn_x", "Cartn_y", "Cartn_z"])
    return np.array([[float(r[0]), float(r[1]), float(r[2])] for r in t])


def column_text(path: Path, item: str) -> list[str]:
    """Raw text of one ``_atom_site`` item, per row."""
    block = gemmi.cif.read(str(path)).sole_block()
    return list(block.find_values(f"_atom_site.{item}"))
