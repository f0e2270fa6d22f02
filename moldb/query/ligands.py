"""The ligand table of the grid index: find a pocket's ligand without reading the entry's identifiers.

The grid index of an ``xyz`` block (:mod:`moldb.query.spatial`) keeps the rows and
coordinates of the non-water HETATM atoms. It also keeps a few of their identifier
columns (:data:`HET_COLUMNS`), the number of atoms each of their components has in the
whole entry, and the id of the ``topo`` block it was built from. ``within R of <selection>``
then evaluates the selection on that small table when

* the version's ``topo`` block is the one the index was built from (identifiers unchanged),
* the selection reads only those columns, and
* it can only match ligand atoms: every branch requires a residue name whose atoms are all
  HETATM (``resname ZN``, ``resname GTP and chain A``) — checked with the per-component counts.

Otherwise the executor reads the ``topo`` block as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from moldb.query.nodes import And, Cmp, Entry, IsIn, Node, Or, Range, columns
from moldb.storage.blob import BlobWriter
from moldb.storage.codec import dict_codes, null_mask

__all__ = ["HET_COLUMNS", "LigandTable", "add_ligand_table", "ligand_atoms"]

HET_COLUMNS = ("label_comp_id", "auth_comp_id", "label_asym_id", "auth_asym_id", "label_seq_id", "auth_seq_id",
               "label_atom_id", "auth_atom_id", "type_symbol", "pdbx_PDB_model_num", "label_alt_id",
               "pdbx_PDB_ins_code", "label_entity_id")


def add_ligand_table(w: BlobWriter, table: pa.Table, het_rows: np.ndarray, topo_block: int | None
                     ) -> dict[str, Any]:
    """Add the identifier columns of the ligand rows to an index blob; return the header meta to merge."""
    take = pa.array(het_rows)
    for name in HET_COLUMNS:
        if name not in table.column_names:
            continue
        col = table.column(name).take(take)
        mask = null_mask(col, None)
        if pa.types.is_integer(col.type):
            w.add_ints(f"lig:{name}", "int", col.fill_null(0).to_numpy(zero_copy_only=False))
        else:
            codes, dictionary = dict_codes(col)
            w.add_strings(f"lig:{name}", codes, dictionary)
        if mask is not None:
            w.add_mask(f"lig:{name}", mask)
    totals: dict[str, int] = {}
    if "label_comp_id" in table.column_names and het_rows.size:
        comps = table.column("label_comp_id").take(take).cast(pa.string()).unique().to_pylist()
        counts = table.column("label_comp_id").cast(pa.string()).value_counts()
        every = {str(v["values"]): int(v["counts"]) for v in counts.to_pylist()}
        totals = {str(c): every[str(c)] for c in comps if c is not None}
    return {"lig_totals": totals, "lig_topo": topo_block}


class LigandTable:
    """The ligand rows of an index header as an evaluation context (:func:`moldb.query.evaluate.evaluate`)."""

    def __init__(self, entry: str, header: dict[str, Any]) -> None:
        self.entry = entry
        self.n = int(header["het_rows"].size)
        self.total = self.n
        self.rows: np.ndarray | None = None
        self._values: dict[str, Any] = header["lig_values"]
        self._masks: dict[str, np.ndarray] = header["lig_masks"]

    def column(self, name: str) -> tuple[Any, np.ndarray | None]:
        """``(values, null mask)`` of a ligand column; strings as ``(codes, dictionary)``."""
        m = self._masks.get(name)
        return self._values[name], None if m is None else m != 0

    def has_xyz(self) -> bool:
        return False

    def local(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return rows, np.zeros(rows.size, dtype=bool)


def _ligand_only(node: Node, totals: dict[str, int], het_counts: dict[str, int]) -> bool:
    """Whether ``node`` can only match ligand atoms: each branch needs an all-HETATM residue name."""
    if isinstance(node, Or):
        return all(_ligand_only(i, totals, het_counts) for i in node.items)
    if isinstance(node, And):
        return any(_ligand_only(i, totals, het_counts) for i in node.items)
    if isinstance(node, (Cmp, IsIn)) and node.column == "label_comp_id":
        if isinstance(node, Cmp) and node.op != "==":
            return False
        vals = node.values if isinstance(node, IsIn) else (node.value,)
        return all(str(v) in totals and totals[str(v)] == het_counts.get(str(v), -1) for v in vals)
    return False


def _leaves_ok(node: Node) -> bool:
    if isinstance(node, (And, Or)):
        return all(_leaves_ok(i) for i in node.items)
    return isinstance(node, (Cmp, IsIn, Range, Entry))


def ligand_atoms(node: Node, entry: str, topo_block: int, header: dict[str, Any]
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows and coordinates of the atoms ``node`` selects, from the ligand table; None when it cannot say."""
    if header.get("lig_topo") != topo_block or "label_comp_id" not in header.get("lig_values", {}) \
            or not _leaves_ok(node):
        return None
    if not columns(node) <= set(header["lig_values"]):
        return None
    from moldb.query.evaluate import evaluate

    lig = LigandTable(entry, header)
    codes, dictionary = lig.column("label_comp_id")[0]
    het_counts = {str(dictionary[c]): int(k) for c, k in zip(*np.unique(codes, return_counts=True), strict=True)}
    if not _ligand_only(node, header.get("lig_totals", {}), het_counts):
        return None
    mask = evaluate(node, lig)  # type: ignore[arg-type]
    return header["het_rows"][mask], header["het_xyz"][mask]
