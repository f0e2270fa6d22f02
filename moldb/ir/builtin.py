"""Built-in groupings and descriptors derived from what a file already carries (pure numpy/Arrow).

Groupings: ``chain`` (label_asym_id), ``residue`` (chain + auth_seq_id + insertion
code), ``entity``, ``molecule_type`` (polymer / ligand / water / branched),
``altloc``, ``model`` (multi-model entries) and ``tls`` (from
``_pdbx_refine_tls_group`` in any of the three selection dialects).
Descriptors: ``tls`` (TLS tensors), ``iadp`` (B column), ``aadp`` (U columns),
``altloc`` (Regime 1 states) and ``ensemble`` (NMR models on sample axis ``model``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from moldb.ir.descriptors import TLS, AltlocStates, AnisotropicADP, Ensemble, IsotropicADP
from moldb.ir.model import Descriptor, Grouping, Provenance
from moldb.ir.tls_select import AtomView, SelectionError, range_mask, selection_mask

__all__ = ["Membership", "builtin_descriptors", "builtin_groupings", "factorize"]

_NULL_INT = -(2**62)
_WATER = {"HOH", "WAT", "DOD", "H2O"}


@dataclass
class Membership:
    """Bipartite membership: ``group[i]`` (index into the grouping's groups) contains atom ``rows[i]``."""

    group: np.ndarray
    rows: np.ndarray
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)


def _strs(atoms: pa.Table, name: str) -> np.ndarray:
    if name not in atoms.column_names:
        return np.full(atoms.num_rows, "", dtype=object)
    col = atoms.column(name).cast(pa.string()).fill_null("")
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)


def _ints(atoms: pa.Table, name: str) -> np.ndarray:
    if name not in atoms.column_names:
        return np.full(atoms.num_rows, _NULL_INT, dtype=np.int64)
    return np.asarray(atoms.column(name).cast(pa.int64()).fill_null(_NULL_INT).to_numpy(), dtype=np.int64)


def _codes(values: np.ndarray) -> np.ndarray:
    """Dense int codes of any 1-d array (order of the sorted unique values)."""
    return np.unique(values, return_inverse=True)[1].astype(np.int64).ravel()


def _col_codes(atoms: pa.Table, name: str) -> np.ndarray:
    """Int codes of a column by hashing (Arrow's dictionary), not sorting; nulls share one code."""
    if name not in atoms.column_names:
        return np.zeros(atoms.num_rows, dtype=np.int32)
    col = atoms.column(name).combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    return np.asarray(col.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32) + 1


def _labels(atoms: pa.Table, name: str, rows: np.ndarray) -> list[str]:
    """Values of column ``name`` at ``rows`` as strings ('' for null)."""
    if name not in atoms.column_names:
        return [""] * len(rows)
    col = pc.take(atoms.column(name), pa.array(rows, type=pa.int64())).cast(pa.string()).fill_null("")
    return [str(v) for v in col.to_pylist()]


