"""The SARS-CoV-2 spike 6VXX (22,812 atoms) with a five-level ECHT-shaped continuous-additive stack.

The coordinates are real: ``pdb/6vxx_biovia.pdb.gz`` of the shared corpus (``$MOLDB_BENCH_DATA``
overrides the corpus root; a BIOVIA re-export of 6VXX without header, glycans or HELIX/SHEET
records: chains A/B/C, residues 27-1147 with gaps, 972 residues and 7,604 atoms per protomer),
ingested as entry ``SPIKE``. The groupings follow the chapter's worked example (Pearce & Gros 2021):

=======================  =====================================================  ===============  ========
level (grouping)         groups                                                 count            operator
=======================  =====================================================  ===============  ========
echt.molecule/v1         all atoms                                              1                tls_v1
echt.domain/v1           4 per protomer by residue number (approximate domain   12               tls_v1
                         map of Wrapp et al. 2020): NTD 1-305, RBD 319-541,
                         SD1-2 306-318 + 542-685 (up to the S1/S2 site),
                         S2 686-1273
echt.secondary_structure biotite ``annotate_sse`` (P-SEA) per chain; one group  332 (30 helix,   tls_v1
/v1                      per contiguous run of one state (helix a, strand b,    118 strand,
                         coil c), split at chain breaks and sequence gaps       184 coil)
echt.residue/v1          one group per residue (default, the chapter's ~3,000;  2,916            tls_v1
                         ``residue_level="residue"``), or backbone (N CA C O) / (5,658)
                         side chain of each residue (ECHT's bb+sc level; Gly:
                         one group; ``residue_level="bb+sc"``)
atomic (scope ``atom``)  one B per atom                                         22,812           iadp_v1
=======================  =====================================================  ===============  ========

P-SEA assigns three states, DSSP eight (turns, bends, 3-10 and pi helices split its coil and helix
runs), hence 332 runs here against the chapter's ~600 from DSSP via cctbx. Another ``source``
(single model) works too: atoms outside the domain ranges form a ``<chain>.other`` domain.

**Synthetic parameters, printed precision.** No ECHT fit of 6VXX is available, so the TLS tensors
are synthetic but physically scaled: per level, T and the libration term each give about half the
level's mean B of Pearce & Gros 2021, Table 1 (12.4 / 10.3 / 3.9 / 1.7 Å²; atomic 0.5 Å²), random
orientations, S small. They are generated *at the precision fitted TLS values carry in deposited
files*, because that, not float noise, is what a store receives: mmCIF ``_pdbx_refine_tls`` prints
T (Å²), L (deg²), S (Å·deg) and the origin (Å) with 4 decimals, and B (Å²) has 2 decimals in
``_atom_site``/PDB. So every value is an integer count of 1e-4 (1e-2 for B) in the printed unit;
S has trace exactly zero in those integers (ECHT constrains tr S = 0); L and S are then converted to
rad² and rad·Å with :func:`moldb.operators.tls_from_mmcif_units` exactly as ingest converts a
deposited mmCIF. Origins are the group centroids printed at 4 decimals. ``printed=False`` keeps
full float64 values instead (the worst case for storage). ``benchmarks/bench_ir.py`` measures the
stored bytes; ``benchmarks/bench_render.py`` renders the stack.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["B_ATOMIC", "DOMAINS", "ENTRY", "LEVELS", "add_echt_stack", "build_spike_store", "echt_groups",
           "spike_source"]

#: (descriptor id, mean B of the level in Å²), Pearce & Gros 2021 Table 1.
LEVELS = (("echt.molecule", 12.4), ("echt.domain", 10.3), ("echt.secondary_structure", 3.9), ("echt.residue", 1.7))
B_ATOMIC = 0.5
ENTRY = "SPIKE"
#: Domain → inclusive auth_seq_id ranges, per protomer.
DOMAINS = (("NTD", ((1, 305),)), ("RBD", ((319, 541),)), ("SD1-2", ((306, 318), (542, 685))), ("S2", ((686, 1273),)))
_BACKBONE = ("N", "CA", "C", "O")
_SSE_CODE = {"a": "H", "b": "E", "c": "C", "": "C"}
DEC_TLS, DEC_B = 4, 2  # printed decimals: _pdbx_refine_tls (T, L, S, origin), B


def spike_source() -> Path:
    """``pdb/6vxx_biovia.pdb.gz`` under ``$MOLDB_BENCH_DATA`` (default ``../shared/data``)."""
    root = Path(os.environ.get("MOLDB_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    return root / "pdb" / "6vxx_biovia.pdb.gz"


def _column(atoms: Any, name: str) -> np.ndarray:
    """A column as numpy; strings (dictionary-encoded in moldb) as an object array with nulls as ``""``."""
    import pyarrow as pa

    col = atoms.column(name)
    if pa.types.is_dictionary(col.type) or pa.types.is_string(col.type):
        return np.asarray(col.cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False), dtype=object)
    return col.to_numpy()


def _residues(atoms: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: chain, residue number, insertion code, and the row where each residue run starts."""
    n = atoms.num_rows
    chain, resid = _column(atoms, "auth_asym_id").astype(str), _column(atoms, "auth_seq_id").astype(np.int64)
    ins = _column(atoms, "pdbx_PDB_ins_code").astype(str) if "pdbx_PDB_ins_code" in atoms.column_names \
        else np.full(n, "")
    key = np.char.add(np.char.add(chain, "|"), np.char.add(resid.astype(str), np.char.add("|", ins)))
    cut = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
    return chain, resid, key, cut


