"""RMF reader (RMF3 Avro and the older HDF5 layout) against RMF's own signature dumps and real coordinates."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import gemmi
import h5py
import numpy as np
import pytest

import moldb
from moldb.ingest.rmf import open_rmf, signature
from tests.conftest import data


def _parse_signature(text: str) -> dict[str, dict[str, list[str]]]:
    """Blocks (``hierarchy``, ``static``, ``f0`` ...) → node → tokens, from RMF's text dump."""
    blocks: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        if line.endswith(" ["):
            current = blocks.setdefault(line[:-2], {})
        elif line == "]":
            current = None
        elif current is not None and line:
            node, _, rest = line.partition(":")
            current[node] = rest.split()
    return blocks


def _reference(name: str) -> dict[str, dict[str, list[str]]]:
    p = data(f"rmf/test_input/{name}")
    if name.endswith(".gz"):
        with gzip.open(p, "rt") as fh:
            return _parse_signature(fh.read())
    text = p.read_text()
    return _parse_signature(text)


@pytest.mark.parametrize(("rmf", "sig", "layout", "n_nodes", "n_frames"), [
    ("simple.rmf", "simple.rmf.signature", "hdf5", 28, 1),
    ("simple-new.rmf", "simple.rmf.signature", "rmf3", 28, 1),   # same system written as RMF3
    ("sink.rmf3", "simple.rmf.signature", "rmf3", 28, 1),
    ("rep_and_geom.rmf", "rep_and_geom.signature", "hdf5", 166, 96),
    ("final_NPC2007_new.rmf", "final_NPC2007_new.signature.gz", "hdf5", 35795, 1),
])
def test_signature_matches_rmf_dump(rmf: str, sig: str, layout: str, n_nodes: int, n_frames: int) -> None:
    doc = open_rmf(data(f"rmf/test_input/{rmf}"))
    assert (doc.layout, len(doc.nodes), len(doc.frames)) == (layout, n_nodes, n_frames)
    mine, ref = _parse_signature(signature(doc)), _reference(sig)
    assert list(mine) == list(ref)  # hierarchy, static, f0 ... f95
    for block in ref:
        assert mine[block] == ref[block], block


def test_signature_values_hdf5_simple() -> None:
    ref = _reference("simple.rmf.signature")
    doc = open_rmf(data("rmf/test_input/simple.rmf"))
    assert ref["hierarchy"]["n1"] == ["n2", "n11", "n19"]
    assert ref["static"]["n1"] == ["chain"] and ref["f0"]["n3"] == ["particle", "atom"]
    # node names and attribute values behind those decorators
    assert [doc.nodes[i].name for i in (0, 1, 2, 3, 4)] == ["root", "Chain A", "0", "N", "CA"]
    assert doc.static[("sequence", "residue type")] == {2: "MET", 11: "VAL", 19: "LEU"}
    assert doc.static[("physics", "element")][3] == 7 and doc.static[("physics", "mass")][3] == pytest.approx(14.0067)
    assert doc.frames[0].values[("physics", "coordinates")][3] == pytest.approx((24.277, 8.374, -9.854), abs=1e-3)
    assert len(doc.bonds) == 22 and (4, 7) in doc.bonds  # CA-CB of MET 0


def test_rmf3_and_hdf5_layouts_agree_on_simple() -> None:
    a, b = open_rmf(data("rmf/test_input/simple.rmf")), open_rmf(data("rmf/test_input/simple-new.rmf"))
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    ca, cb = a.frames[0].values[("physics", "coordinates")], b.frames[0].values[("physics", "coordinates")]
    assert ca.keys() == cb.keys()
    assert np.allclose([ca[k] for k in sorted(ca)], [cb[k] for k in sorted(cb)], atol=1e-5)


