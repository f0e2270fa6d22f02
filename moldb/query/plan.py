"""Compile keyword queries to a :class:`~moldb.query.nodes.Plan` and execute plans over a store.

Execution reads as little as it can, in this order:

1. **Entries** from the cached versions index (latest version at ``store.as_of``),
   restricted by any ``entry`` predicate, and by the version summary (chains, altlocs).
2. **Dictionaries**: for string equality predicates the ``topo`` blob's per-column
   dictionaries are checked before any codes are decoded (``resname HEM`` skips
   entries without HEM).
3. **Groups**: blobs of the groups the predicates read are fetched for a chunk of
   entries in one TileDB query (``aniso`` / ``adp`` only when asked for); coordinates
   used only by ``box`` / ``within`` come from the grid index instead.
4. **Columns**: each predicate decodes only its column; output columns are decoded
   for the selected entries only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ValidationError
from moldb.query.evaluate import EntryContext, evaluate, may_match
from moldb.query.nodes import XYZ, And, Box, Cmp, Entry, IsIn, Node, Not, Or, Plan, Range, Within, columns, entry_filter
from moldb.query.selection import parse
from moldb.schema.columns import COLUMN_BY_NAME, GROUPS

__all__ = ["Candidate", "compile_keywords", "execute"]

CHUNK_ATOMS = 2_000_000  # atoms whose blobs are fetched in one query (bounds memory)
CHUNK_ENTRIES = 256


@dataclass(frozen=True)
class Candidate:
    """An entry version a query will look at."""

    entry: str
    version: int
    blocks: dict[str, int]
    n_atoms: int
    summary: dict[str, Any]


def _strs(v: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if v is None:
        return None
    return (v,) if isinstance(v, str) else tuple(str(x) for x in v)


def _values(column: str, vals: tuple[Any, ...]) -> Node:
    return Cmp(column, "==", vals[0]) if len(vals) == 1 else IsIn(column, vals)


def compile_keywords(entries: str | Sequence[str] | None = None, chains: str | Sequence[str] | None = None,
                     residues: Any = None, atoms: str | Sequence[str] | None = None,
                     models: int | Sequence[int] | None = None, altlocs: str | Sequence[str] | None = None,
                     where: str | None = None, within: float | None = None, of: Any = None,
                     box: Any = None, altloc: str = "all") -> Plan:
    """The plan of :meth:`moldb.Store.select`'s keyword arguments (see there)."""
    items: list[Node] = []
    if (e := _strs(entries)) is not None:
        items.append(Entry(tuple(x.upper() for x in e)))
    if (c := _strs(chains)) is not None:
        items.append(_values("auth_asym_id", c))
    if residues is not None:
        if isinstance(residues, tuple) and len(residues) == 2 and all(isinstance(x, int) for x in residues):
            items.append(Range("auth_seq_id", float(residues[0]), float(residues[1])))
        elif isinstance(residues, int):
            items.append(Cmp("auth_seq_id", "==", residues))
        elif (r := _strs(residues)) is not None:
            items.append(_values("label_comp_id", r))
    if (a := _strs(atoms)) is not None:
        items.append(_values("label_atom_id", a))
    if models is not None:
        ms = (models,) if isinstance(models, int) else tuple(int(m) for m in models)
        items.append(_values("pdbx_PDB_model_num", ms))
    if (al := _strs(altlocs)) is not None:
        items.append(_values("label_alt_id", al))
    if where:
        items.append(parse(where))
    if box is not None:
        lo, hi = (tuple(float(x) for x in p) for p in box)
        if len(lo) != 3 or len(hi) != 3:
            raise ValidationError("box must be ((x0, y0, z0), (x1, y1, z1))")
        items.append(Box((lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])))
    if within is not None:
        if of is None:
            raise ValidationError("within= needs of=: a Selection, a selection string or an (n, 3) array of points")
        if isinstance(of, str):
            items.append(Within(float(within), of=parse(of)))
        elif hasattr(of, "plan"):
            items.append(Within(float(within), of=of.plan.where))
        else:
            pts = np.asarray(of, dtype=np.float64).reshape(-1, 3)
            items.append(Within(float(within), points=tuple((float(x), float(y), float(z)) for x, y, z in pts)))
    if altloc not in ("all", "highest") and not (isinstance(altloc, str) and 0 < len(altloc) <= 4):
        raise ValidationError(f"altloc={altloc!r}: use 'all', 'highest' or one altloc id such as 'A'")
    node: Node = items[0] if len(items) == 1 else And(tuple(items)) if items else And(())
    return Plan(where=node, altloc=altloc)