def _add(groups: dict[str, np.ndarray], name: str, rows: np.ndarray) -> None:
    """``groups[name] = rows``, suffixing ``#k`` to a name already taken (so no rows are lost)."""
    k, base = 1, name
    while name in groups:
        k, name = k + 1, f"{base}#{k}"
    groups[name] = rows


def _sse_runs(atoms: Any) -> dict[str, np.ndarray]:
    """Group name → atom rows per contiguous run of one P-SEA state, split at chain breaks and gaps.

    P-SEA (biotite ``annotate_sse``) runs on the atoms without alternate locations other than the
    first; its per-residue states are mapped back to every row of the residue.
    """
    import biotite.structure as struc

    n = atoms.num_rows
    chain, resid, key, cut = _residues(atoms)
    keep = np.ones(n, dtype=bool)
    if "label_alt_id" in atoms.column_names:
        alt = _column(atoms, "label_alt_id").astype(str)
        keep &= np.isin(alt, ["", ".", "?", "None", min(alt.tolist())])
    rows = np.flatnonzero(keep)
    arr = struc.AtomArray(len(rows))
    arr.coord = np.stack([atoms.column(c).to_numpy()[rows] for c in ("Cartn_x", "Cartn_y", "Cartn_z")], 1)
    arr.chain_id, arr.res_id = chain[rows], resid[rows]
    for attr, col in (("res_name", "label_comp_id"), ("atom_name", "label_atom_id"), ("element", "type_symbol")):
        setattr(arr, attr, _column(atoms, col).astype(str)[rows])
    arr.hetero = _column(atoms, "group_PDB").astype(str)[rows] == "HETATM"
    starts = struc.get_residue_starts(arr)
    state = dict(zip(key[rows][starts].tolist(), np.asarray(struc.annotate_sse(arr)).tolist(), strict=True))
    lab = np.array([state.get(k, "") for k in key[cut]], dtype=object)
    ch, ri = chain[cut], resid[cut]
    brk = np.r_[True, (ch[1:] != ch[:-1]) | (np.diff(ri) != 1) | (lab[1:] != lab[:-1])]
    first = np.flatnonzero(brk)
    last = np.r_[first[1:], len(cut)] - 1
    bounds = np.r_[cut, n]
    out: dict[str, np.ndarray] = {}
    for a, b in zip(first, last, strict=True):
        _add(out, f"{ch[a]}.{_SSE_CODE[lab[a]]}{ri[a]}-{ri[b]}", np.arange(bounds[a], bounds[b + 1]))
    return out


def echt_groups(store: Any, entry: str, residue_level: str = "residue") -> dict[str, dict[str, np.ndarray]]:
    """The four TLS levels' groups of ``entry``: level → {group name: atom rows}.

    ``residue_level``: ``"bb+sc"`` (ECHT's default: backbone / side chain per residue) or
    ``"residue"`` (one group per residue, the chapter's ~3,000 count). The entry must have
    one model (an ECHT stack describes one set of coordinates).
    """
    if residue_level not in ("bb+sc", "residue"):
        raise ValueError(f"residue_level must be 'bb+sc' or 'residue', not {residue_level!r}")
    s = store.get(entry)
    if s.version.n_models != 1:
        raise ValueError(f"{entry} has {s.version.n_models} models; the ECHT stack needs one")
    atoms = s.atoms
    n = atoms.num_rows
    chain, resid, key, cut = _residues(atoms)
    levels: dict[str, dict[str, np.ndarray]] = {"echt.molecule": {"all": np.arange(n)}}
    dom: dict[str, np.ndarray] = {}
    for ch in sorted(set(chain.tolist())):
        left = chain == ch
        for label, ranges in DOMAINS:
            mask = left & np.logical_or.reduce([(resid >= a) & (resid <= b) for a, b in ranges])
            if mask.any():
                dom[f"{ch}.{label}"] = np.flatnonzero(mask)
            left &= ~mask
        if left.any():  # none in 6VXX; ligands, or another source's numbering
            dom[f"{ch}.other"] = np.flatnonzero(left)
    levels["echt.domain"] = dom
    levels["echt.secondary_structure"] = _sse_runs(atoms)
    bb = np.isin(_column(atoms, "label_atom_id"), _BACKBONE)
    per_res: dict[str, np.ndarray] = {}
    for a, b in itertools.pairwise(np.r_[cut, n]):
        rows = np.arange(a, b)
        label = key[a].replace("|", ".").rstrip(".")
        if residue_level == "residue" or bb[rows].all() or not bb[rows].any():
            _add(per_res, label, rows)
        else:
            _add(per_res, f"{label}.bb", rows[bb[rows]])
            _add(per_res, f"{label}.sc", rows[~bb[rows]])
    levels["echt.residue"] = per_res
    return levels


