"""The typed query plan: selection-language and keyword queries both compile to these nodes.

A plan is a tree of frozen dataclasses. Leaves test one column (:class:`Cmp`,
:class:`IsIn`, :class:`Range`), the entry id (:class:`Entry`) or space
(:class:`Within`, :class:`Box`); :class:`And`, :class:`Or` and :class:`Not` combine
them. Every node can say which atom columns it reads (:func:`columns`) and which
entries it can possibly match (:func:`entry_filter`), which is what the executor
uses to read only what is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["XYZ", "All", "And", "Box", "Cmp", "Entry", "IsIn", "Node", "Not", "Or", "Plan", "Range", "Rows",
           "Within", "columns", "entry_filter", "spatial_only"]

XYZ = ("Cartn_x", "Cartn_y", "Cartn_z")
Scalar = str | int | float | bool


@dataclass(frozen=True)
class All:
    """Every atom (an empty selection string, or no keyword restriction)."""


@dataclass(frozen=True)
class Cmp:
    """``column op value`` with ``op`` one of ``== != < <= > >=``."""

    column: str
    op: str
    value: Scalar


@dataclass(frozen=True)
class IsIn:
    """``column`` equals one of ``values``."""

    column: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    """``lo <= column <= hi`` (inclusive, as ``resid 10-50``)."""

    column: str
    lo: float
    hi: float


@dataclass(frozen=True)
class Entry:
    """The atom belongs to one of these entries (upper-case ids)."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class And:
    """Every item matches."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one item matches."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """The item does not match."""

    item: Node


@dataclass(frozen=True)
class Within:
    """Atoms within ``radius`` Å of the atoms of ``of`` (same entry) or of fixed ``points``."""

    radius: float
    of: Node | None = None
    points: tuple[tuple[float, float, float], ...] | None = None


@dataclass(frozen=True)
class Box:
    """Atoms with ``lo <= xyz <= hi`` (axis-aligned box, Å, inclusive)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


@dataclass(frozen=True)
class Rows:
    """Explicit atom rows per entry (from a grouping's membership): ``(entry, int64 rows as bytes)`` pairs."""

    rows: tuple[tuple[str, bytes], ...]

    def of(self, entry: str) -> bytes | None:
        """The rows of ``entry`` (raw int64 bytes), or None."""
        return next((r for e, r in self.rows if e == entry), None)


Node = All | Cmp | IsIn | Range | Entry | And | Or | Not | Within | Box | Rows


@dataclass(frozen=True)
class Plan:
    """A compiled query.

    Attributes
    ----------
    where : Node
        The atom predicate.
    altloc : str
        ``"all"`` (every alternate location, the default), ``"highest"`` (per residue, the
        altloc with the highest mean occupancy; atoms without altloc always kept) or one
        altloc id (atoms with that id or with none).
    text : str
        The source text (for messages), when compiled from a string.
    """

    where: Node = field(default_factory=All)
    altloc: str = "all"
    text: str = ""


def columns(node: Node) -> set[str]:
    """Atom columns ``node`` reads (``entry`` is not a column)."""
    if isinstance(node, (Cmp, IsIn, Range)):
        return {node.column}
    if isinstance(node, (And, Or)):
        return set().union(*(columns(i) for i in node.items)) if node.items else set()
    if isinstance(node, Not):
        return columns(node.item)
    if isinstance(node, Within):
        return set(XYZ) | (columns(node.of) if node.of is not None else set())
    if isinstance(node, Box):
        return set(XYZ)
    return set()


def spatial_only(node: Node) -> bool:
    """Whether ``node`` reads coordinates only through :class:`Box` / point :class:`Within` leaves."""
    if isinstance(node, (And, Or)):
        return all(spatial_only(i) for i in node.items)
    if isinstance(node, Not):
        return spatial_only(node.item)
    if isinstance(node, Within):
        return node.of is None
    return True


def entry_filter(node: Node) -> frozenset[str] | None:
    """Entries ``node`` can match (``None``: any entry)."""
    if isinstance(node, Entry):
        return frozenset(node.ids)
    if isinstance(node, Rows):
        return frozenset(e for e, _ in node.rows)
    if isinstance(node, Within) and node.of is not None:
        return entry_filter(node.of)
    if isinstance(node, And):
        sets = [s for s in (entry_filter(i) for i in node.items) if s is not None]
        return frozenset.intersection(*sets) if sets else None
    if isinstance(node, Or):
        subs = [entry_filter(i) for i in node.items]
        if not subs or any(s is None for s in subs):
            return None
        return frozenset().union(*[s for s in subs if s is not None])
    return None