def candidates(store: Any, plan: Plan) -> list[Candidate]:
    """Latest version of each entry (at ``store.as_of``) the plan can match, from the versions index."""
    cells = store._backend.versions_index()
    ent = np.asarray(cells["entry"], dtype=object)
    keep = np.ones(ent.size, dtype=bool)
    if store.as_of is not None:
        keep &= np.asarray(cells["ts"]) <= store.as_of
    only = entry_filter(plan.where)
    if only is not None:
        keep &= np.isin(ent, np.array(sorted(only), dtype=object))
    idx = np.flatnonzero(keep)
    if not idx.size:
        return []
    ver = np.asarray(cells["version"])[idx]
    order = idx[np.lexsort((ver, ent[idx]))]
    last = order[np.r_[ent[order][1:] != ent[order][:-1], True]]
    out = []
    for i in last:
        summary = json.loads(cells["summary"][i]) if _summary_prunes(plan.where) else {}
        if summary and not _summary_may_match(plan.where, summary):
            continue
        out.append(Candidate(str(ent[i]), int(cells["version"][i]), {k: int(v) for k, v in
                             json.loads(cells["blocks"][i]).items()}, int(cells["n_atoms"][i]), summary))
    return out


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
        return bool({str(v) for v in vals} & set(summary[_SUMMARY_KEYS[node.column]]))
    if isinstance(node, And):
        return all(_summary_may_match(i, summary) for i in node.items)
    if isinstance(node, Or):
        return any(_summary_may_match(i, summary) for i in node.items)
    return True


def _groups(node: Node, altloc: str) -> set[str]:
    cols = columns(node) - set(XYZ) if _xyz_only_spatial(node) else columns(node)
    if altloc != "all":
        cols |= {"label_alt_id"} | ({"occupancy", "pdbx_PDB_model_num", "label_asym_id", "auth_seq_id",
                                     "pdbx_PDB_ins_code"} if altloc == "highest" else set())
    return {COLUMN_BY_NAME[c].group for c in cols if c in COLUMN_BY_NAME}


def _xyz_only_spatial(node: Node) -> bool:
    """Coordinates are read only by box / within (so the grid index may answer)."""
    if isinstance(node, (Cmp, IsIn, Range)):
        return node.column not in XYZ
    if isinstance(node, (And, Or)):
        return all(_xyz_only_spatial(i) for i in node.items)
    if isinstance(node, Within) and node.of is not None:
        return _xyz_only_spatial(node.of)
    return _xyz_only_spatial(node.item) if isinstance(node, Not) else True


def _altloc_mask(ctx: EntryContext, mode: str) -> np.ndarray | None:
    if mode == "all":
        return None
    (codes, dictionary), null = ctx.column("label_alt_id")
    blank = null if null is not None else np.zeros(ctx.n, dtype=bool)
    if mode != "highest":
        return blank | ((codes == dictionary.index(mode)) & ~blank if mode in dictionary else np.zeros(ctx.n, bool))
    alt_rows = np.flatnonzero(~blank)
    if not alt_rows.size:
        return None
    keys = [np.asarray(ctx.column(c)[0] if not isinstance(ctx.column(c)[0], tuple) else ctx.column(c)[0][0])
            for c in ("pdbx_PDB_model_num", "label_asym_id", "auth_seq_id", "pdbx_PDB_ins_code")]
    _, res = np.unique(np.stack([k[alt_rows] for k in keys], 1), axis=0, return_inverse=True)
    occ = np.nan_to_num(np.asarray(ctx.column("occupancy")[0], dtype=np.float64)[alt_rows])
    alt = codes[alt_rows].astype(np.int64)
    pair, inv = np.unique(np.stack([res.ravel(), alt], 1), axis=0, return_inverse=True)
    mean = np.bincount(inv.ravel(), occ) / np.bincount(inv.ravel())
    names = np.array([dictionary[a] for a in pair[:, 1]], dtype=object)
    # per residue: highest mean occupancy, ties broken by the altloc id (A before B)
    order = np.lexsort((names, -mean, pair[:, 0]))
    best = order[np.r_[True, pair[order][1:, 0] != pair[order][:-1, 0]]]
    chosen = np.zeros(len(pair), dtype=bool)
    chosen[best] = True
    mask = blank.copy()
    mask[alt_rows[chosen[inv.ravel()]]] = True
    return mask