def _printed(x: np.ndarray, dec: int) -> np.ndarray:
    """``x`` as the float64 parsed from its text at ``dec`` decimals (integer counts / 10**dec)."""
    return np.rint(x * 10.0**dec).astype(np.int64) / 10.0**dec


def _tls_params(rng: np.random.Generator, x: np.ndarray, members: list[np.ndarray], b_level: float,
                printed: bool = True) -> dict[str, Any]:
    """Physically scaled random TLS per group in ``tls_v1`` units.

    ``printed``: at mmCIF's printed precision (see the module docstring); else full float64
    values (T and L symmetric, tr S = 0 in floating point, origin the exact centroid).
    """
    from moldb.operators import tls_from_mmcif_units

    deg = math.pi / 180.0
    u_half = b_level / (8 * math.pi**2) / 2
    iu = np.triu_indices(3)
    tensors = [np.zeros((len(members), 3, 3)) for _ in range(3)]  # T Å², L deg², S Å·deg
    orig = np.zeros((len(members), 3))
    for g, rows in enumerate(members):
        c = x[rows].mean(0)
        r2 = max(float(((x[rows] - c) ** 2).sum(1).mean()), 1.0)
        lam = u_half / r2 * 1.5  # <|λ × r|²> ≈ (2/3) r² tr(L): about u_half per component
        for k, scale in enumerate((u_half, lam / deg**2)):
            q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
            m = q @ np.diag(scale * rng.uniform(0.5, 1.5, 3)) @ q.T
            up = _printed(m[iu], DEC_TLS) if printed else m[iu]
            tensors[k][g][iu] = up
            tensors[k][g].T[iu] = up  # symmetric bit for bit
        s = rng.normal(size=(3, 3)) * 0.05 * math.sqrt(u_half * lam) / deg
        if printed:  # tr S = 0 in the printed digits
            n = np.rint(s * 10.0**DEC_TLS).astype(np.int64)  # integers: no "-0.0000"
            n[2, 2] = -(n[0, 0] + n[1, 1])
            s = n / 10.0**DEC_TLS
        tensors[2][g] = s
        orig[g] = _printed(c, DEC_TLS) if printed else c
    T, L, S = tls_from_mmcif_units(*tensors)
    if not printed:
        S[:, 2, 2] = -(S[:, 0, 0] + S[:, 1, 1])  # tr S = 0 in the stored floats
    return {"T": T, "L": L, "S": S, "origin": orig}


def add_echt_stack(store: Any, entry: str, seed: int = 0, residue_level: str = "residue",
                   printed: bool = True) -> list[str]:
    """Add the four ECHT TLS groupings + descriptors and the atomic B to ``entry``; return the descriptor ids.

    ``seed`` seeds the synthetic parameters; ``residue_level`` as in :func:`echt_groups`;
    ``printed=False`` keeps full float64 values instead of mmCIF's printed precision.
    """
    import moldb

    rng = np.random.default_rng(seed)
    atoms = store.get(entry).atoms
    x = np.stack([atoms.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")], 1).astype(np.float64)
    groups = echt_groups(store, entry, residue_level)
    fit = {"software": "synthetic ECHT-shaped benchmark (benchmarks/_spike.py)",
           "params": {"seed": seed, "residue_level": residue_level, "printed_precision": printed}}
    ids = []
    for lvl, b_level in LEVELS:
        members = groups[lvl]
        gname = f"{lvl}/v1"
        store.add_grouping(entry, gname, members, kind="heterogeneity_descriptor.scope", replace=True)
        p = _tls_params(rng, x, list(members.values()), b_level, printed)
        d = store.add_descriptor(entry, moldb.TLS(id=lvl, scope=gname, groups=list(members), **p),
                                 provenance={"source": "user", "fit": fit})
        ids.append(d.id)
    b = rng.gamma(4.0, B_ATOMIC / 4.0, len(x))
    b = _printed(b, DEC_B) if printed else b
    d = store.add_descriptor(entry, moldb.IsotropicADP(id="echt.atomic", scope="atom", B=b),
                             provenance={"source": "user", "fit": fit})
    ids.append(d.id)
    return ids


def build_spike_store(workdir: Path, source: Path | None = None) -> tuple[Any, str, list[str]]:
    """Create a store in ``workdir`` holding ``SPIKE`` (6VXX, or ``source``) with its ECHT stack.

    Returns
    -------
    store : moldb.Store
    entry : str
        ``"SPIKE"``.
    ids : list of str
        The five descriptor ids, molecule level first, ``echt.atomic`` last.
    """
    import moldb

    store = moldb.create(Path(workdir) / "store")
    store.ingest(Path(source) if source is not None else spike_source(), entry=ENTRY)
    return store, ENTRY, add_echt_stack(store, ENTRY)
