"""Bonds of a structure from component templates, polymer links and ``struct_conn``.

Pure numpy/pyarrow: inputs are an atom table (``_atom_site`` columns) and
templates, output an Arrow table with one row per bond:

==========  =======  =========================================================
column      type     meaning
==========  =======  =========================================================
atom_1      int64    row of the first atom in the atom table
atom_2      int64    row of the second atom
order       int8     1 single, 2 double, 3 triple, 4 quadruple, 0 unknown/none
aromatic    bool     aromatic flag of the template bond
kind        string   ``intra`` (template), ``polymer`` (peptide C–N or nucleic
                     O3'–P between consecutive residues), or the ``struct_conn``
                     ``conn_type_id`` (``covale``, ``disulf``, ``metalc`` ...)
==========  =======  =========================================================

Atoms carrying alternate locations bond only to atoms of the same altloc or
with none, so every conformer gets its own complete set of bonds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["BOND_SCHEMA", "compute_bonds"]

BOND_SCHEMA = pa.schema([("atom_1", pa.int64()), ("atom_2", pa.int64()), ("order", pa.int8()),
                         ("aromatic", pa.bool_()), ("kind", pa.string())])
_ORDERS = {"sing": 1, "doub": 2, "trip": 3, "quad": 4}


def _codes(table: pa.Table, name: str) -> tuple[np.ndarray, list[str]]:
    if name not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64), [""]
    col = table.column(name).combine_chunks()
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col.cast(pa.string()))
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    idx = col.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) + 1
    idx[nulls] = 0
    return idx, [""] + [str(v) for v in col.dictionary.to_pylist()]


def _ints(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64)
    return table.column(name).combine_chunks().fill_null(-(2**40)).to_numpy(zero_copy_only=False).astype(np.int64)


class _Lookup:
    """Rows by (residue, atom name) key, altloc-aware pairing."""

    def __init__(self, res: np.ndarray, name: np.ndarray, alt: np.ndarray, n_names: int) -> None:
        keys = res * n_names + name
        self.order = np.argsort(keys, kind="stable")
        self.sorted = keys[self.order]
        self.alt = alt

    def pairs(self, k1: np.ndarray, k2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row pairs for key pairs; returns (rows_1, rows_2, index of the key pair)."""
        lo1, hi1 = np.searchsorted(self.sorted, k1, "left"), np.searchsorted(self.sorted, k1, "right")
        lo2, hi2 = np.searchsorted(self.sorted, k2, "left"), np.searchsorted(self.sorted, k2, "right")
        c1, c2 = hi1 - lo1, hi2 - lo2
        single = (c1 == 1) & (c2 == 1)
        r1 = [self.order[lo1[single]]]
        r2 = [self.order[lo2[single]]]
        src = [np.flatnonzero(single)]
        for i in np.flatnonzero((c1 > 0) & (c2 > 0) & ~single):  # altloc conformers: few
            a = self.order[lo1[i]:hi1[i]]
            b = self.order[lo2[i]:hi2[i]]
            aa = np.repeat(a, len(b))
            bb = np.tile(b, len(a))
            ok = (self.alt[aa] == self.alt[bb]) | (self.alt[aa] == 0) | (self.alt[bb] == 0)
            r1.append(aa[ok])
            r2.append(bb[ok])
            src.append(np.full(int(ok.sum()), i))
        return np.concatenate(r1), np.concatenate(r2), np.concatenate(src)