def execute(store: Any, plan: Plan, stop_at_first: bool = False) -> Iterator[tuple[Candidate, np.ndarray,
                                                                                  EntryContext]]:
    """Yield ``(candidate, selected rows, context)`` per entry with at least one selected row.

    Blobs are fetched for chunks of entries (≤ :data:`CHUNK_ATOMS` atoms) in one query each,
    so memory is bounded by a chunk whatever the store's size.
    """
    backend = store._backend
    cands = candidates(store, plan)
    groups = _groups(plan.where, plan.altloc)
    prune = any(isinstance(n, (Cmp, IsIn)) and n.column in COLUMN_BY_NAME and COLUMN_BY_NAME[n.column].kind == "str"
                and COLUMN_BY_NAME[n.column].group == "topo" for n in _leaves(plan.where))
    start = 0
    while start < len(cands):
        stop, atoms = start, 0
        while stop < len(cands) and (stop == start or (atoms + cands[stop].n_atoms <= CHUNK_ATOMS
                                                       and stop - start < CHUNK_ENTRIES)):
            atoms += cands[stop].n_atoms
            stop += 1
        chunk = cands[start:stop]
        start = stop
        fetch = sorted(groups | ({"topo"} if prune else set()))
        data = backend.read_blocks([c.blocks[g] for c in chunk for g in fetch]) if fetch else {}
        for c in chunk:
            ctx = EntryContext(backend, c.entry, c.blocks, c.n_atoms, {g: data[c.blocks[g]]["data"] for g in fetch})
            if prune and not may_match(plan.where, ctx):
                continue
            mask = evaluate(plan.where, ctx)
            alt = _altloc_mask(ctx, plan.altloc)
            if alt is not None:
                mask &= alt
            rows = np.flatnonzero(mask)
            if rows.size:
                yield c, rows, ctx
                if stop_at_first:
                    return


def _leaves(node: Node) -> list[Node]:
    if isinstance(node, (And, Or)):
        return [x for i in node.items for x in _leaves(i)]
    if isinstance(node, Within) and node.of is not None:
        return _leaves(node.of)
    return [node]


def output_table(ctx: EntryContext, rows: np.ndarray, cols: Sequence[str] | None) -> pa.Table:
    """The selected rows of one entry, with ``entry`` first, then the atom columns asked for."""
    from moldb.storage.codec import decode_group

    want = None if cols is None else [c for c in cols if c != "entry"]
    arrays: dict[str, pa.Array] = {}
    order: list[str] = []
    known = np.full(ctx.n, -1, dtype=np.int64)
    known[ctx.known_rows] = np.arange(ctx.known_rows.size)
    use_index = not ctx.has_xyz() and ctx.known_rows.size and bool(np.all(known[rows] >= 0))
    for g in GROUPS:
        gcols = None if want is None else [c for c in want if COLUMN_BY_NAME.get(c, None) is None
                                            or COLUMN_BY_NAME[c].group == g]
        if g == "xyz" and use_index and (gcols is None or set(gcols) <= set(XYZ)):
            pos = known[rows]
            for i, c in enumerate(XYZ):
                if gcols is None or c in gcols:
                    arrays[c] = pa.array(ctx.known_xyz[pos, i])
            continue
        if gcols == [] or g not in ctx.blocks:
            continue
        arrs, _, _, _, meta = decode_group(ctx.blob(g), gcols)
        take = pa.array(rows)
        arrays.update({k: v.take(take) for k, v in arrs.items()})
        if g == "topo":
            order = list(meta.get("atom_items", []))
    names = [c for c in (want if want is not None else order) if c in arrays]
    names += [c for c in arrays if c not in names]
    entry = pa.array(np.full(rows.size, ctx.entry, dtype=object), type=pa.string())
    return pa.table({"entry": entry, **{c: arrays[c] for c in names}})