def factorize(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group rows by the combined ``keys``: (code per row in order of first appearance, first row of each).

    Works on runs of equal keys (atoms of a chain or residue are consecutive), so the sort is over
    runs, not atoms: a 2.3M-atom entry needs a few bytes per atom of scratch, not ~100.
    """
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    codes = [k if k.dtype.kind in "iu" else _codes(k) for k in keys]
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for c in codes:
        change[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(change)
    del change
    combined = np.zeros(len(starts), dtype=np.int64)
    for c in codes:
        r = c[starts].astype(np.int64)
        r -= r.min()
        combined = combined * (int(r.max()) + 1) + r
    _, first, inv = np.unique(combined, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    per_row = np.repeat(rank[inv.ravel()].astype(np.int32), np.diff(np.append(starts, n)))
    return per_row, starts[first[order]]


def _partition(name: str, kind: str, codes: np.ndarray, names: list[str], source: str) -> tuple[Grouping,
                                                                                                 Membership]:
    if len(codes) and codes.min() >= 0:  # every atom is a member: no copies of the codes
        rows = np.arange(len(codes), dtype=np.int64)
        member_codes = codes.astype(np.int32, copy=False)
    else:
        rows = np.flatnonzero(codes >= 0)
        member_codes = codes[rows].astype(np.int32, copy=False)
    g = Grouping(name=name, kind=kind, groups=names, n_members=len(rows), builtin=True,
                 provenance=Provenance(source=source))
    return g, Membership(member_codes, rows)


def atom_view(atoms: pa.Table) -> AtomView:
    """The columns TLS selections need, as numpy arrays."""
    view = {k: _strs(atoms, k) for k in ("auth_asym_id", "label_comp_id", "label_atom_id", "label_alt_id",
                                         "type_symbol")}
    view["auth_seq_id"] = _ints(atoms, "auth_seq_id")
    return view


def _cat_rows(cats: Mapping[str, pa.Table], name: str) -> list[dict[str, str | None]]:
    t = cats.get(name)
    return t.to_pylist() if t is not None else []


def _tls_grouping(atoms: pa.Table, cats: Mapping[str, pa.Table]) -> tuple[Grouping, Membership] | None:
    rows = _cat_rows(cats, "pdbx_refine_tls_group")
    if not rows:
        return None
    view = atom_view(atoms)
    names: list[str] = []
    masks: dict[str, np.ndarray] = {}
    unparsed: list[dict[str, str]] = []
    for r in rows:
        gid = str(r.get("refine_tls_id") or r.get("id") or len(names) + 1)
        if gid not in masks:
            names.append(gid)
            masks[gid] = np.zeros(atoms.num_rows, dtype=bool)
        beg_c, beg_s, end_c, end_s = (r.get(k) for k in ("beg_auth_asym_id", "beg_auth_seq_id",
                                                          "end_auth_asym_id", "end_auth_seq_id"))
        sel = r.get("selection_details") or r.get("selection")
        try:
            if beg_c and beg_s and end_c and end_s:
                masks[gid] |= range_mask(view, beg_c, int(beg_s), end_c, int(end_s))
            elif sel:
                masks[gid] |= selection_mask(view, sel)
            else:
                raise SelectionError("no residue range and no selection string")
        except (SelectionError, ValueError) as exc:
            unparsed.append({"group": gid, "selection": str(sel), "error": str(exc)})
    parts = [(np.full(int(m.sum()), i, dtype=np.int32), np.flatnonzero(m)) for i, m in enumerate(masks.values())]
    group = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
    member = np.concatenate([p[1] for p in parts]).astype(np.int64) if parts else np.zeros(0, np.int64)
    g = Grouping(name="tls", kind="tls", groups=names, n_members=len(member), builtin=True,
                 provenance=Provenance(source="ingest:_pdbx_refine_tls_group"), unparsed=unparsed)
    return g, Membership(group, member)


def builtin_groupings(atoms: pa.Table, cats: Mapping[str, pa.Table]) -> Iterator[tuple[Grouping, Membership]]:
    """Every built-in grouping of an entry (atoms table + categories by name), one at a time.

    A generator, so a caller that packs each membership as it comes holds one grouping's
    arrays at a time (each is 12 bytes per atom).
    """
    asym = _col_codes(atoms, "label_asym_id")
    codes, first = factorize(asym)
    yield _partition("chain", "chain", codes, _labels(atoms, "label_asym_id", first), "ingest:label_asym_id")
    seq, ins = _ints(atoms, "auth_seq_id"), _col_codes(atoms, "pdbx_PDB_ins_code")
    codes, first = factorize(asym, seq, ins)
    names = [f"{a}/{s}{i}" for a, s, i in zip(_labels(atoms, "label_asym_id", first), seq[first].tolist(),
                                               _labels(atoms, "pdbx_PDB_ins_code", first), strict=True)]
    yield _partition("residue", "residue", codes, names, "ingest:auth_seq_id")
    codes, first = factorize(_col_codes(atoms, "label_entity_id"))
    yield _partition("entity", "entity", codes, _labels(atoms, "label_entity_id", first), "ingest:label_entity_id")
    yield _molecule_type(atoms, cats)
    if "label_alt_id" in atoms.column_names and atoms.column("label_alt_id").null_count < atoms.num_rows:
        alt_col = atoms.column("label_alt_id").cast(pa.string())
        states = sorted(v for v in pc.unique(alt_col).to_pylist() if v)
        idx = pc.index_in(alt_col, value_set=pa.array(states, type=pa.string()))
        acodes = np.asarray(idx.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)
        yield _partition("altloc", "altloc", acodes, states, "ingest:label_alt_id")
    model = _ints(atoms, "pdbx_PDB_model_num")
    if len(model) and model.min() != model.max():
        codes, first = factorize(model)
        yield _partition("model", "model", codes, [str(model[i]) for i in first], "ingest:pdbx_PDB_model_num")
    tls = _tls_grouping(atoms, cats)
    if tls is not None:
        yield tls


def _molecule_type(atoms: pa.Table, cats: Mapping[str, pa.Table]) -> tuple[Grouping, Membership]:
    etype = {str(r.get("id")): (r.get("type") or "") for r in _cat_rows(cats, "entity")}
    polymer_seq = _ints(atoms, "label_seq_id") != _NULL_INT
    names = ["polymer", "ligand", "water", "branched"]
    water = np.zeros(atoms.num_rows, dtype=bool)
    if "label_comp_id" in atoms.column_names:
        hit = pc.is_in(atoms.column("label_comp_id").cast(pa.string()), value_set=pa.array(sorted(_WATER)))
        water = np.asarray(hit.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    kinds = np.where(water, 2, np.where(polymer_seq, 0, 1)).astype(np.int32)
    if etype and "label_entity_id" in atoms.column_names:
        col = atoms.column("label_entity_id").combine_chunks()
        if not pa.types.is_dictionary(col.type):
            col = pc.dictionary_encode(col.cast(pa.string()))
        by_type = {"polymer": 0, "non-polymer": 1, "water": 2, "branched": 3}
        per_code = np.array([by_type.get(etype.get(str(v), ""), -1) for v in col.dictionary.to_pylist()] + [-1],
                            dtype=np.int32)
        code = np.asarray(col.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        override = per_code[code]  # code -1 (null entity) picks the trailing -1: keep the guess
        kinds = np.where(override >= 0, override, kinds).astype(np.int32)
    return _partition("molecule_type", "molecule_type", kinds, names, "ingest:_entity.type")


def _f(v: str | None) -> float:
    try:
        return float(v) if v not in (None, "", "?", ".") else math.nan
    except ValueError:
        return math.nan


def _b_includes_tls(cats: Mapping[str, pa.Table]) -> tuple[bool | None, str]:
    refine = _cat_rows(cats, "refine")
    flag = str((refine[0].get("pdbx_TLS_residual_ADP_flag") if refine else None) or "").upper()
    if "RESIDUAL" in flag:
        return False, f"_refine.pdbx_TLS_residual_ADP_flag = {flag!r}"
    soft = " ".join(str(r.get("name") or "") for r in _cat_rows(cats, "software")
                    if "refinement" in str(r.get("classification") or "refinement")).upper()
    for prog in ("PHENIX", "BUSTER"):
        if prog in soft:
            return True, f"refined with {prog} (writes total B)"
    return None, "unknown (no residual flag; refinement program does not settle it)"


def tls_descriptor(cats: Mapping[str, pa.Table]) -> TLS | None:
    """The ``tls`` descriptor from ``_pdbx_refine_tls`` (L: deg² → rad², S: deg·Å → rad·Å)."""
    rows = _cat_rows(cats, "pdbx_refine_tls")
    if not rows:
        return None
    d2r = math.pi / 180.0
    sym = [(1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3)]

    def tensor(r: dict[str, str | None], k: str, symmetric: bool) -> np.ndarray:
        m = np.full((3, 3), np.nan)
        for i, j in (sym if symmetric else [(i, j) for i in (1, 2, 3) for j in (1, 2, 3)]):
            m[i - 1, j - 1] = _f(r.get(f"{k}[{i}][{j}]"))
            if symmetric:
                m[j - 1, i - 1] = m[i - 1, j - 1]
        return m

    b_inc, why = _b_includes_tls(cats)
    return TLS(id="tls", scope="tls", groups=[str(r.get("id")) for r in rows],
               T=np.stack([tensor(r, "T", True) for r in rows]),
               L=np.stack([tensor(r, "L", True) for r in rows]) * d2r**2,
               S=np.stack([tensor(r, "S", False) for r in rows]) * d2r,
               origin=np.array([[_f(r.get(f"origin_{a}")) for a in "xyz"] for r in rows]),
               b_includes_tls=b_inc, attrs={"b_includes_tls_reason": why, "units": "T Å², L rad², S rad·Å"},
               provenance=Provenance(source="ingest:_pdbx_refine_tls"))


def builtin_descriptors(atoms: pa.Table, cats: Mapping[str, pa.Table],
                        residue: Membership | None = None) -> list[Descriptor]:
    """Descriptors an entry's file already carries (see the module docstring)."""
    out: list[Descriptor] = []
    tls = tls_descriptor(cats)
    if tls is not None:
        out.append(tls)
    if "B_iso_or_equiv" in atoms.column_names:
        out.append(IsotropicADP(id="iadp", column_refs={"B": "B_iso_or_equiv"},
                                provenance=Provenance(source="ingest:_atom_site.B_iso_or_equiv")))
    if "U11" in atoms.column_names:
        n = atoms.num_rows - atoms.column("U11").null_count
        if n:
            refs = {k: k for k in ("U11", "U22", "U33", "U12", "U13", "U23")}
            out.append(AnisotropicADP(id="aadp", column_refs=refs, attrs={"n_atoms": n},
                                      provenance=Provenance(source="ingest:_atom_site_anisotrop")))
    alt = _strs(atoms, "label_alt_id")
    rows = np.flatnonzero(alt != "")
    if len(rows):
        states = sorted(set(alt[rows].tolist()))
        lookup = {s: i for i, s in enumerate(states)}
        occ = np.asarray(atoms.column("occupancy").cast(pa.float64()).fill_null(np.nan).to_numpy(), np.float64) \
            if "occupancy" in atoms.column_names else np.full(atoms.num_rows, np.nan)
        group = np.full(atoms.num_rows, -1, dtype=np.int32)
        if residue is not None:
            group[residue.rows] = residue.group
        out.append(AltlocStates(id="altloc", states=states, rows=rows.astype(np.int64),
                                state=np.array([lookup[a] for a in alt[rows]], dtype=np.int32),
                                occupancy=occ[rows], group=group[rows],
                                provenance=Provenance(source="ingest:_atom_site.label_alt_id")))
    model = _ints(atoms, "pdbx_PDB_model_num")
    models = [str(m) for m in pc.unique(pa.array(model)).to_pylist()]
    if len(models) > 1:
        out.append(Ensemble(id="ensemble", states=models, provenance=Provenance(source="ingest:pdbx_PDB_model_num")))
    return out
