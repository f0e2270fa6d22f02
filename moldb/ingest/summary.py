"""Entry-level metadata derived from a parsed entry (the ``ls`` / ``show`` fields)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.compute as pc

from moldb.schema.parsed import ParsedEntry

__all__ = ["summarize"]

_RESOLUTION = (("refine", "ls_d_res_high"), ("em_3d_reconstruction", "resolution"),
               ("reflns", "d_resolution_high"))
_WATERS = {"HOH", "WAT", "DOD", "H2O"}


def _first(entry: ParsedEntry, cat: str, item: str) -> str | None:
    c = entry.category(cat)
    if c is None or item not in c.items or c.table.num_rows == 0:
        return None
    return c.value(item, 0)


def _unique(entry: ParsedEntry, col: str) -> list[str]:
    if col not in entry.atoms.column_names:
        return []
    arr = entry.atoms.column(col).combine_chunks()
    vals = pc.unique(arr.dictionary_decode() if hasattr(arr, "dictionary_decode") else arr)
    return sorted(str(v) for v in vals.to_pylist() if v is not None)


def summarize(entry: ParsedEntry) -> dict[str, Any]:
    """Title, method, resolution, counts, chains, ligands, altlocs and TLS groups of an entry."""
    methods = []
    exptl = entry.category("exptl")
    if exptl is not None and "method" in exptl.items:
        methods = [m for m in exptl.table.column("method").to_pylist() if m]
    resolution = None
    for cat, item in _RESOLUTION:
        v = _first(entry, cat, item)
        if v is not None:
            try:
                resolution = float(v)
                break
            except ValueError:
                continue
    models = entry.atoms.column("pdbx_PDB_model_num").to_numpy() if "pdbx_PDB_model_num" in \
        entry.atoms.column_names else np.ones(1)
    ligands: list[str] = []
    if "group_PDB" in entry.atoms.column_names and "label_comp_id" in entry.atoms.column_names:
        het = pc.equal(entry.atoms.column("group_PDB").cast("string"), "HETATM")
        comps = pc.unique(pc.filter(entry.atoms.column("label_comp_id").cast("string"), het))
        ligands = sorted(c for c in comps.to_pylist() if c and c not in _WATERS)
    tls = entry.category("pdbx_refine_tls")
    entities = entry.category("entity")
    return {
        "title": _first(entry, "struct", "title") or "",
        "method": "; ".join(methods),
        "resolution": resolution,
        "n_atoms": entry.n_atoms,
        "n_models": int(np.unique(models).size),
        "chains": _unique(entry, "label_asym_id"),
        "auth_chains": _unique(entry, "auth_asym_id"),
        "entities": entities.table.num_rows if entities is not None else 0,
        "ligands": ligands,
        "altlocs": _unique(entry, "label_alt_id"),
        "residues": _unique(entry, "label_comp_id"),  # lets a query skip entries without a residue name
        "elements": _unique(entry, "type_symbol"),
        "tls_groups": tls.table.num_rows if tls is not None else 0,
        "has_aniso": "U11" in entry.atoms.column_names,
        "deposition_date": _first(entry, "pdbx_database_status", "recvd_initial_deposition_date"),
    }
