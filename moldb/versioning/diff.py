"""What changed between two versions of a structure: a pure, vectorised diff.

:func:`diff_structures` takes two atom tables and their categories (as
:class:`~moldb.api.Structure` gives them) and returns a :class:`Diff`. It touches no
storage: ``Store.diff`` reads the two versions and calls it.

Semantics
---------
* **Matching atoms.** An atom is identified by its natural key ``(pdbx_PDB_model_num,
  label_asym_id, auth_seq_id, pdbx_PDB_ins_code, label_atom_id, label_alt_id)``, plus
  ``label_seq_id`` when both tables have it. Key columns missing from either table are
  left out of the key (:attr:`Diff.key` lists those used). Nulls are a value of their own
  (``.`` and ``?`` both count as null). Rows that share a key are paired in file order.
* **Renamed.** A removed and an added atom at the same position — same model, chain,
  ``auth_seq_id``, insertion code and altloc — with the same coordinates (to 1e-3 Å) are
  one *renamed* atom, not an add and a remove. A matched atom whose residue name
  (``label_comp_id``) changed while it did not move is renamed too (it also stays matched).
* **Moved.** Over matched atoms: how many have coordinates that differ as stored, the
  RMSD over all matched atoms and the largest shift (Å).
* **Changed columns.** For each atom column present in both tables, the number of
  matched atoms whose value differs. Values are compared exactly as stored (floats
  included; a null differs from any value, two nulls are equal, NaN equals NaN).
* **Categories.** Added and removed categories; for a changed category its row counts,
  added / removed items, and per item either ``[old, new]`` (single-row categories such as
  ``refine``) or the number of rows that changed (equal row counts) or the number of rows
  added / removed (row counts differ). The ``atom_site`` category (untyped atom items) is
  compared as atom columns instead.
* **TLS.** Rows of ``pdbx_refine_tls`` and ``pdbx_refine_tls_group`` are compared by
  ``id``: ids added, removed, and changed items per id as ``[old, new]``.

Lists of atoms are capped at :data:`LIST_CAP` entries; counts are always exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from moldb.schema.parsed import MASK_DOT, MASK_QUESTION, Category

__all__ = ["KEY_COLUMNS", "LIST_CAP", "TLS_CATEGORIES", "Diff", "diff_structures"]

#: Natural key of an atom (``label_seq_id`` is added when both tables have it).
KEY_COLUMNS: tuple[str, ...] = ("pdbx_PDB_model_num", "label_asym_id", "auth_seq_id", "pdbx_PDB_ins_code",
                                "label_atom_id", "label_alt_id")
#: Position of an atom, for "renamed" (the natural key without the atom name).
POSITION_COLUMNS: tuple[str, ...] = ("pdbx_PDB_model_num", "label_asym_id", "auth_seq_id", "pdbx_PDB_ins_code",
                                     "label_alt_id")
XYZ = ("Cartn_x", "Cartn_y", "Cartn_z")
#: Categories whose rows are compared by ``id``.
TLS_CATEGORIES: tuple[str, ...] = ("pdbx_refine_tls", "pdbx_refine_tls_group")
#: At most this many atoms are listed per kind of change.
LIST_CAP = 50
RENAME_TOL = 1e-3  # Å
_DESCRIBE = {"model": "pdbx_PDB_model_num", "chain": "label_asym_id", "seq": "auth_seq_id",
             "ins": "pdbx_PDB_ins_code", "alt": "label_alt_id", "residue": "label_comp_id",
             "atom": "label_atom_id", "id": "id"}
_DENSE_LIMIT = 1 << 62


@dataclass
class Diff:
    """What changed from version ``a`` to version ``b``; :meth:`as_dict` for JSON.

    Attributes
    ----------
    n_atoms : tuple of int
        Atom rows in ``a`` and in ``b``.
    key : list of str
        Columns of the natural key used to match atoms.
    matched, added, removed, renamed, moved : int
        Atom counts (see the module docstring).
    rmsd, max_shift : float
        Over matched atoms, Å (0.0 when nothing matched).
    changed_columns : dict[str, int]
        Column → matched atoms whose value changed (columns with no change left out).
    added_atoms, removed_atoms, renamed_atoms : list of dict
        The first :data:`LIST_CAP` atoms of each kind.
    categories_changed : dict[str, dict]
        Category name → what changed (see the module docstring).
    tls_changed : dict[str, dict]
        TLS category → ids ``added``, ``removed`` and ``changed`` (id → item → [old, new]).
    a, b : dict
        Labels of the two sides (entry, version, timestamp) when known.
    """

    n_atoms: tuple[int, int]
    key: list[str]
    matched: int
    added: int
    removed: int
    renamed: int
    moved: int
    rmsd: float
    max_shift: float
    changed_columns: dict[str, int] = field(default_factory=dict)
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    added_atoms: list[dict[str, Any]] = field(default_factory=list)
    removed_atoms: list[dict[str, Any]] = field(default_factory=list)
    renamed_atoms: list[dict[str, Any]] = field(default_factory=list)
    categories_added: list[str] = field(default_factory=list)
    categories_removed: list[str] = field(default_factory=list)
    categories_changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    tls_changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    a: dict[str, Any] = field(default_factory=dict)
    b: dict[str, Any] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        """True when nothing at all changed."""
        return not (self.added or self.removed or self.renamed or self.moved or self.changed_columns
                    or self.columns_added or self.columns_removed or self.categories_added
                    or self.categories_removed or self.categories_changed or self.n_atoms[0] != self.n_atoms[1])

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "a": self.a, "b": self.b, "identical": self.identical,
            "atoms": {
                "a": self.n_atoms[0], "b": self.n_atoms[1], "key": list(self.key), "matched": self.matched,
                "added": {"count": self.added, "atoms": self.added_atoms},
                "removed": {"count": self.removed, "atoms": self.removed_atoms},
                "renamed": {"count": self.renamed, "atoms": self.renamed_atoms},
                "moved": {"count": self.moved, "rmsd": self.rmsd, "max_shift": self.max_shift},
                "changed_columns": dict(self.changed_columns),
                "columns_added": list(self.columns_added), "columns_removed": list(self.columns_removed),
            },
            "categories": {"added": list(self.categories_added), "removed": list(self.categories_removed),
                           "changed": self.categories_changed},
            "tls": self.tls_changed,
        }


# -- column codes -----------------------------------------------------------------------------------------
def _flat(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        if pa.types.is_dictionary(col.type) and col.num_chunks > 1:
            col = col.unify_dictionaries()
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _is_textual(t: pa.DataType) -> bool:
    return (pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_binary(t) or pa.types.is_large_binary(t))


def _dict_codes(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Indices (-1 for null) and dictionary of a text column."""
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    idx = pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    values = arr.dictionary
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    return idx, values


