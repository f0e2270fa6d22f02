"""Multiscale levels: coarse representations derived from atoms as groupings plus a mapping operator.

A level is a grouping of atom rows (one group per coarse site and model) and a linear
mapping operator ``X_coarse = W · X_atoms`` whose rows are the normalised weights of
each group: ``unweighted`` (1/n per member: the plain centroid) or ``mass`` (atomic
mass / total mass: the centre of mass; masses from the element, gemmi's table).

Levels: ``atoms`` (identity), ``backbone`` (N, CA, C, O of amino acids and the
sugar-phosphate P, OP1, OP2, O5', C5', C4', C3', O3' of nucleotides; identity on those
atoms), ``residue_centroids`` (model, chain, residue number, insertion code),
``chain_centroids`` (model, chain) and ``domain_centroids`` / any grouping (model,
group of that grouping). Pure numpy / Arrow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from moldb.errors import ValidationError

__all__ = ["BACKBONE_ATOMS", "LEVELS", "LevelMap", "atom_masses", "build_level", "centroids"]

LEVELS = ("atoms", "backbone", "residue_centroids", "chain_centroids", "domain_centroids")
BACKBONE_ATOMS = ("N", "CA", "C", "O", "P", "OP1", "OP2", "O5'", "C5'", "C4'", "C3'", "O3'")
WEIGHTINGS = ("unweighted", "mass")


@dataclass
class LevelMap:
    """A level: ``group[i]`` contains atom row ``rows[i]`` with mapping weight ``weights[i]``.

    ``first[g]`` is one member row of group ``g`` (labels come from it).
    """

    name: str
    groups: list[str]
    group: np.ndarray
    rows: np.ndarray
    weights: np.ndarray
    first: np.ndarray
    weighting: str


def _col(atoms: pa.Table, name: str, fill: object = "") -> np.ndarray:
    """Column ``name`` as text (object array); nulls / absent → ``fill``."""
    if name not in atoms.column_names:
        return np.full(atoms.num_rows, str(fill), dtype=object)
    col = atoms.column(name).cast(pa.string()).fill_null(str(fill))
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)


def atom_masses(atoms: pa.Table) -> np.ndarray:
    """Atomic masses (Da) from ``type_symbol`` (unknown elements and coarse beads: 1.0)."""
    import gemmi

    sym = _col(atoms, "type_symbol")
    table = {s: (gemmi.Element(str(s)).weight if s and gemmi.Element(str(s)).name != "X" else 1.0)
             for s in set(sym.tolist())}
    return np.array([table[s] for s in sym], np.float64)


def _factor(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group codes in first-appearance order and the first row of each group (hash codes, one sort)."""
    codes = np.stack([np.asarray(pc.dictionary_encode(pa.array(np.asarray(k).astype(str))).indices, np.int64)
                      for k in keys], axis=1)
    _, first, inv = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inv.ravel()].astype(np.int64), first[order].astype(np.int64)


def build_level(atoms: pa.Table, name: str, weighting: str = "unweighted",
                groups: tuple[list[str], np.ndarray, np.ndarray] | None = None) -> LevelMap:
    """Define level ``name`` over ``atoms``.

    Parameters
    ----------
    atoms : pyarrow.Table
        The entry's atom table (all models).
    name : str
        One of :data:`LEVELS` (``domain_centroids`` needs ``groups``) or ``grouping:NAME`` with ``groups``.
    weighting : {"unweighted", "mass"}
    groups : (names, group index per member, member rows), optional
        Membership of the grouping that defines domains.

    Raises
    ------
    ValidationError
        Unknown level or weighting.
    """
    if weighting not in WEIGHTINGS:
        raise ValidationError(f"weighting {weighting!r} is not known; use one of {', '.join(WEIGHTINGS)}")
    n = atoms.num_rows
    model = _col(atoms, "pdbx_PDB_model_num", 1)
    chain = _col(atoms, "label_asym_id")
    if name in ("atoms", "backbone"):
        if name == "atoms":
            rows = np.arange(n, dtype=np.int64)
        else:
            hit = pc.is_in(atoms.column("label_atom_id").cast(pa.string()), value_set=pa.array(BACKBONE_ATOMS))
            rows = np.flatnonzero(np.asarray(hit.fill_null(False).to_numpy(zero_copy_only=False), bool))
        labels = [str(r) for r in rows]
        k = np.arange(len(rows), dtype=np.int64)
        return LevelMap(name, labels, k, rows, np.ones(len(rows)), rows, weighting)
    if name == "residue_centroids":
        seq, ins = _col(atoms, "auth_seq_id"), _col(atoms, "pdbx_PDB_ins_code")
        code, first = _factor(model, chain, seq, ins)
        labels = [f"{model[i]}/{chain[i]}/{seq[i]}{ins[i]}" for i in first]
        rows = np.arange(n, dtype=np.int64)
    elif name == "chain_centroids":
        code, first = _factor(model, chain)
        labels = [f"{model[i]}/{chain[i]}" for i in first]
        rows = np.arange(n, dtype=np.int64)
    elif groups is not None and (name == "domain_centroids" or name.startswith("grouping:")):
        gnames, gidx, grows = groups
        gidx, rows = np.asarray(gidx, np.int64), np.asarray(grows, np.int64)
        code, pos = _factor(model[rows], gidx)
        first = rows[pos]
        labels = [f"{model[rows[p]]}/{gnames[int(gidx[p])]}" for p in pos]
    else:
        raise ValidationError(f"unknown level {name!r}; valid levels: {', '.join(LEVELS)} or 'grouping:NAME'")
    w = atom_masses(atoms)[rows] if weighting == "mass" else np.ones(len(rows))
    total = np.bincount(code, weights=w, minlength=len(first))
    return LevelMap(name, labels, code, rows, w / total[code], first, weighting)


def centroids(level: LevelMap, xyz: np.ndarray) -> np.ndarray:
    """Apply the level's mapping operator: (n_groups, 3) weighted sums of member coordinates."""
    out = np.zeros((len(level.groups), 3))
    for j in range(3):
        out[:, j] = np.bincount(level.group, weights=level.weights * xyz[level.rows, j], minlength=len(level.groups))
    return out
