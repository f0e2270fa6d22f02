"""IR data a reader derives from formats moldb maps onto atoms (RMF, IHM spheres), carried to the commit.

A reader that knows more than the ``_atom_site`` columns (an RMF node hierarchy, IHM
sphere radii) returns a :class:`ParsedEntryWithIR`: a :class:`ParsedEntry` plus plain
groupings and descriptor specs. The ingest hook ``moldb.ir.extras`` writes them
inside the same commit as the atoms (built-in: recomputed for every version).
Everything here is plain data (numpy arrays and JSON-able dicts), no IR classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moldb.schema.parsed import ParsedEntry

__all__ = ["ExtraDescriptor", "ExtraGrouping", "ParsedEntryWithIR", "partition"]


@dataclass
class ExtraGrouping:
    """One grouping: ``group[i]`` (index into ``groups``) contains atom row ``rows[i]``."""

    name: str
    kind: str
    groups: list[str]
    group: np.ndarray
    rows: np.ndarray
    source: str
    weights: np.ndarray | None = None


@dataclass
class ExtraDescriptor:
    """One descriptor: JSON fields of :class:`moldb.ir.Descriptor` (``type`` in ``spec``) plus arrays."""

    spec: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ParsedEntryWithIR(ParsedEntry):
    """A parsed entry with extra groupings and descriptors for the ingest hook."""

    extra_groupings: list[ExtraGrouping] = field(default_factory=list)
    extra_descriptors: list[ExtraDescriptor] = field(default_factory=list)


def partition(name: str, kind: str, members: dict[str, list[int]] | list[tuple[str, list[int]]],
              source: str) -> ExtraGrouping:
    """Build an :class:`ExtraGrouping` from group name → atom rows (groups may overlap)."""
    items = list(members.items()) if isinstance(members, dict) else list(members)
    groups = [k for k, _ in items]
    group = np.concatenate([np.full(len(v), i, np.int32) for i, (_, v) in enumerate(items)]) if items \
        else np.zeros(0, np.int32)
    rows = np.concatenate([np.asarray(v, np.int64) for _, v in items]) if items else np.zeros(0, np.int64)
    return ExtraGrouping(name, kind, groups, group.astype(np.int32), rows.astype(np.int64), source)