def compute_bonds(
    atoms: pa.Table,
    templates: Mapping[str, tuple[list[str], np.ndarray]],
    struct_conn: pa.Table | None = None,
) -> pa.Table:
    """Bonds of ``atoms``.

    Parameters
    ----------
    atoms : pyarrow.Table
        ``_atom_site`` columns (``label_atom_id``, ``label_comp_id``,
        ``label_asym_id``, ``auth_seq_id`` ... as in :attr:`Structure.atoms`).
    templates : mapping
        comp_id → (atom names, ``int16`` bonds array ``(n, 4)``: index 1, index 2,
        order, aromatic).
    struct_conn : pyarrow.Table, optional
        The ``struct_conn`` category (strings).

    Returns
    -------
    pyarrow.Table
        :data:`BOND_SCHEMA`, sorted by (atom_1, atom_2).
    """
    n = atoms.num_rows
    if n == 0:
        return BOND_SCHEMA.empty_table()
    model = _ints(atoms, "pdbx_PDB_model_num")
    asym, _ = _codes(atoms, "label_asym_id")
    seq = _ints(atoms, "auth_seq_id")
    ins, _ = _codes(atoms, "pdbx_PDB_ins_code")
    comp, comp_names = _codes(atoms, "label_comp_id")
    name, names = _codes(atoms, "label_atom_id")
    alt, _ = _codes(atoms, "label_alt_id")
    label_seq = _ints(atoms, "label_seq_id")
    start = np.r_[True, (model[1:] != model[:-1]) | (asym[1:] != asym[:-1]) | (seq[1:] != seq[:-1])
                  | (ins[1:] != ins[:-1]) | (comp[1:] != comp[:-1])]
    res = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    lookup = _Lookup(res, name, alt, len(names))
    name_code = {nm: i for i, nm in enumerate(names)}
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]] = []

    # intra-residue bonds from templates, expanded over residue instances without a Python loop
    per_comp = []
    for c, cname in enumerate(comp_names):
        tpl = templates.get(cname)
        if c == 0 or tpl is None or len(tpl[1]) == 0:
            per_comp.append(np.zeros((0, 4), dtype=np.int64))
            continue
        tnames, tb = tpl
        codes = np.array([name_code.get(x, -1) for x in tnames], dtype=np.int64)
        b = tb.astype(np.int64)
        mapped = np.stack([codes[b[:, 0]], codes[b[:, 1]], b[:, 2], b[:, 3]], axis=1)
        per_comp.append(mapped[(mapped[:, 0] >= 0) & (mapped[:, 1] >= 0)])
    counts_c = np.array([len(p) for p in per_comp], dtype=np.int64)
    starts_c = np.r_[0, np.cumsum(counts_c)[:-1]]
    all_b = np.concatenate(per_comp) if counts_c.sum() else np.zeros((0, 4), dtype=np.int64)
    res_comp = comp[first]
    counts = counts_c[res_comp]
    if counts.sum():
        r_idx = np.repeat(np.arange(len(first)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        b_idx = np.repeat(starts_c[res_comp], counts) + within
        bb = all_b[b_idx]
        k1 = r_idx * len(names) + bb[:, 0]
        k2 = r_idx * len(names) + bb[:, 1]
        a1, a2, src = lookup.pairs(k1, k2)
        parts.append((a1, a2, bb[src, 2], bb[src, 3] > 0, "intra"))

    # polymer links between consecutive residues of one chain: peptide C-N, nucleic O3'-P
    nxt = np.arange(len(first) - 1)
    linked = ((model[first[1:]] == model[first[:-1]]) & (asym[first[1:]] == asym[first[:-1]])
              & (label_seq[first[:-1]] >= 0) & (label_seq[first[1:]] == label_seq[first[:-1]] + 1))
    for x, y in (("C", "N"), ("O3'", "P")):
        if x in name_code and y in name_code:
            r = nxt[linked]
            a1, a2, _ = lookup.pairs(r * len(names) + name_code[x], (r + 1) * len(names) + name_code[y])
            parts.append((a1, a2, np.ones(len(a1), dtype=np.int64), np.zeros(len(a1), dtype=bool), "polymer"))

    if struct_conn is not None and struct_conn.num_rows:
        parts.extend(_struct_conn(struct_conn, atoms, asym, seq, name, alt, model))
    if not parts:
        return BOND_SCHEMA.empty_table()
    a1 = np.concatenate([p[0] for p in parts])
    a2 = np.concatenate([p[1] for p in parts])
    lo, hi = np.minimum(a1, a2), np.maximum(a1, a2)
    order = np.concatenate([p[2] for p in parts]).astype(np.int8)
    arom = np.concatenate([p[3] for p in parts])
    kind = np.concatenate([np.full(len(p[0]), p[4], dtype=object) for p in parts])
    srt = np.lexsort((hi, lo))
    return pa.table({"atom_1": lo[srt], "atom_2": hi[srt], "order": order[srt], "aromatic": arom[srt],
                     "kind": pa.array(kind[srt], type=pa.string())}, schema=BOND_SCHEMA)


_Part = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]


def _struct_conn(conn: pa.Table, atoms: pa.Table, asym: np.ndarray, seq: np.ndarray, name: np.ndarray,
                 alt: np.ndarray, model: np.ndarray) -> list[_Part]:
    _, asym_names = _codes(atoms, "label_asym_id")
    _, atom_names = _codes(atoms, "label_atom_id")
    _, alt_names = _codes(atoms, "label_alt_id")
    a_code = {v: i for i, v in enumerate(asym_names)}
    n_code = {v: i for i, v in enumerate(atom_names)}
    l_code = {v: i for i, v in enumerate(alt_names)}
    col = {c: conn.column(c).to_pylist() for c in conn.column_names}

    def side(i: int, p: str) -> np.ndarray:
        ch = a_code.get(col.get(f"ptnr{p}_label_asym_id", [None] * conn.num_rows)[i] or "", -1)
        nm = n_code.get(col.get(f"ptnr{p}_label_atom_id", [None] * conn.num_rows)[i] or "", -1)
        s = col.get(f"ptnr{p}_auth_seq_id", [None] * conn.num_rows)[i]
        al = col.get(f"pdbx_ptnr{p}_label_alt_id", [None] * conn.num_rows)[i]
        if ch < 0 or nm < 0 or s is None:
            return np.zeros(0, dtype=np.int64)
        try:
            sel = (asym == ch) & (name == nm) & (seq == int(s))
        except ValueError:
            return np.zeros(0, dtype=np.int64)
        if al:
            sel &= alt == l_code.get(al, -1)
        return np.flatnonzero(sel)

    out = []
    for i in range(conn.num_rows):
        r1, r2 = side(i, "1"), side(i, "2")
        if not len(r1) or not len(r2):
            continue
        aa = np.repeat(r1, len(r2))
        bb = np.tile(r2, len(r1))
        ok = model[aa] == model[bb]
        kind = (col.get("conn_type_id") or [None] * conn.num_rows)[i] or "covale"
        order = _ORDERS.get(str((col.get("pdbx_value_order") or [None] * conn.num_rows)[i]).lower(),
                            1 if kind in ("covale", "disulf") else 0)
        out.append((aa[ok], bb[ok], np.full(int(ok.sum()), order), np.zeros(int(ok.sum()), dtype=bool), kind))
    return out
