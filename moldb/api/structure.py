"""``Structure``: one version of one entry, read from a store."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.schema.parsed import Category, CategoryLookup, ParsedEntry, SourceInfo
from moldb.schema.records import VersionInfo

__all__ = ["Structure"]


class Structure(CategoryLookup):
    """One version of one entry.

    Attributes
    ----------
    entry : str
        Entry id.
    version : VersionInfo
        What was committed: number, timestamp, author, message, hash.
    atoms : pyarrow.Table
        One row per ``_atom_site`` row (all models); columns named by mmCIF items
        (see :mod:`moldb.schema.columns`), plus ``U11`` … ``U23`` when present.
    """

    def __init__(
        self,
        version: VersionInfo,
        atoms: pa.Table,
        masks: dict[str, np.ndarray],
        decimals: dict[str, int],
        text_items: list[str],
        meta: dict[str, Any],
        load_categories: Callable[[], list[Category]],
        load_templates: Callable[[list[str]], dict[str, tuple[list[str], np.ndarray]]] | None = None,
        load_bonds: Callable[[], pa.Table | None] | None = None,
    ) -> None:
        self.version = version
        self.entry = version.entry
        self.atoms = atoms
        self.atom_masks = masks
        self.decimals = decimals
        self._text_items = list(text_items)
        self._meta = meta
        self._load_categories = load_categories
        self._load_templates = load_templates
        self._load_bonds = load_bonds  # stored connectivity (H5MD /connectivity), see moldb.api.connectivity

    def __repr__(self) -> str:
        return (f"<Structure {self.entry} v{self.version.version}: {self.atoms.num_rows} atoms, "
                f"{self.version.n_models} model(s)>")

    @property
    def summary(self) -> dict[str, Any]:
        """Entry-level metadata (title, method, resolution, chains, ligands ...)."""
        return self.version.summary

    @cached_property
    def categories(self) -> list[Category]:
        """Every non-atom category, verbatim, in source order (read on first use).

        The untyped ``_atom_site`` items (stored with the atoms) appear as category ``atom_site``.
        """
        cats = self._load_categories()
        text = {i: self.atoms.column(i).cast(pa.string()) for i in self._text_items if i in self.atoms.column_names}
        masks = {i: self.atom_masks[i] for i in text if i in self.atom_masks}
        return [Category("atom_site", pa.table(text) if text else pa.table({}), masks) if c.name == "atom_site"
                else c for c in cats]

    def bonds(self) -> pa.Table:
        """Bonds: CCD templates stored in the store, polymer links and ``struct_conn``.

        Plus, for an entry ingested with connectivity (H5MD ``/connectivity``), the stored
        pairs moldb does not derive itself, with ``kind`` ``connectivity/<element>``.

        Returns
        -------
        pyarrow.Table
            ``atom_1``, ``atom_2`` (rows of :attr:`atoms`), ``order``, ``aromatic``,
            ``kind`` — see :mod:`moldb.topology`.
        """
        from moldb.topology import compute_bonds

        comps: list[str] = []
        if "label_comp_id" in self.atoms.column_names:
            col = self.atoms.column("label_comp_id").combine_chunks()
            vals = col.dictionary if pa.types.is_dictionary(col.type) else col.unique()
            comps = [str(v) for v in vals.to_pylist() if v]
        templates = self._load_templates(comps) if self._load_templates is not None else {}
        conn = next((c.table for c in self.categories if c.name == "struct_conn"), None)
        bonds = compute_bonds(self.atoms, templates, conn)
        stored = self._load_bonds() if self._load_bonds is not None else None
        if stored is not None:
            from moldb.api.connectivity import merge_bonds

            bonds = merge_bonds(bonds, stored)
        return bonds

    def to_parsed(self) -> ParsedEntry:
        """The interchange form used by the exporters."""
        typed = self.atoms.select([c for c in self.atoms.column_names if c not in self._text_items])
        masks = {k: v for k, v in self.atom_masks.items() if k not in self._text_items}
        return ParsedEntry(
            entry_id=self.entry, atoms=typed, atom_masks=masks,
            atom_items=list(self._meta.get("atom_items", [])), decimals=dict(self.decimals),
            categories=self.categories,
            source=SourceInfo(str(self.version.source.get("path", "")), str(self.version.source.get("format", "")),
                              str(self.version.source.get("sha256", "")), int(self.version.source.get("size", 0))),
            aniso_items=list(self._meta.get("aniso_items", [])),
        )

    def write(self, path: str | Path, format: str | None = None) -> Path:
        """Write the structure as mmCIF, BinaryCIF or PDB (chosen by suffix or ``format``)."""
        from moldb.export import write

        write(self.to_parsed(), path, format=format)
        return Path(path)

    def to_gemmi(self) -> Any:
        """A ``gemmi.Structure``."""
        from moldb.export import to_gemmi

        return to_gemmi(self.to_parsed())

    def to_biotite(self, model: int | None = None) -> Any:
        """A biotite ``AtomArray`` (one model) or ``AtomArrayStack`` (all models)."""
        from moldb.export import to_biotite

        return to_biotite(self.to_parsed(), model=model)
