"""Trajectories: H5MD / XTC / DCD ingest, frame access, pushed-down selections, labels, H5MD export."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import moldb
from tests.conftest import data

mda = pytest.importorskip("MDAnalysis")
pytest.importorskip("h5py")

PROLIF_XTC, PROLIF_TOP = "traj/prolif/traj.xtc", "traj/prolif/top.pdb.gz"


def _universe(top: Path, traj: Path) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(str(top), str(traj))


@pytest.fixture(scope="module")
def prolif(tmp_path_factory: pytest.TempPathFactory) -> moldb.Store:
    s = moldb.create(tmp_path_factory.mktemp("traj") / "store")
    s.ingest(data(PROLIF_XTC), topology=data(PROLIF_TOP), entry="PROLIF-MD")
    yield s
    s.close()


def test_xtc_ingest_matches_mdanalysis(prolif: moldb.Store) -> None:
    t = prolif.trajectory("PROLIF-MD")
    assert (t.n_frames, t.n_atoms) == (250, 5067)
    assert t.decimals == 2  # XTC's 0.001 nm = 0.01 Å
    u = _universe(data(PROLIF_TOP), data(PROLIF_XTC))
    for i in (0, 137, 249):
        u.trajectory[i]
        f = t.frame(i)
        assert f.dtype == np.float32 and f.shape == (5067, 3)
        np.testing.assert_allclose(f, u.atoms.positions, atol=1e-4)
        assert t.time[i] == pytest.approx(u.trajectory.ts.time)
        np.testing.assert_allclose(t.box[i].diagonal(), u.trajectory.ts.dimensions[:3], rtol=1e-6)
    assert prolif.get("PROLIF-MD").atoms.num_rows == 5067  # the topology is a normal entry version
    assert t.frame(-1).shape == (5067, 3)


def test_pushed_down_selection_reads_only_ca(prolif: moldb.Store) -> None:
    t = prolif.trajectory("PROLIF-MD")
    ca = t.frames(slice(0, 250, 10), select="name CA")
    u = _universe(data(PROLIF_TOP), data(PROLIF_XTC))
    sel = u.select_atoms("name CA")
    ref = np.stack([sel.positions.copy() for _ in u.trajectory[0:250:10]])
    assert ca.shape == (25, sel.n_atoms, 3) == ref.shape
    np.testing.assert_allclose(ca, ref, atol=1e-4)
    # only the CA ("trace") cells were fetched and decoded
    assert t.last_read["atoms_decoded"] == t.last_read["atoms_returned"] == 25 * sel.n_atoms
    assert t.last_read["cells"] == 25
    full = t.frames(slice(0, 250, 10))
    assert t.last_read["atoms_decoded"] == 25 * 5067
    np.testing.assert_array_equal(full[:, sel.indices], ca)


def test_frame_labels_frames_where_and_select(prolif: moldb.Store) -> None:
    labels = np.arange(250) % 5
    d = prolif.add_descriptor("PROLIF-MD", moldb.FrameLabels("cluster", labels, derived_from="kmeans/v1"))
    assert d.id == "frame_labels/cluster"
    assert any(e.kind == "derived_from" and e.parent == "trajectory" and e.function == "kmeans/v1" for e in d.edges)
    got = next(x for x in prolif.descriptors("PROLIF-MD") if x.type == "frame_labels")
    assert got.derived_from == "kmeans/v1"
    np.testing.assert_array_equal(got.values(), labels)
    idx = prolif.frames_where("cluster == 3")
    np.testing.assert_array_equal(idx, np.arange(3, 250, 5))
    np.testing.assert_array_equal(prolif.frames_where("cluster >= 3 and cluster != 4", entry="PROLIF-MD"), idx)
    sel = prolif.select("name CA", entries="PROLIF-MD", frames=idx)
    xyz = sel.to_numpy()["PROLIF-MD"]
    t = prolif.trajectory("PROLIF-MD")
    assert xyz.shape == (50, 302, 3)
    np.testing.assert_array_equal(xyz[1], t.frame(8, select="name CA"))
    with pytest.raises(moldb.ValidationError, match="250 frames"):
        prolif.add_descriptor("PROLIF-MD", moldb.FrameLabels("bad", np.zeros(10)))
    with pytest.raises(moldb.ValidationError, match=r"unknown column .nosuch."):
        prolif.frames_where("nosuch == 1")


def test_h5md_export_reads_back_in_mdanalysis(prolif: moldb.Store, tmp_path: Path) -> None:
    out = prolif.export("PROLIF-MD", tmp_path / "out.h5md")
    u = _universe(data(PROLIF_TOP), out)
    t = prolif.trajectory("PROLIF-MD")
    assert u.trajectory.n_frames == 250
    for i in (0, 99, 249):
        u.trajectory[i]
        np.testing.assert_array_equal(u.atoms.positions, t.frame(i))  # identical float32
        assert u.trajectory.ts.time == pytest.approx(t.time[i])
        np.testing.assert_allclose(u.trajectory.ts.dimensions[:3], t.box[i].diagonal(), rtol=1e-6)
    # the topology's bonds travel as /connectivity/bonds (particle indices, referring to particles/trajectory)
    import h5py

    bonds = prolif.get("PROLIF-MD").bonds()
    with h5py.File(out) as f:
        pairs = f["connectivity/bonds"][()]
        ref = f["connectivity/bonds"].attrs["particles_group"]
        assert f[ref].name == "/particles/trajectory"
        assert f["particles/trajectory/species"].shape == (5067,)
        assert f["particles/trajectory/species"][:2].tolist() == [6, 1]  # CAY, HY1 of the first residue
    np.testing.assert_array_equal(np.sort(pairs, axis=1), np.stack([bonds.column("atom_1").to_numpy(),
                                                                    bonds.column("atom_2").to_numpy()], axis=1))


def test_h5md_ingest_with_velocities_and_forces(store: moldb.Store) -> None:
    path = data("traj/cobrotoxin/cobrotoxin.h5md")
    v = store.ingest(path)  # topology: cobrotoxin.pdb.gz next to it
    assert v.entry == "COBROTOXIN" and v.n_atoms == 19385
    t = store.trajectory("COBROTOXIN")
    assert t.fields == ["position", "velocity", "force"] and t.n_frames == 3
    u = _universe(data("traj/cobrotoxin/cobrotoxin.pdb.gz"), path)
    for i, ts in enumerate(u.trajectory):
        np.testing.assert_allclose(t.frame(i), ts.positions, atol=1e-5)
        np.testing.assert_allclose(t.velocities(i), ts.velocities, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(t.forces(i), ts.forces, rtol=1e-5, atol=1e-3)
        assert t.time[i] == pytest.approx(ts.time)
        np.testing.assert_allclose(t.box[i].diagonal(), ts.dimensions[:3], rtol=1e-6)


def test_h5md_species_only_topology(store: moldb.Store) -> None:
    v = store.ingest(data("traj/cu_h5md/cu.h5md"))
    t = store.trajectory(v.entry)
    assert (t.n_frames, t.n_atoms) == (20, 108)
    s = store.get(v.entry)
    assert set(s.atoms.column("type_symbol").to_pylist()) == {"Cu"}
    import h5py

    with h5py.File(data("traj/cu_h5md/cu.h5md")) as f:
        ref = f["particles/atoms/position/value"][7]
        tref = f["particles/atoms/position/time"][7]
    np.testing.assert_allclose(t.frame(7), ref, atol=1e-5)
    assert t.time[7] == pytest.approx(tref * 1e-3)  # fs → ps


@pytest.mark.parametrize("name", ["1l2y.dcd", "1l2y.xtc", "1l2y.trr", "1l2y.netcdf"])
def test_md_formats_match_mdanalysis(store: moldb.Store, name: str) -> None:
    traj = data(f"traj/1l2y/{name}")
    top = data("pdb/1l2y.pdb.gz")  # 38 models: the trajectory maps to the first model's 304 atoms
    store.ingest(traj, topology=top, entry="TRP")
    t = store.trajectory("TRP")
    assert (t.n_frames, t.n_atoms) == (38, 304)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(data("traj/1l2y/1l2y.gro")), str(traj),
                         format="NCDF" if name.endswith(".netcdf") else None)
    for i in (0, 17, 37):
        u.trajectory[i]
        np.testing.assert_allclose(t.frame(i), u.atoms.positions, atol=1e-4)
    ca = t.frames(select="name CA")
    assert ca.shape == (38, 20, 3)


def test_bad_frame_index(prolif: moldb.Store) -> None:
    t = prolif.trajectory("PROLIF-MD")
    with pytest.raises(IndexError, match=r"out of range.*250 frames"):
        t.frame(250)
    with pytest.raises(moldb.ValidationError):
        t.frame(-251)
    with pytest.raises(moldb.ValidationError, match="no 'velocity'"):
        t.velocities(0)


def test_atom_count_mismatch_names_both_files(store: moldb.Store) -> None:
    with pytest.raises(moldb.ValidationError, match=r"top\.pdb\.gz has 5067 atoms.*1l2y\.xtc has 304"):
        store.ingest(data("traj/1l2y/1l2y.xtc"), topology=data(PROLIF_TOP), entry="X")
    assert len(store) == 0


def test_missing_topology(store: moldb.Store) -> None:
    with pytest.raises(moldb.ValidationError, match="topology="):
        store.ingest(data("traj/1l2y/1l2y.dcd"), entry="X")
    with pytest.raises(moldb.EntryNotFoundError, match="no trajectory"):
        store.ingest(data("pdb/1l2y.pdb.gz")) and store.trajectory("1L2Y")


def test_missing_mdanalysis_names_the_extra(store: moldb.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *a: object, **k: object) -> object:
        if name == "MDAnalysis" or name.startswith("MDAnalysis."):
            raise ImportError("No module named 'MDAnalysis'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(moldb.ValidationError, match=r"moldb\[md\]"):
        store.ingest(data("traj/1l2y/1l2y.xtc"), topology=data("pdb/1l2y.pdb.gz"), entry="X")


def test_corrupt_file_leaves_store_untouched(store: moldb.Store, tmp_path: Path) -> None:
    bad = tmp_path / "broken.xtc"
    raw = data(PROLIF_XTC).read_bytes()
    bad.write_bytes(raw[: len(raw) // 2] + b"\x00garbage" * 100)
    before = store.disk_usage()
    with pytest.raises(moldb.ParseError, match=r"broken\.xtc"):
        store.ingest(bad, topology=data(PROLIF_TOP), entry="BROKEN")
    assert "BROKEN" not in store and len(store) == 0
    assert store.disk_usage().get("frames", 0) == before.get("frames", 0)
    h5 = tmp_path / "broken.h5md"
    shutil.copy(data("traj/cu_h5md/cu.h5md"), h5)
    with open(h5, "r+b") as fh:
        fh.seek(0)
        fh.write(b"\x00" * 64)
    with pytest.raises(moldb.ParseError, match=r"broken\.h5md"):
        store.ingest(h5)
    assert len(store) == 0