def test_ingest_rep_and_geom_frames(store: moldb.Store) -> None:
    path = data("rmf/test_input/rep_and_geom.rmf")
    v = store.ingest(path)
    assert (v.entry, v.n_models, v.n_atoms) == ("REP_AND_GEOM", 96, 54 * 96)
    s = store.get("REP_AND_GEOM")
    with h5py.File(path, "r") as f:  # independent read: physics row of each particle, frame 1
        nd = f["node_data"][...]
        keys = [k.decode() for k in f["float_physics_dynamic_list"][...]]
        dyn = f["float_physics_dynamic_storage"][...]
        static_mass = f["float_physics_static_storage"][...][:, 1]
    particle_rows = sorted(i for i in range(len(nd)) if nd[i, 0] == 1 and nd[i, 3] >= 0)
    assert len(particle_rows) == 54
    xi = [keys.index(f"cartesian {a}") for a in "xyz"]
    want = np.array([[dyn[nd[n, 3], k, 1] for k in xi] for n in particle_rows])
    model2 = np.asarray(s.atoms.column("pdbx_PDB_model_num").to_numpy()) == 2
    got = np.column_stack([s.atoms.column(c).to_numpy()[model2] for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
    assert np.allclose(got, want, atol=5e-4)  # stored at 3 decimals (mmCIF precision)
    descs = {d.id: d for d in store.descriptors("REP_AND_GEOM")}
    frames = descs["rmf_frames"]
    assert frames.sample_axis == "frame" and len(frames.states) == 96 and frames.regime == 2
    assert np.allclose(descs["radii"].params["mass"][:54], [static_mass[nd[n, 3]] for n in particle_rows])
    attrs = descs["rmf_attributes"].attrs["keys"]
    assert attrs["physics/coordinates"]["per_frame_nodes"] == 54 and attrs["physics/mass"]["static_nodes"] == 54
    assert attrs["shape/coordinates list"]["type"] == "vector3s"
    names = set(store.groupings("REP_AND_GEOM").column("name").to_pylist())
    assert {"rmf/hierarchy", "rmf/bonds", "rmf/resolution", "model"} <= names
    bonds = store.grouping("REP_AND_GEOM", "rmf/bonds")
    assert bonds.num_rows == 45 * 2 * 96  # 45 bonded pairs, in every frame


def test_ingest_native_rmf3_reference_frames(store: moldb.Store) -> None:
    v = store.ingest(data("rmf/imp_tutorial/native.rmf3"))
    assert v.n_atoms == 3949
    s = store.get(v.entry)
    res = store.grouping(v.entry, "rmf/resolution")
    groups = res.column("group").combine_chunks().dictionary.to_pylist()
    assert sorted(groups) == ["resolution 1", "resolution 20"]
    rows = res.filter(res.column("group_index").to_numpy() == groups.index("resolution 1")).column("row").to_numpy()
    xyz = np.column_stack([s.atoms.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")])[rows]
    chain = np.asarray(s.atoms.column("label_asym_id").to_pylist(), dtype=object)[rows]
    seq = s.atoms.column("auth_seq_id").to_numpy()[rows]
    ok = (chain[1:] == chain[:-1]) & (np.diff(seq) == 1)
    d = np.linalg.norm(np.diff(xyz, axis=0), axis=1)[ok]
    # rigid-body members are stored in local frames: only correctly applied frames give CA-CA 3.8 A
    assert ok.sum() > 3000 and abs(np.median(d) - 3.8) < 0.05


def test_3u7w_coordinates_equal_pdb() -> None:
    from moldb.ingest.rmf import read_rmf

    e = read_rmf(data("rmf/examples/3U7W.rmf"))
    st = gemmi.read_structure(str(data("pdb/3U7W.pdb.gz")))
    ref: dict[tuple[str, int, str], list[np.ndarray]] = {}
    for ch in st[0]:
        for r in ch:
            for at in r:
                ref.setdefault((ch.name, r.seqid.num, at.name), []).append(np.array(at.pos.tolist()))
    xyz = np.column_stack([e.atoms.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
    keys = zip(e.atoms.column("label_asym_id").to_pylist(), e.atoms.column("auth_seq_id").to_pylist(),
               e.atoms.column("label_atom_id").to_pylist(), strict=True)
    dev = [min(np.linalg.norm(xyz[i] - p) for p in ref[k]) for i, k in enumerate(keys)]
    assert e.n_atoms == 3417 and max(dev) < 1e-3  # every particle is a PDB atom (any altloc), float32 precision


def test_truncated_rmf3_names_file(store: moldb.Store, tmp_path: Path) -> None:
    bad = tmp_path / "cut.rmf3"
    bad.write_bytes(data("rmf/imp_tutorial/native.rmf3").read_bytes()[:20000])
    with pytest.raises(moldb.ParseError) as info:
        store.ingest(bad)
    assert str(bad) in str(info.value) and "truncated or corrupt RMF3" in str(info.value)
    assert store.entries().num_rows == 0


def test_corrupt_hdf5_rmf_names_file(store: moldb.Store, tmp_path: Path) -> None:
    bad = tmp_path / "cut.rmf"
    bad.write_bytes(data("rmf/test_input/simple.rmf").read_bytes()[:3000])
    with pytest.raises(moldb.ParseError) as info:
        store.ingest(bad)
    assert str(bad) in str(info.value) and "RMF (HDF5)" in str(info.value)
    assert store.entries().num_rows == 0


def test_unknown_node_type_and_no_particles(store: moldb.Store, tmp_path: Path) -> None:
    path = data("rmf/test_input/new-node-type.rmf3")
    doc = open_rmf(path)
    assert [n.type for n in doc.nodes] == ["root", "unknown99"] and doc.frames[0].name == "zero"
    with pytest.raises(moldb.ParseError) as info:
        store.ingest(path)
    assert str(path) in str(info.value) and "no particle with coordinates" in str(info.value)
    plain = tmp_path / "x.rmf3"
    shutil.copy(data("rmf/examples/simple.pdb"), plain)
    with pytest.raises(moldb.MoldbError):
        open_rmf(plain)
