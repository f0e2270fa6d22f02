"""A 22,812-atom spike-like trimer with a five-level ECHT-shaped continuous-additive stack.

No 6vxx coordinates are in ``../shared/data``, so the model is built from real ones: three copies of
5EIL (altlocs removed, 7,283 atoms each) rotated by 0/120/240° about an axis 40 Å from their centre,
plus a 963-atom "stalk" (the first residues of chain A, shifted along the axis): 22,812 atoms, the
size of 6vxx's deposited model. The ECHT levels follow the chapter's worked example:

=============  ====================================================  ==========================
level          groups                                                operator
=============  ====================================================  ==========================
molecule       1 (all atoms)                                         tls_v1
domain         12 (contiguous residue runs, 4 per protomer)          tls_v1
SSE            600 (contiguous residue runs)                         tls_v1
residue        backbone / side chain of each residue (ECHT bb+sc)    tls_v1
atomic         one B per atom                                        iadp_v1
=============  ====================================================  ==========================

TLS tensors are synthetic but physically scaled: per level, T and the libration term each give
about half of the level's mean B from Pearce & Gros 2021, Table 1 (12.4 / 10.3 / 3.9 / 1.7 Å², and
0.5 Å² atomic); S is small, traceless. Origins are the group centroids.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

LEVELS = (("echt.molecule", 12.4), ("echt.domain", 10.3), ("echt.sse", 3.9), ("echt.residue", 1.7))
B_ATOMIC = 0.5
N_ATOMS = 22_812


def write_spike_cif(source: Path, out: Path) -> Path:
    """Write the trimer + stalk mmCIF built from ``source`` (5EIL) to ``out``."""
    import gemmi

    st = gemmi.read_structure(str(source))
    st.remove_alternative_conformations()
    st.meta.refinement.clear() if hasattr(st.meta.refinement, "clear") else None
    model = st[0]
    xyz = np.array([a.pos.tolist() for r in model.all() for a in [r.atom]])
    centre = xyz.mean(0)
    axis_pt = centre + np.array([40.0, 0.0, 0.0])
    new = gemmi.Model("1")
    names = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    for k in range(3):
        th = 2 * math.pi * k / 3
        R = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
        for ch in model:
            c = ch.clone()
            c.name = next(names)
            for res in c:
                for at in res:
                    p = R @ (np.array(at.pos.tolist()) - axis_pt) + axis_pt
                    at.pos = gemmi.Position(*p)
                    at.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
            new.add_chain(c)
    need = N_ATOMS - 3 * model.count_atom_sites()
    stalk = gemmi.Chain(next(names))
    for res in model[0]:
        if need <= 0:
            break
        r = res.clone()
        while len(r) > need:
            del r[len(r) - 1]
        for at in r:
            at.pos = gemmi.Position(*(np.array(at.pos.tolist()) + np.array([0.0, 0.0, -60.0])))
            at.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
        need -= len(r)
        stalk.add_residue(r)
    new.add_chain(stalk)
    st2 = gemmi.Structure()
    st2.cell, st2.spacegroup_hm, st2.name = st.cell, st.spacegroup_hm, "SPIKE"
    st2.add_model(new)
    st2.setup_entities()
    st2.assign_label_seq_id()
    doc = st2.make_mmcif_document()
    doc.write_file(str(out))
    return out


def _runs(n: int, k: int) -> list[np.ndarray]:
    return [a for a in np.array_split(np.arange(n), k) if len(a)]


def _tls_params(rng: np.random.Generator, x: np.ndarray, members: list[np.ndarray], b_level: float) -> dict[str, Any]:
    u_half = b_level / (8 * math.pi**2) / 2
    T, L, S, orig = [], [], [], []
    for rows in members:
        c = x[rows].mean(0)
        r2 = max(float(((x[rows] - c) ** 2).sum(1).mean()), 1.0)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        T.append(q @ np.diag(u_half * rng.uniform(0.5, 1.5, 3)) @ q.T)
        lam = u_half / r2 * 1.5  # <|λ × r|²> ≈ (2/3) r² tr(L)/... : about u_half per component
        q2, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        L.append(q2 @ np.diag(lam * rng.uniform(0.5, 1.5, 3)) @ q2.T)
        s = rng.normal(size=(3, 3)) * 0.05 * math.sqrt(u_half * lam)
        s[np.diag_indices(3)] -= np.trace(s) / 3
        S.append(s)
        orig.append(c)
    return {"T": np.array(T), "L": np.array(L), "S": np.array(S), "origin": np.array(orig)}


def add_echt_stack(store: Any, entry: str, seed: int = 0) -> list[str]:
    """Add the five ECHT groupings and descriptors to ``entry``; return the descriptor ids."""
    import pyarrow as pa

    import moldb

    rng = np.random.default_rng(seed)
    s = store.get(entry)
    atoms = s.atoms
    n = atoms.num_rows
    x = np.stack([np.asarray(atoms.column(c).cast(pa.string()).cast(pa.float64()).to_numpy(), np.float64)
                  for c in ("Cartn_x", "Cartn_y", "Cartn_z")], 1)
    res = store.grouping(entry, "residue")
    res_of = np.empty(n, dtype=np.int64)
    res_of[res.column("row").to_numpy()] = res.column("group_index").to_numpy()
    # residue index in file order, contiguous runs
    order = np.r_[0, np.flatnonzero(np.diff(res_of)) + 1]
    res_rows = np.split(np.arange(n), order[1:])
    name = np.asarray(atoms.column("label_atom_id").cast(pa.string()).to_pylist(), dtype=object)
    bb = np.isin(name, ["N", "CA", "C", "O"])
    levels: dict[str, list[np.ndarray]] = {"echt.molecule": [np.arange(n)]}
    levels["echt.domain"] = [np.concatenate(res_rows[a[0]:a[-1] + 1]) for a in _runs(len(res_rows), 12)]
    levels["echt.sse"] = [np.concatenate(res_rows[a[0]:a[-1] + 1]) for a in _runs(len(res_rows), 600)]
    per_res: list[np.ndarray] = []
    for rows in res_rows:
        parts = [rows[bb[rows]], rows[~bb[rows]]]
        per_res += [p for p in parts if len(p)] if all(len(p) for p in parts) else [rows]
    levels["echt.residue"] = per_res
    ids = []
    for (lvl, b_level) in LEVELS:
        members = levels[lvl]
        gname = f"{lvl}/v1"
        store.add_grouping(entry, gname, {f"g{i}": m for i, m in enumerate(members)},
                           kind="heterogeneity_descriptor.scope", replace=True)
        p = _tls_params(rng, x, members, b_level)
        d = store.add_descriptor(entry, moldb.TLS(id=lvl, scope=gname, groups=[f"g{i}" for i in range(len(members))],
                                                  **p),
                                 provenance={"source": "user", "fit": {"software": "synthetic ECHT-shaped benchmark"}})
        ids.append(d.id)
    b = rng.gamma(4.0, B_ATOMIC / 4.0, n)
    d = store.add_descriptor(entry, moldb.IsotropicADP(id="echt.atomic", scope="atom", B=b),
                             provenance={"source": "user"})
    ids.append(d.id)
    return ids


def build_spike_store(workdir: Path, source: Path) -> tuple[Any, str, list[str]]:
    """Create a store in ``workdir`` holding SPIKE with its ECHT stack; return (store, entry, ids)."""
    import moldb

    cif = write_spike_cif(source, workdir / "spike.cif")
    store = moldb.create(workdir / "store")
    store.ingest(cif, entry="SPIKE")
    return store, "SPIKE", add_echt_stack(store, "SPIKE")