def _text_pair(a: pa.Array, b: pa.Array) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes of two text columns in one shared vocabulary: 0 is null, values from 1."""
    ia, da = _dict_codes(a)
    ib, db = _dict_codes(b)
    vocab = pc.unique(pa.concat_arrays([da.cast(pa.large_string()), db.cast(pa.large_string())]))
    ma = np.append(pc.fill_null(pc.index_in(da.cast(pa.large_string()), vocab), -1).to_numpy(zero_copy_only=False)
                   .astype(np.int64) + 1, 0)
    mb = np.append(pc.fill_null(pc.index_in(db.cast(pa.large_string()), vocab), -1).to_numpy(zero_copy_only=False)
                   .astype(np.int64) + 1, 0)
    return ma[ia], mb[ib], len(vocab) + 1  # index -1 (null) picks the trailing 0


def _numeric(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Values (nulls filled) and validity of a numeric column."""
    valid = (np.ones(len(arr), dtype=bool) if arr.null_count == 0
             else pc.is_valid(arr).to_numpy(zero_copy_only=False))
    filled = arr if arr.null_count == 0 else pc.fill_null(arr, 0)
    return filled.to_numpy(zero_copy_only=False), valid


def _int_pair(a: pa.Array, b: pa.Array) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes of two integer columns: 0 is null, values ``v - min + 1``."""
    va, ka = _numeric(a)
    vb, kb = _numeric(b)
    va = va.astype(np.int64, copy=False)
    vb = vb.astype(np.int64, copy=False)
    both = np.concatenate([va[ka], vb[kb]])
    if both.size == 0:
        return np.zeros(len(va), np.int64), np.zeros(len(vb), np.int64), 1
    lo, hi = int(both.min()), int(both.max())
    if hi - lo < (1 << 40):
        ca = np.where(ka, va - lo + 1, 0)
        cb = np.where(kb, vb - lo + 1, 0)
        return ca, cb, hi - lo + 2
    uniq, inv = np.unique(both, return_inverse=True)  # very wide range: densify
    ca = np.zeros(len(va), np.int64)
    cb = np.zeros(len(vb), np.int64)
    ca[ka] = inv[: int(ka.sum())] + 1
    cb[kb] = inv[int(ka.sum()):] + 1
    return ca, cb, len(uniq) + 1


def _pair_codes(a: pa.Array, b: pa.Array) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes of one column of ``a`` and ``b`` on a shared scale (equal code ⇔ equal value)."""
    if pa.types.is_null(a.type) or pa.types.is_null(b.type):  # an all-null column without a type
        other = b.type if pa.types.is_null(a.type) else a.type
        typ = pa.string() if pa.types.is_null(other) or pa.types.is_dictionary(other) else other
        a = pa.nulls(len(a), typ) if pa.types.is_null(a.type) else a
        b = pa.nulls(len(b), typ) if pa.types.is_null(b.type) else b
    if _is_textual(a.type) or _is_textual(b.type):
        if not _is_textual(a.type):
            a = a.cast(pa.string())
        if not _is_textual(b.type):
            b = b.cast(pa.string())
        return _text_pair(a, b)
    if pa.types.is_floating(a.type) or pa.types.is_floating(b.type):
        va, ka = _numeric(a)
        vb, kb = _numeric(b)
        uniq, inv = np.unique(np.concatenate([va.astype(np.float64), vb.astype(np.float64)]), return_inverse=True)
        inv = inv.reshape(-1) + 1
        return np.where(ka, inv[: len(va)], 0), np.where(kb, inv[len(va):], 0), len(uniq) + 1
    return _int_pair(a, b)


