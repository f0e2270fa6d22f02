"""The interchange type every reader returns and the loader commits.

A reader (mmCIF, PDB, BinaryCIF, MMTF …) turns a file into a :class:`ParsedEntry`;
it never touches storage. One loader (:mod:`moldb.ingest.load`) validates and
commits it.

Null kinds
----------
mmCIF has two nulls: ``.`` (inapplicable) and ``?`` (unknown). BinaryCIF keeps them
apart with a per-column mask (0 value, 1 ``.``, 2 ``?``); moldb does the same:
every column that holds nulls has a ``uint8`` mask with those codes in
``ParsedEntry.atom_masks`` or ``Category.masks``. Arrow nulls mark both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

__all__ = ["MASK_DOT", "MASK_QUESTION", "MASK_VALUE", "Category", "CategoryLookup", "CategoryTables",
           "ParsedEntry", "SourceInfo"]

MASK_VALUE = 0
MASK_DOT = 1
MASK_QUESTION = 2


class Category:
    """One mmCIF category other than the typed atom columns, kept verbatim.

    A category is built either from an Arrow table or, cheaper, from Python lists of
    text (``lists=``, what readers and the stored blob give); the other form is made on
    first use, so an ingest that never looks at a category never builds its table.

    Attributes
    ----------
    name : str
        Category name without the leading underscore, e.g. ``"refine"``.
    table : pyarrow.Table
        One ``string`` column per item, in source order; nulls where the
        source has ``.`` or ``?``.
    masks : dict[str, numpy.ndarray]
        For items holding nulls: ``uint8`` array, shape ``(n_rows,)``, codes
        :data:`MASK_VALUE`, :data:`MASK_DOT`, :data:`MASK_QUESTION`.
    """

    __slots__ = ("_lists", "_table", "masks", "name")

    def __init__(self, name: str, table: pa.Table | None = None, masks: dict[str, np.ndarray] | None = None,
                 *, lists: dict[str, list[str | None]] | None = None) -> None:
        if table is None and lists is None:
            table = pa.table({})
        self.name = name
        self._table = table
        self._lists = lists
        self.masks: dict[str, np.ndarray] = masks if masks is not None else {}

    @property
    def table(self) -> pa.Table:
        """The category as a table of strings (built from the lists on first use)."""
        if self._table is None:
            lists = self._lists or {}
            self._table = pa.table({k: pa.array(v, type=pa.string()) for k, v in lists.items()}) \
                if lists else pa.table({})
        return self._table

    @property
    def items(self) -> list[str]:
        """Item names in source order."""
        return list(self._lists) if self._lists is not None else list(self.table.column_names)

    @property
    def num_rows(self) -> int:
        """Number of rows."""
        if self._lists is not None:
            return len(next(iter(self._lists.values()))) if self._lists else 0
        return int(self.table.num_rows)

    def pylists(self) -> dict[str, list[str | None]]:
        """item → values as Python ``str`` (``None`` for a null), in source order."""
        if self._lists is None:
            self._lists = {item: [None if v is None else str(v) for v in self.table.column(item).to_pylist()]
                           for item in self.table.column_names}
        return self._lists

    def value(self, item: str, row: int = 0) -> str | None:
        """One value as text (``None`` for a null)."""
        if self._lists is not None:
            return self._lists[item][row]
        v = self.table.column(item)[row].as_py()
        return None if v is None else str(v)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Category):
            return NotImplemented
        return (self.name == other.name and self.table.equals(other.table)
                and self.masks.keys() == other.masks.keys()
                and all(np.array_equal(m, other.masks[k]) for k, m in self.masks.items()))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Category({self.name!r}, items={self.items!r}, rows={self.num_rows})"


class CategoryTables(Mapping[str, pa.Table]):
    """name → table over a list of categories, each table built only when looked up."""

    def __init__(self, categories: list[Category]) -> None:
        self._by_name = {c.name: c for c in categories}

    def __getitem__(self, name: str) -> pa.Table:
        return self._by_name[name].table

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


class CategoryLookup:
    """``category(name)`` and ``category_names`` over ``self.categories`` (local and remote structures)."""

    entry: str

    @property
    def categories(self) -> list[Category]:
        """The categories (subclasses provide them)."""
        return []

    @property
    def category_names(self) -> list[str]:
        """Names of the categories in source order."""
        return [c.name for c in self.categories]

    def category(self, name: str) -> pa.Table:
        """One category as a table of strings (``_refine`` → ``category("refine")``).

        Raises
        ------
        KeyError
            If the entry has no such category.
        """
        name = name.lstrip("_").rstrip(".")
        for c in self.categories:
            if c.name == name:
                return c.table
        raise KeyError(f"{self.entry} has no category {name!r}; it has {', '.join(self.category_names)}")


@dataclass
class SourceInfo:
    """Where a parsed entry came from."""

    path: str
    format: str
    sha256: str
    size: int


@dataclass
class ParsedEntry:
    """A parsed structure file, ready to be committed.

    Attributes
    ----------
    entry_id : str
        Entry id as found in the file (``_entry.id``, MMTF ``structureId``, PDB
        ``idCode``) or derived from the file name.
    atoms : pyarrow.Table
        Typed ``_atom_site`` columns (see :mod:`moldb.schema.columns`) present in
        the source, plus ``U11`` … ``U23`` when the entry has anisotropic ADPs.
        String columns may be plain ``string`` or ``dictionary``; ints ``int64``;
        floats ``float64``. Length: number of atom_site rows over all models.
    atom_masks : dict[str, numpy.ndarray]
        Null-kind masks (``uint8``, shape ``(n_atoms,)``) for atom columns with nulls.
    atom_items : list[str]
        The ``_atom_site`` item order of the source (typed and untyped items).
    decimals : dict[str, int]
        For float columns: decimals the source printed (export reproduces them).
    categories : list[Category]
        Every other category (and untyped ``atom_site`` items as category
        ``atom_site``), in source order.
    source : SourceInfo
    aniso_items : list[str]
        Full ``_atom_site_anisotrop`` item order when the U columns were moved
        into ``atoms`` (the category keeps the other items).
    """

    entry_id: str
    atoms: pa.Table
    atom_masks: dict[str, np.ndarray]
    atom_items: list[str]
    decimals: dict[str, int]
    categories: list[Category]
    source: SourceInfo
    aniso_items: list[str] = field(default_factory=list)

    @property
    def n_atoms(self) -> int:
        """Number of atom_site rows."""
        return self.atoms.num_rows

    def category(self, name: str) -> Category | None:
        """The category called ``name`` (no leading underscore), or ``None``."""
        for c in self.categories:
            if c.name == name:
                return c
        return None
