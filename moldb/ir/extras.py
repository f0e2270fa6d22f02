"""Ingest hook ``moldb.ir.extras``: groupings and descriptors that readers derive beyond ``_atom_site``.

Writes, inside the commit of the version being ingested (like the built-in hook
``moldb.ir``), the extra groupings and descriptors of a
:class:`~moldb.ingest.extras.ParsedEntryWithIR` (RMF hierarchy, resolutions,
features, bonds, frames, radii; IHM sphere radii) and, for any entry whose file has
IHM categories, the ``ihm_states`` / ``ihm_model_groups`` descriptors
(:mod:`moldb.ingest.ihm_states`). All are marked built-in (recomputed per version).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moldb.ingest.extras import ExtraDescriptor, ExtraGrouping
from moldb.ingest.hooks import register_ingest_hook
from moldb.ir.builtin import Membership
from moldb.ir.descriptors import descriptor_from
from moldb.ir.model import Grouping, Provenance
from moldb.ir.store_ops import _descriptor_cell, _grouping_cell
from moldb.schema.parsed import CategoryTables
from moldb.storage import ir_store
from moldb.storage.backend import Backend

__all__ = ["descriptor_cells", "extras_hook", "grouping_cells"]


def grouping_cells(extras: list[ExtraGrouping]) -> list[tuple[str, str, dict[str, Any], bytes]]:
    """Packed grouping cells of ``extras`` (built-in)."""
    cells = []
    for e in extras:
        names = [s.replace("\n", " ") for s in e.groups]
        g = Grouping(name=e.name, kind=e.kind, groups=names, n_members=len(e.rows), builtin=True,
                     weighted=e.weights is not None, provenance=Provenance(source=e.source))
        cells.append(_grouping_cell(g, Membership(e.group, e.rows, e.weights)))
    return cells


def descriptor_cells(extras: list[ExtraDescriptor]) -> list[tuple[str, str, dict[str, Any], bytes]]:
    """Packed descriptor cells of ``extras`` (validated through the IR models; ``ingest:`` provenance
    makes them per-version, like the built-in ones)."""
    return [_descriptor_cell(descriptor_from(dict(e.spec), dict(e.arrays))) for e in extras]


def extras_hook(backend: Backend, ts: int, entry: str, parsed: Any, blocks: dict[str, int],
                new_groups: list[str]) -> None:
    """Write the extra groupings / descriptors of ``parsed`` for the version being committed."""
    from moldb.ingest.ihm_states import ihm_descriptors

    if not ir_store.has_ir(backend):
        return
    groupings: list[ExtraGrouping] = list(getattr(parsed, "extra_groupings", []))
    descriptors: list[ExtraDescriptor] = list(getattr(parsed, "extra_descriptors", []))
    descriptors += ihm_descriptors(CategoryTables(parsed.categories), parsed.atoms)
    if not groupings and not descriptors:
        return
    index = backend.read_versions(entry, attrs=["ts"])
    version = int(np.max(index["version"])) + 1 if len(index["version"]) else 1
    ir_store.write_ir_cells(backend, "groupings", ts, entry, version, grouping_cells(groupings))
    ir_store.write_ir_cells(backend, "descriptors", ts, entry, version, descriptor_cells(descriptors))


register_ingest_hook("moldb.ir.extras", extras_hook)
