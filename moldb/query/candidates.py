"""Which entry versions a plan can match, from the cached versions index alone (no block read).

The latest version of each entry at ``store.as_of``, restricted by ``entry`` predicates and
by the version summaries (chains, label chains, altlocs, residue names, elements listed per
version): ``resname GTP`` over a store keeps only the entries whose summary lists GTP.
Parsed summaries are kept while the versions index is unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from moldb.query.nodes import And, Cmp, Entry, IsIn, Node, Or, Plan, columns, entry_filter

__all__ = ["Candidate", "candidates", "entries_from_summaries"]


@dataclass(frozen=True)
class Candidate:
    """An entry version a query will look at."""

    entry: str
    version: int
    blocks: dict[str, int]
    n_atoms: int
    summary: dict[str, Any]


def candidates(store: Any, plan: Plan) -> list[Candidate]:
    """Latest version of each entry (at ``store.as_of``) the plan can match, from the versions index."""
    cells = store._backend.versions_index()
    ent = np.asarray(cells["entry"], dtype=object)
    only = entry_filter(plan.where)
    parsed = _parsed_index(store._backend, cells)
    if only is not None:  # the rows of those entries, from the index's entry -> rows map (no pass over every row)
        by_entry = _rows_by_entry(store._backend, ent)
        idx = np.array(sorted(r for e in only for r in by_entry.get(e, ())), dtype=np.int64)
    else:
        idx = np.arange(ent.size)
    if store.as_of is not None and idx.size:
        idx = idx[np.asarray(cells["ts"])[idx] <= store.as_of]
    if not idx.size:
        return []
    ver = np.asarray(cells["version"])[idx]
    order = idx[np.lexsort((ver, ent[idx]))]
    last = order[np.r_[ent[order][1:] != ent[order][:-1], True]]
    out = []
    prunes = _summary_prunes(plan.where)
    for i in last:
        i = int(i)
        if i not in parsed:
            parsed[i] = ({k: int(v) for k, v in json.loads(cells["blocks"][i]).items()},
                         json.loads(cells["summary"][i] or "{}"))
        blocks, summary = parsed[i]
        if prunes and summary and not _summary_may_match(plan.where, summary):
            continue
        out.append(Candidate(str(ent[i]), int(cells["version"][i]), blocks, int(cells["n_atoms"][i]),
                             summary if prunes else {}))
    return out


def _parsed_index(backend: Any, cells: dict[str, Any]) -> dict[int, tuple[dict[str, int], dict[str, Any]]]:
    """Parsed ``blocks`` / ``summary`` JSON of the cached versions index, by row (kept while it is current)."""
    held = backend.__dict__.get("_parsed_index")
    if held is None or held[0] is not cells:
        held = (cells, {}, {})
        backend.__dict__["_parsed_index"] = held
    out: dict[int, tuple[dict[str, int], dict[str, Any]]] = held[1]
    return out


def _rows_by_entry(backend: Any, ent: np.ndarray) -> dict[str, list[int]]:
    """Entry id -> its rows in the cached versions index (built once per index, with :func:`_parsed_index`)."""
    held = backend.__dict__["_parsed_index"]
    by_entry: dict[str, list[int]] = held[2]
    if not by_entry and ent.size:
        for i, e in enumerate(ent.tolist()):
            by_entry.setdefault(e, []).append(i)
    return by_entry


# Atom columns whose distinct values each version's summary lists: an equality test on them prunes
# entries from the versions index alone, before any block is read (summaries written before a key
# was added lack it, and those entries are read as before).
_SUMMARY_KEYS = {"auth_asym_id": "auth_chains", "label_asym_id": "chains", "label_alt_id": "altlocs",
                 "label_comp_id": "residues", "type_symbol": "elements"}


def _summary_prunes(node: Node) -> bool:
    return any(c in _SUMMARY_KEYS for c in columns(node))


def _summary_may_match(node: Node, summary: dict[str, Any]) -> bool:
    if isinstance(node, (Cmp, IsIn)) and node.column in _SUMMARY_KEYS and _SUMMARY_KEYS[node.column] in summary:
        if isinstance(node, Cmp) and node.op != "==":
            return True
        vals = node.values if isinstance(node, IsIn) else (node.value,)
        key = "_set_" + _SUMMARY_KEYS[node.column]
        if key not in summary:  # parsed summaries are cached: build each lookup set once
            summary[key] = frozenset(summary[_SUMMARY_KEYS[node.column]])
        return any(str(v) in summary[key] for v in vals)
    if isinstance(node, And):
        return all(_summary_may_match(i, summary) for i in node.items)
    if isinstance(node, Or):
        return any(_summary_may_match(i, summary) for i in node.items)
    return True


def _decided(node: Node) -> bool:
    """Whether the summaries alone say if an entry has a matching atom: one equality leaf (or ``or`` of them),
    possibly with ``entry`` restrictions (two leaves under ``and`` could be met by different atoms)."""
    if isinstance(node, (Cmp, IsIn)):
        return node.column in _SUMMARY_KEYS and (isinstance(node, IsIn) or node.op == "==")
    if isinstance(node, Or):
        return all(_decided(i) for i in node.items)
    if isinstance(node, And):
        rest = [i for i in node.items if not isinstance(i, Entry)]
        return len(rest) <= 1 and all(_decided(i) for i in rest)
    return isinstance(node, Entry)


def entries_from_summaries(store: Any, plan: Plan) -> list[str] | None:
    """The entries a plan matches, from the versions index alone when the summaries decide it
    (``resname GTP``, ``element ZN or element CU``, ``chain B``); None otherwise."""
    if plan.altloc != "all" or not _decided(plan.where) or not _summary_prunes(plan.where):
        return None
    cands = candidates(store, plan)
    keys = {_SUMMARY_KEYS[c] for c in columns(plan.where) if c in _SUMMARY_KEYS}
    if not all(keys <= set(c.summary) for c in cands):  # written before a summary key existed
        return None
    return [c.entry for c in cands]
