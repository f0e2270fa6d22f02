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
4. **Chunks** (entries stored as row chunks, :mod:`moldb.storage.chunks`): the zone maps
   of the manifests pick the pages that can match (:mod:`moldb.query.zones`); only the
   chunks holding them are fetched — with the output groups' chunks in the same query
   when few — and predicates decode those pages only.
5. **Columns**: each predicate decodes only its column; output columns are decoded
   for the selected entries only (in chunked entries, only the pages holding the rows).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from moldb.errors import ValidationError
from moldb.query.candidates import Candidate, candidates
from moldb.query.context import EntryContext
from moldb.query.evaluate import evaluate, may_match, scope_of
from moldb.query.nodes import (
    XYZ,
    All,
    And,
    Box,
    Cmp,
    Entry,
    IsIn,
    Node,
    Not,
    Or,
    Plan,
    Range,
    Within,
    columns,
)
from moldb.query.output import output_groups, output_table
from moldb.query.selection import parse
from moldb.schema.columns import COLUMN_BY_NAME
from moldb.storage.groups import open_groups

__all__ = ["Candidate", "compile_keywords", "execute", "output_groups", "output_table"]

CHUNK_ATOMS = 2_000_000  # atoms whose blobs are fetched in one query (bounds memory)
CHUNK_ENTRIES = 256
PREFETCH_ROWS = 262_144  # a chunked entry's scope this small gets its output chunks with the predicates'


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


def execute(store: Any, plan: Plan, stop_at_first: bool = False, output: Sequence[str] | None = None,
            chunk_atoms: int = CHUNK_ATOMS) -> Iterator[tuple[Candidate, np.ndarray, EntryContext]]:
    """Yield ``(candidate, selected rows, context)`` per entry with at least one selected row.

    Blocks are fetched for chunks of entries (≤ ``chunk_atoms`` atoms) in one query each,
    so memory is bounded by a chunk whatever the store's size. For a chunked entry the
    zone maps first narrow the context to the zones (pages) that can match (:func:`scope_of`),
    and only the chunks holding them are fetched — with the chunks of the ``output`` groups
    (the groups the caller reads for the selected rows) in the same query when the scope is small.
    The output groups of the plain entries that matched are opened in one query per chunk of
    entries, after its evaluation.
    """
    backend = store._backend
    cands = candidates(store, plan)
    groups = _groups(plan.where, plan.altloc)
    prune = any(isinstance(n, (Cmp, IsIn)) and n.column in COLUMN_BY_NAME and COLUMN_BY_NAME[n.column].kind == "str"
                and COLUMN_BY_NAME[n.column].group == "topo" for n in _leaves(plan.where))
    need = sorted(groups | ({"topo"} if prune else set()))
    spatial = any(isinstance(n, (Box, Within)) for n in _nodes(plan.where))
    out = [g for g in (output or ()) if g not in need]
    # the output groups of the entries that matched are opened together after a chunk's evaluation (coordinates
    # of a spatial query come from the grid index)
    late = [g for g in out if not (spatial and g == "xyz")]
    start = 0
    while start < len(cands):
        stop, atoms = start, 0
        while stop < len(cands) and (stop == start or (atoms + cands[stop].n_atoms <= chunk_atoms
                                                       and stop - start < CHUNK_ENTRIES)):
            atoms += cands[stop].n_atoms
            stop += 1
        chunk = cands[start:stop]
        start = stop
        opened = open_groups(backend, [c.blocks for c in chunk], need) if need else [{} for _ in chunk]
        hits: list[tuple[Candidate, np.ndarray, EntryContext]] = []
        for c, srcs in zip(chunk, opened, strict=True):
            ctx = EntryContext(backend, c.entry, c.blocks, c.n_atoms, srcs)
            if prune and not may_match(plan.where, ctx):
                continue
            if ctx.bounds is not None and not _narrow(ctx, plan, need, out, spatial):
                continue
            mask = evaluate(plan.where, ctx)
            alt = _altloc_mask(ctx, plan.altloc)
            if alt is not None:
                mask &= alt
            rows = ctx.global_rows(mask)
            if rows.size and (stop_at_first or not late):
                yield c, rows, ctx
                if stop_at_first:
                    return
            elif rows.size:
                hits.append((c, rows, ctx))
        if hits:  # one query for the output groups of every entry of the chunk that matched
            want = [{g: ctx.blocks[g] for g in late if g in ctx.blocks and g not in ctx.sources} for _, _, ctx in hits]
            for (_, _, ctx), srcs in zip(hits, open_groups(backend, want, late), strict=True):
                ctx.sources.update(srcs)
            yield from hits
            hits.clear()


def _narrow(ctx: EntryContext, plan: Plan, need: list[str], out: list[str], spatial: bool) -> bool:
    """Scope a chunked entry to the zones its zone maps allow and prefetch their chunks; False: none can match."""
    if out or spatial:
        ctx.open(set(out) | ({"xyz"} if spatial else set()))  # manifests: the zone maps of every group
    scope = scope_of(plan.where, ctx)
    if scope is None or scope.all():
        return True  # nothing to prune: columns are fetched as predicates ask for them
    if not scope.any():
        return False
    ctx.restrict(np.flatnonzero(scope))
    small = ctx.n <= PREFETCH_ROWS
    main = _groups(_outside_of(plan.where), plan.altloc) & set(need)  # a ligand's own columns were read already
    ctx.prefetch(main | (set(out) if small else set()) | ({"xyz"} if spatial and small else set()))
    return True


def _outside_of(node: Node) -> Node:
    """``node`` with the ``of`` selections of ``within … of`` replaced by :class:`All` (their columns
    are read while finding the ligand, not over the scope)."""
    if isinstance(node, Within) and node.of is not None:
        return Within(node.radius, All(), None)
    if isinstance(node, And):
        return And(tuple(_outside_of(i) for i in node.items))
    if isinstance(node, Or):
        return Or(tuple(_outside_of(i) for i in node.items))
    if isinstance(node, Not):
        return Not(_outside_of(node.item))
    return node


def _leaves(node: Node) -> list[Node]:
    if isinstance(node, (And, Or)):
        return [x for i in node.items for x in _leaves(i)]
    if isinstance(node, Within) and node.of is not None:
        return _leaves(node.of)
    return [node]


def _nodes(node: Node) -> list[Node]:
    if isinstance(node, (And, Or)):
        return [node, *(x for i in node.items for x in _nodes(i))]
    if isinstance(node, Not):
        return [node, *_nodes(node.item)]
    if isinstance(node, Within) and node.of is not None:
        return [node, *_nodes(node.of)]
    return [node]
