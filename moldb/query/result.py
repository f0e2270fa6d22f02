"""``Selection``: the lazy result of a query.

Nothing is read until a method asks for rows; every call re-runs the plan against the
store (results are never cached, so memory stays bounded by one chunk of entries, and
a store opened ``as_of`` keeps answering as of that time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.query.candidates import entries_from_summaries
from moldb.query.nodes import XYZ, Plan
from moldb.query.output import output_groups, output_table
from moldb.query.plan import CHUNK_ATOMS, execute

__all__ = ["Selection"]


class Selection:
    """Atoms selected by a plan, across one or many entries.

    Parameters
    ----------
    store : moldb.Store
    plan : Plan
    """

    def __init__(self, store: Any, plan: Plan) -> None:
        self.store = store
        self.plan = plan

    def __repr__(self) -> str:
        return f"<moldb Selection {self.plan.text or self.plan.where!r} altloc={self.plan.altloc}>"

    def __len__(self) -> int:
        return sum(rows.size for _, rows, _ in execute(self.store, self.plan))

    def rows(self) -> dict[str, np.ndarray]:
        """Entry → selected row numbers (rows of ``store.get(entry).atoms``)."""
        return {c.entry: rows for c, rows, _ in execute(self.store, self.plan)}

    def entries(self) -> list[str]:
        """Ids of the entries with at least one selected atom.

        A single residue-name / element / chain / altloc test (``resname GTP``) is answered from
        the version summaries of the cached versions index: no block is read.
        """
        known = entries_from_summaries(self.store, self.plan)
        if known is not None:
            return known
        return [c.entry for c, _, _ in execute(self.store, self.plan)]

    def any(self) -> bool:
        """Whether any atom is selected (stops at the first entry that has one)."""
        return any(True for _ in execute(self.store, self.plan, stop_at_first=True))

    def batches(self, size: int = 65_536, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """Stream the selected rows as tables of at most ``size`` rows (never spanning entries).

        Memory is bounded by the blobs of a chunk of entries (about four batches of atoms) plus one
        batch; an entry stored as row chunks is read a batch's chunks at a time.
        """
        if size < 1:
            raise ValueError("batch size must be >= 1")
        fetch_atoms = min(CHUNK_ATOMS, max(4 * size, 262_144))  # blobs in memory scale with the batch
        for _, rows, ctx in execute(self.store, self.plan, output=output_groups(columns), chunk_atoms=fetch_atoms):
            for s in range(0, rows.size, size):
                yield output_table(ctx, rows[s:s + size], columns)

    def to_arrow(self, columns: Sequence[str] | None = None) -> pa.Table:
        """One table: ``entry`` then the atom columns (all, or ``columns``), rows in entry order.

        Entries whose atom tables differ (an entry without ``U11`` …) get nulls in the missing columns.
        """
        tables = [output_table(ctx, rows, columns)
                  for _, rows, ctx in execute(self.store, self.plan, output=output_groups(columns))]
        if not tables:
            return pa.table({"entry": pa.array([], type=pa.string())})
        return pa.concat_tables(tables, promote_options="permissive")

    def to_numpy(self, what: str = "xyz") -> np.ndarray:
        """``"xyz"`` → (n, 3) float64 coordinates; a column name → that column as a 1-D array."""
        if what == "xyz":
            parts = [output_table(ctx, rows, list(XYZ))
                     for _, rows, ctx in execute(self.store, self.plan, output=["xyz"])]
            if not parts:
                return np.zeros((0, 3))
            return np.concatenate([np.column_stack([t.column(c).to_numpy() for c in XYZ]) for t in parts])
        col = self.to_arrow([what]).column(what)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        return col.to_numpy()

    def to_torch(self, what: str = "xyz", device: str = "cpu") -> Any:
        """The same rows as a ``torch.Tensor`` (float64 for coordinates) on ``device``.

        Raises
        ------
        ImportError
            If PyTorch is not installed (``pip install torch``).
        """
        try:
            import torch
        except ImportError as exc:
            raise ImportError("Selection.to_torch() needs PyTorch, which is not installed: `pip install torch` "
                              "(to_numpy() returns the same rows without it)") from exc
        return torch.from_numpy(np.ascontiguousarray(self.to_numpy(what))).to(device)

    def structures(self) -> list[Any]:
        """Per-entry :class:`~moldb.Structure` objects holding only the selected atoms (exportable)."""
        from moldb.api.structure import Structure
        from moldb.storage.entries import read_atom_table

        out = []
        backend = self.store._backend
        for c, rows, _ in execute(self.store, self.plan):
            rec = self.store._resolve(c.entry, c.version, None)
            atoms, masks, decimals, text, meta = read_atom_table(backend, rec.blocks)
            take = pa.array(rows)
            cif_block = rec.blocks["cif"]
            out.append(Structure(rec, atoms.take(take), {k: v[rows] for k, v in masks.items()}, decimals, text,
                                 meta, _loader(backend, cif_block), self.store._templates))
        return out


def _loader(backend: Any, block: int) -> Callable[[], list[Any]]:
    from moldb.storage.entries import read_categories

    return lambda: read_categories(backend, block)
