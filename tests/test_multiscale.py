"""Multiscale levels (backbone, residue / chain / domain centroids) against independent gemmi + numpy."""

from __future__ import annotations

from collections import defaultdict

import gemmi
import numpy as np
import pytest

import moldb
from tests.conftest import data


def _gemmi_residue_means(path: str, mass: bool = False) -> dict[tuple[int, str, int, str], np.ndarray]:
    st = gemmi.read_structure(str(data(path)))
    st.setup_entities()
    out: dict[tuple[int, str, int, str], list] = defaultdict(list)
    for model in st:
        for ch in model:
            for r in ch:
                for at in r:
                    w = at.element.weight if mass else 1.0
                    out[(int(model.num), r.subchain, r.seqid.num, r.seqid.icode.strip())].append(
                        (np.array(at.pos.tolist()), w))
    return {k: sum(p * w for p, w in v) / sum(w for _, w in v) for k, v in out.items()}


def _key(row: dict) -> tuple[int, str, int, str]:
    ins = row["group"].rsplit("/", 1)[1].lstrip("-0123456789")
    return (int(row["model"]), row["chain"], int(row["residue"]), ins)


@pytest.mark.parametrize("path", ["mmcif/1l2y.cif.gz", "mmcif/3o5r.cif.gz"])
def test_residue_centroids_equal_numpy_means(store: moldb.Store, path: str) -> None:
    v = store.ingest(data(path))
    t = store.level(v.entry, "residue_centroids")
    ref = _gemmi_residue_means(path)
    assert t.num_rows == len(ref)
    assert t.schema.metadata[b"weighting"] == b"unweighted"
    for row in t.to_pylist():
        assert np.allclose([row["x"], row["y"], row["z"]], ref[_key(row)], atol=1e-9)


def test_mass_weighted_centroids(store: moldb.Store) -> None:
    v = store.ingest(data("mmcif/1l2y.cif.gz"))
    t = store.level(v.entry, "residue_centroids", weighting="mass")
    ref = _gemmi_residue_means("mmcif/1l2y.cif.gz", mass=True)
    rows = t.to_pylist()
    assert len(rows) == 20 * 38
    for row in rows:
        assert np.allclose([row["x"], row["y"], row["z"]], ref[_key(row)], atol=1e-9)


def test_4v5a_levels(store: moldb.Store) -> None:
    store.ingest(data("mmtf/4V5A.mmtf"))
    s = store.get("4V5A")
    res = store.level("4V5A", "residue_centroids")
    chains = store.level("4V5A", "chain_centroids")
    bb = store.level("4V5A", "backbone")
    atoms = s.atoms
    assert chains.num_rows == len(set(atoms.column("label_asym_id").to_pylist())) == 1598
    assert int(np.sum(res.column("n_members").to_numpy())) == atoms.num_rows == 290487
    names = np.asarray(atoms.column("label_atom_id").to_pylist(), dtype=object)
    assert bb.num_rows == int(np.isin(names, ["N", "CA", "C", "O", "P", "OP1", "OP2", "O5'", "C5'", "C4'", "C3'",
                                              "O3'"]).sum())
    first = chains.to_pylist()[0]
    sel = np.asarray(atoms.column("label_asym_id").to_pylist(), dtype=object) == first["chain"]
    xyz = np.column_stack([atoms.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
    assert np.allclose([first["x"], first["y"], first["z"]], xyz[sel].mean(axis=0), atol=1e-9)


def test_store_level_and_read_back(store: moldb.Store) -> None:
    v = store.ingest(data("mmcif/1l2y.cif.gz"))
    computed = store.level(v.entry, "residue_centroids", store=True)
    assert computed.schema.metadata[b"source"] == b"computed"
    again = store.level(v.entry, "residue_centroids")
    assert again.schema.metadata[b"source"] == b"stored"
    for c in ("group", "x", "y", "z", "n_members", "chain"):
        assert again.column(c).equals(computed.column(c))
    g = store.grouping(v.entry, "level/residue_centroids/unweighted")
    assert g.num_rows == store.get(v.entry).atoms.num_rows
    assert np.allclose(np.bincount(g.column("group_index").to_numpy(), weights=g.column("weight").to_numpy()), 1.0)


def test_domain_centroids(store: moldb.Store) -> None:
    v = store.ingest(data("mmcif/1l2y.cif.gz"))
    with pytest.raises(moldb.ValidationError, match="no domain grouping"):
        store.level(v.entry, "domain_centroids")
    atoms = store.get(v.entry).atoms
    seq = atoms.column("auth_seq_id").to_numpy()
    store.add_grouping(v.entry, "domains/v1", kind="domain", members={"helix": seq <= 9, "rest": seq > 9})
    t = store.level(v.entry, "domain_centroids")
    assert t.num_rows == 2 * 38
    xyz = np.column_stack([atoms.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
    model = atoms.column("pdbx_PDB_model_num").to_numpy()
    row = t.to_pylist()[0]
    assert row["group"] == "1/helix"
    assert np.allclose([row["x"], row["y"], row["z"]], xyz[(model == 1) & (seq <= 9)].mean(axis=0), atol=1e-9)


def test_unknown_level_lists_valid(store: moldb.Store) -> None:
    v = store.ingest(data("mmcif/1l2y.cif.gz"))
    with pytest.raises(moldb.ValidationError) as info:
        store.level(v.entry, "secondary_structure")
    for name in ("backbone", "residue_centroids", "chain_centroids", "domain_centroids"):
        assert name in str(info.value)
