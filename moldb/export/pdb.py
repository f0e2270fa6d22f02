"""PDB-format export and conversion to gemmi / biotite structure objects.

:func:`to_gemmi` goes through the mmCIF document of :mod:`moldb.export.cif`, so
gemmi sees exactly what an mmCIF export would contain. :func:`to_biotite` runs
biotite's own ``pdbx.get_structure`` on an in-memory BinaryCIF block built from
the entry, so the result matches biotite reading the exported file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moldb.export._io import write_output
from moldb.export.bcif import to_bcif_block
from moldb.export.cif import flat, to_cif_document
from moldb.schema.parsed import ParsedEntry

__all__ = ["to_biotite", "to_gemmi", "write_pdb"]

_PDB_CHAIN_WIDTH = 2  # gemmi writes chain ids of up to two characters in PDB format


def to_gemmi(entry: ParsedEntry) -> Any:
    """Build a :class:`gemmi.Structure` from ``entry``.

    Parameters
    ----------
    entry : ParsedEntry

    Returns
    -------
    gemmi.Structure
        All models; entities come from the entry's ``entity`` categories, or are
        set up by gemmi when the entry has none.
    """
    import gemmi

    st = gemmi.make_structure_from_block(to_cif_document(entry).sole_block())
    if len(st.entities) == 0:
        st.setup_entities()
    return st


def write_pdb(entry: ParsedEntry, path: str | Path) -> Path:
    """Write ``entry`` in PDB format through gemmi (gzip when ``path`` ends with ``.gz``).

    Chain ids longer than two characters are shortened by gemmi
    (``Structure.shorten_chain_names``), as the PDB format cannot hold them.

    Parameters
    ----------
    entry : ParsedEntry
    path : str or pathlib.Path

    Returns
    -------
    pathlib.Path
        The path written.
    """
    st = to_gemmi(entry)
    if any(len(ch.name) > _PDB_CHAIN_WIDTH for model in st for ch in model):
        st.shorten_chain_names()
    return write_output(path, st.make_pdb_string())


def _model_sizes(entry: ParsedEntry) -> np.ndarray:
    """Atom count of each model, in file order."""
    if "pdbx_PDB_model_num" not in entry.atoms.column_names:
        return np.array([entry.n_atoms])
    nums = flat(entry.atoms.column("pdbx_PDB_model_num")).fill_null(0).to_numpy()
    _, first, counts = np.unique(nums, return_index=True, return_counts=True)
    return counts[np.argsort(first)]


def to_biotite(
    entry: ParsedEntry,
    model: int | None = None,
    altloc: str = "first",
    use_author_fields: bool = True,
) -> Any:
    """Convert ``entry`` into a biotite ``AtomArray`` or ``AtomArrayStack``.

    Parameters
    ----------
    entry : ParsedEntry
    model : int, optional
        1-based position of the model in the file (biotite's convention; negative
        counts from the last). ``None`` returns every model as a stack.
    altloc : {"first", "occupancy", "all"}
        Alternate-location handling, as in :func:`biotite.structure.io.pdbx.get_structure`.
    use_author_fields : bool
        Use ``auth_*`` (``True``) or ``label_*`` items for chain, residue and atom ids.

    Returns
    -------
    biotite.structure.AtomArray or biotite.structure.AtomArrayStack
        With ``b_factor``, ``occupancy`` and ``charge`` annotations where the
        entry has those columns.

    Raises
    ------
    ValueError
        If ``model`` is ``None`` and the models have different atom counts.
    """
    import biotite.structure.io.pdbx as pdbx

    sizes = _model_sizes(entry)
    if model is None and np.unique(sizes).size > 1:
        raise ValueError(
            f"{entry.entry_id}: its {sizes.size} models have different atom counts "
            f"({sizes.min()}..{sizes.max()}), so they cannot form one AtomArrayStack; "
            "pass model=N (1-based) to get a single model"
        )
    names = set(entry.atoms.column_names)
    fields = {"b_factor": "B_iso_or_equiv", "occupancy": "occupancy", "charge": "pdbx_formal_charge"}
    extra = [k for k, col in fields.items() if col in names]
    block = to_bcif_block(entry, compress=False)
    site = block["atom_site"]
    if "pdbx_PDB_model_num" not in site:  # biotite needs it; a file without it has one model
        site["pdbx_PDB_model_num"] = pdbx.BinaryCIFColumn(np.ones(entry.n_atoms, dtype=np.int64))
    return pdbx.get_structure(block, model=model, altloc=altloc, extra_fields=extra,
                              use_author_fields=use_author_fields)