def _combine(parts: list[tuple[np.ndarray, np.ndarray, int]], n_a: int, n_b: int) -> tuple[np.ndarray, np.ndarray]:
    """Mixed-radix combination of per-column codes into one int64 key per row (densified on overflow)."""
    ka = np.zeros(n_a, np.int64)
    kb = np.zeros(n_b, np.int64)
    card = 1
    for ca, cb, c in parts:
        if card * c >= _DENSE_LIMIT:
            uniq, inv = np.unique(np.concatenate([ka, kb]), return_inverse=True)
            inv = inv.reshape(-1).astype(np.int64)
            ka, kb, card = inv[:n_a], inv[n_a:], len(uniq)
        ka = ka * c + ca
        kb = kb * c + cb
        card *= c
    return ka, kb


def _occurrence(key: np.ndarray) -> np.ndarray:
    """0 for the first row with its key, 1 for the second … (file order)."""
    order = np.argsort(key, kind="stable")
    ks = key[order]
    n = len(key)
    starts = np.ones(n, dtype=bool)
    starts[1:] = ks[1:] != ks[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    occ = np.empty(n, np.int64)
    occ[order] = np.arange(n) - first
    return occ


def _match(ka: np.ndarray, kb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs ``(ia, ib)`` with equal keys; repeated keys pair in file order."""
    if len(ka) == 0 or len(kb) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    oa, ob = _occurrence(ka), _occurrence(kb)
    if oa.max() > 0 or ob.max() > 0:
        ka, kb = _with_occ(ka, kb, oa, ob)
    _, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    order = np.argsort(ia, kind="stable")
    return ia[order].astype(np.int64), ib[order].astype(np.int64)


def _with_occ(ka: np.ndarray, kb: np.ndarray, oa: np.ndarray, ob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys made unique by appending each row's occurrence number."""
    _, inv = np.unique(np.concatenate([ka, kb]), return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    m = int(max(oa.max(), ob.max())) + 1
    return inv[: len(ka)] * m + oa, inv[len(ka):] * m + ob


# -- atoms ------------------------------------------------------------------------------------------------
def _describe(table: pa.Table, rows: np.ndarray) -> list[dict[str, Any]]:
    cols = {k: c for k, c in _DESCRIBE.items() if c in table.column_names}
    if len(rows) == 0 or not cols:
        return []
    sub = table.select(list(cols.values())).take(pa.array(rows, type=pa.int64())).to_pylist()
    return [{k: r[c] for k, c in cols.items()} for r in sub]


def _xyz(table: pa.Table) -> np.ndarray | None:
    if not all(c in table.column_names for c in XYZ):
        return None
    out = np.empty((table.num_rows, 3), np.float64)
    for j, c in enumerate(XYZ):
        arr = _flat(table.column(c))
        if not pa.types.is_floating(arr.type):  # kept as verbatim text by the reader
            arr = pc.cast(arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr, pa.float64())
        v, ok = _numeric(arr)
        out[:, j] = np.where(ok, v.astype(np.float64), np.nan)
    return out


def _column_changes(a: pa.Array, b: pa.Array, ia: np.ndarray, ib: np.ndarray,
                    codes: tuple[np.ndarray, np.ndarray, int] | None) -> int:
    if codes is not None:
        return int(np.count_nonzero(codes[0][ia] != codes[1][ib]))
    numeric = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in (a.type, b.type))
    if not numeric:
        ca, cb, _ = _pair_codes(a, b)
        return int(np.count_nonzero(ca[ia] != cb[ib]))
    va, ka = _numeric(a)
    vb, kb = _numeric(b)
    x, y = va[ia], vb[ib]
    same = x == y
    if pa.types.is_floating(a.type) or pa.types.is_floating(b.type):
        same |= np.isnan(x) & np.isnan(y)
    oka, okb = ka[ia], kb[ib]
    changed = (oka != okb) | (oka & okb & ~same)
    return int(np.count_nonzero(changed))


def _diff_atoms(a: pa.Table, b: pa.Table, out: dict[str, Any]) -> None:
    n_a, n_b = a.num_rows, b.num_rows
    common = [c for c in a.column_names if c in b.column_names]
    key = [c for c in KEY_COLUMNS if c in common]
    if "label_seq_id" in common:
        key.insert(3, "label_seq_id")
    codes = {c: _pair_codes(_flat(a.column(c)), _flat(b.column(c))) for c in key}
    ka, kb = _combine([codes[c] for c in key], n_a, n_b)
    ia, ib = _match(ka, kb)
    in_a = np.zeros(n_a, bool)
    in_a[ia] = True
    in_b = np.zeros(n_b, bool)
    in_b[ib] = True
    ua, ub = np.flatnonzero(~in_a), np.flatnonzero(~in_b)

    xa, xb = _xyz(a), _xyz(b)
    renamed_pairs: list[tuple[np.ndarray, np.ndarray]] = []
    if xa is not None and xb is not None:
        # removed + added at the same position and coordinates: renamed
        if len(ua) and len(ub):
            pos = [c for c in POSITION_COLUMNS if c in codes]
            parts = [(codes[c][0][ua], codes[c][1][ub], codes[c][2]) for c in pos]
            for j in range(3):
                qa = np.rint(xa[ua, j] / RENAME_TOL)
                qb = np.rint(xb[ub, j] / RENAME_TOL)
                both = np.concatenate([qa, qb])
                finite = both[np.isfinite(both)]
                lo = float(finite.min()) if finite.size else 0.0
                ca = np.where(np.isfinite(qa), qa - lo + 1, 0).astype(np.int64)
                cb = np.where(np.isfinite(qb), qb - lo + 1, 0).astype(np.int64)
                parts.append((ca, cb, int(max(ca.max(initial=0), cb.max(initial=0))) + 1))
            pa_, pb_ = _combine(parts, len(ua), len(ub))
            ra, rb = _match(pa_, pb_)
            ok = np.all(np.abs(xa[ua[ra]] - xb[ub[rb]]) <= RENAME_TOL + 1e-9, axis=1)
            ra, rb = ua[ra[ok]], ub[rb[ok]]
            renamed_pairs.append((ra, rb))
            keep_a = np.ones(len(ua), bool)
            keep_a[np.searchsorted(ua, ra)] = False
            keep_b = np.ones(len(ub), bool)
            keep_b[np.searchsorted(ub, rb)] = False
            ua, ub = ua[keep_a], ub[keep_b]
        d = xb[ib] - xa[ia]
        same = (xa[ia] == xb[ib]) | (np.isnan(xa[ia]) & np.isnan(xb[ib]))
        moved = int(np.count_nonzero(~np.all(same, axis=1)))
        shift = np.sqrt(np.nansum(d * d, axis=1))
        rmsd = float(np.sqrt(np.mean(shift * shift))) if len(shift) else 0.0
        max_shift = float(shift.max()) if len(shift) else 0.0
        # matched atoms whose residue name changed in place: renamed as well
        if "label_comp_id" in common and len(ia):
            cc = _pair_codes(_flat(a.column("label_comp_id")), _flat(b.column("label_comp_id")))
            codes["label_comp_id"] = cc
            sel = (cc[0][ia] != cc[1][ib]) & np.all(np.abs(d) <= RENAME_TOL + 1e-9, axis=1)
            if sel.any():
                renamed_pairs.append((ia[sel], ib[sel]))
    else:
        moved, rmsd, max_shift = 0, 0.0, 0.0

    changed: dict[str, int] = {}
    for c in common:
        n = _column_changes(_flat(a.column(c)), _flat(b.column(c)), ia, ib, codes.get(c))
        if n:
            changed[c] = n

    ren_a = np.concatenate([p[0] for p in renamed_pairs]) if renamed_pairs else np.zeros(0, np.int64)
    ren_b = np.concatenate([p[1] for p in renamed_pairs]) if renamed_pairs else np.zeros(0, np.int64)
    order = np.argsort(ren_a, kind="stable")
    ren_a, ren_b = ren_a[order], ren_b[order]
    old = _describe(a, ren_a[:LIST_CAP])
    new = _describe(b, ren_b[:LIST_CAP])
    renamed_list: list[dict[str, Any]] = []
    for o, nw in zip(old, new, strict=True):
        where: dict[str, Any] = {k: o[k] for k in ("model", "chain", "seq", "ins", "alt") if k in o}
        renamed_list.append({**where, "old": {k: o[k] for k in ("residue", "atom", "id") if k in o},
                             "new": {k: nw[k] for k in ("residue", "atom", "id") if k in nw}})
    out.update(
        n_atoms=(n_a, n_b), key=key, matched=len(ia), added=len(ub), removed=len(ua), renamed=len(ren_a),
        moved=moved, rmsd=rmsd, max_shift=max_shift, changed_columns=changed,
        columns_added=[c for c in b.column_names if c not in a.column_names],
        columns_removed=[c for c in a.column_names if c not in b.column_names],
        added_atoms=_describe(b, ub[:LIST_CAP]), removed_atoms=_describe(a, ua[:LIST_CAP]),
        renamed_atoms=renamed_list,
    )


# -- categories -------------------------------------------------------------------------------------------
def _text_values(cat: Category, item: str) -> list[str | None]:
    """Values of one item with the null kind spelt out (``.`` / ``?``)."""
    vals = cat.table.column(item).cast(pa.string()).to_pylist()
    mask = cat.masks.get(item)
    if mask is not None:
        for i, m in enumerate(mask):
            if m == MASK_DOT:
                vals[i] = "."
            elif m == MASK_QUESTION:
                vals[i] = "?"
    return vals


def _same_item(ca: Category, cb: Category, item: str) -> bool:
    x = ca.table.column(item).cast(pa.string())
    y = cb.table.column(item).cast(pa.string())
    if not x.equals(y):
        return False
    ma, mb = ca.masks.get(item), cb.masks.get(item)
    if ma is None or mb is None:
        return (ma is None or not np.any(ma)) and (mb is None or not np.any(mb))
    return bool(np.array_equal(ma, mb))


def _rows_changed(ca: Category, cb: Category, item: str) -> int:
    x = np.array(_text_values(ca, item), dtype=object)
    y = np.array(_text_values(cb, item), dtype=object)
    return int(np.count_nonzero(x != y))


def _row_tuples(cat: Category, items: list[str]) -> list[tuple[str | None, ...]]:
    cols = [_text_values(cat, i) for i in items]
    return list(zip(*cols, strict=True)) if cols else [() for _ in range(cat.table.num_rows)]


def _diff_category(ca: Category, cb: Category) -> dict[str, Any] | None:
    ia, ib = ca.items, cb.items
    common = [i for i in ia if i in ib]
    rows = (ca.table.num_rows, cb.table.num_rows)
    items_added = [i for i in ib if i not in ia]
    items_removed = [i for i in ia if i not in ib]
    differing = [i for i in common if rows[0] != rows[1] or not _same_item(ca, cb, i)]
    if not (items_added or items_removed or differing or rows[0] != rows[1]):
        return None
    out: dict[str, Any] = {"rows": list(rows), "items_added": items_added, "items_removed": items_removed}
    if rows == (1, 1):
        out["values"] = {i: [_text_values(ca, i)[0], _text_values(cb, i)[0]] for i in differing}
    elif rows[0] == rows[1]:
        out["items_changed"] = {i: n for i in differing if (n := _rows_changed(ca, cb, i))}
    else:
        ta, tb = Counter(_row_tuples(ca, common)), Counter(_row_tuples(cb, common))
        out["rows_added"] = sum((tb - ta).values())
        out["rows_removed"] = sum((ta - tb).values())
    return out


def _by_id(cat: Category) -> dict[str, dict[str, str | None]]:
    """Rows keyed by their ``id`` (by row number when the category has no ``id``)."""
    cols = {c: _text_values(cat, c) for c in cat.items}
    ids = cols["id"] if "id" in cols else [str(i + 1) for i in range(cat.table.num_rows)]
    return {str(ids[i]): {c: v[i] for c, v in cols.items()} for i in range(cat.table.num_rows)}


def _diff_tls(ca: Category | None, cb: Category | None) -> dict[str, Any] | None:
    ra = _by_id(ca) if ca is not None else {}
    rb = _by_id(cb) if cb is not None else {}
    added = [i for i in rb if i not in ra]
    removed = [i for i in ra if i not in rb]
    changed: dict[str, dict[str, list[str | None]]] = {}
    for i in ra:
        if i in rb and ra[i] != rb[i]:
            keys = list(dict.fromkeys([*ra[i], *rb[i]]))
            changed[i] = {k: [ra[i].get(k), rb[i].get(k)] for k in keys if ra[i].get(k) != rb[i].get(k)}
    if not (added or removed or changed):
        return None
    return {"added": added, "removed": removed, "changed": changed}


def _diff_categories(a: list[Category], b: list[Category], out: dict[str, Any]) -> None:
    skip = {"atom_site"}
    da = {c.name: c for c in a if c.name not in skip}
    db = {c.name: c for c in b if c.name not in skip}
    changed: dict[str, dict[str, Any]] = {}
    for name, ca in da.items():
        if name in db and (d := _diff_category(ca, db[name])) is not None:
            changed[name] = d
    tls: dict[str, dict[str, Any]] = {}
    for name in TLS_CATEGORIES:
        if (name in da or name in db) and (t := _diff_tls(da.get(name), db.get(name))) is not None:
            tls[name] = t
    out.update(categories_added=[n for n in db if n not in da], categories_removed=[n for n in da if n not in db],
               categories_changed=changed, tls_changed=tls)


def diff_structures(a_atoms: pa.Table, a_categories: list[Category], b_atoms: pa.Table,
                    b_categories: list[Category]) -> Diff:
    """Compare two versions of a structure (``a`` → ``b``).

    Parameters
    ----------
    a_atoms, b_atoms : pyarrow.Table
        Atom tables (``Structure.atoms``), one row per ``_atom_site`` row.
    a_categories, b_categories : list of Category
        Their other categories (``Structure.categories``).

    Returns
    -------
    Diff
        Counts and (capped) lists of atoms added, removed, renamed and moved, changed
        atom columns, changed categories and TLS groups; see the module docstring.
    """
    out: dict[str, Any] = {}
    _diff_atoms(a_atoms, b_atoms, out)
    _diff_categories(a_categories, b_categories, out)
    return Diff(**out)
