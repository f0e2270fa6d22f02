"""H5MD observables and connectivity: import onto the frame axis / the entry's bonds, export, round trips.

Inputs: the real H5MD files of the corpus (``cu.h5md``: ``observables/atoms/energy`` in eV with
fs times; ``cobrotoxin.h5md``: ``observables/lambda``) and small H5MD files written by
MDAnalysis's own H5MD writer from the corpus' alanine-dipeptide DCD, to which h5py adds
``/connectivity`` in the layouts real writers use (plain ``[N][2]`` datasets with a
``particles_group`` reference, ZnH5MD's ``connectivity/<group>/bonds`` time-dependent element
with ``-1`` padding, ESPResSo's element named after the group, an ``id`` element), with the
bonds MDAnalysis's distance-based guesser finds.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import moldb
from moldb.api.trajectory import export_h5md
from tests.conftest import data

mda = pytest.importorskip("MDAnalysis")
h5py = pytest.importorskip("h5py")

ALA_PDB, ALA_DCD = "traj/molstar_ala2/protein.pdb", "traj/molstar_ala2/protein.dcd"
CU = "traj/cu_h5md/cu.h5md"


def _quiet_universe(*args: str, **kw: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mda.Universe(*args, **kw)


def _reader(path: Path) -> object:
    from MDAnalysis.coordinates.H5MD import H5MDReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return H5MDReader(str(path))


@pytest.fixture(scope="module")
def ala(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, object]:
    """``ala2.h5md`` written by MDAnalysis (10 frames x 22 atoms) + ``ala2.pdb`` beside it; guessed bonds."""
    d = tmp_path_factory.mktemp("ala")
    u = _quiet_universe(str(data(ALA_PDB)), str(data(ALA_DCD)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mda.Writer(str(d / "ala2.h5md"), n_atoms=u.atoms.n_atoms, format="H5MD") as w:
            for _ in u.trajectory:
                w.write(u.atoms)
        u.trajectory[0]
        u.atoms.guess_bonds()
    bonds = np.sort(np.asarray(u.bonds.indices, dtype=np.int64), axis=1)
    shutil.copy(data(ALA_PDB), d / "ala2.pdb")
    return d, bonds, u


def _variant(ala: tuple[Path, np.ndarray, object], tmp_path: Path, name: str) -> Path:
    d, _, _ = ala
    out = tmp_path / f"{name}.h5md"
    shutil.copy(d / "ala2.h5md", out)
    shutil.copy(d / "ala2.pdb", tmp_path / f"{name}.pdb")
    return out


def _pairs(table: object) -> set[tuple[int, int]]:
    t = table
    return set(zip(t.column("atom_1").to_pylist(), t.column("atom_2").to_pylist(), strict=True))  # type: ignore[attr-defined]


# -- observables -----------------------------------------------------------------------------------------
def test_cu_energy_on_the_frame_axis_and_frames_where(store: moldb.Store) -> None:
    v = store.ingest(data(CU))
    with h5py.File(data(CU)) as f:
        ref = f["observables/atoms/energy/value"][()]
    t = store.trajectory(v.entry)
    obs = t.observables()
    assert set(obs) == {"energy"}  # the particles group's own subgroup ("atoms/") is dropped from the name
    e = obs["energy"]
    np.testing.assert_array_equal(e.values, ref)  # bit-identical float64
    assert (e.unit, e.path, e.n_samples, e.n_matched) == ("eV", "observables/atoms/energy", 20, 20)
    assert any(x.kind == "derived_from" and x.parent == "trajectory" for x in e.edges)
    np.testing.assert_array_equal(store.frames_where("energy < 1.2"), np.flatnonzero(ref < 1.2))
    assert store.frames_where("energy < 1.2").tolist() == [3, 6, 8, 12, 14]
    # observables and frame labels in one expression
    store.add_descriptor(v.entry, moldb.FrameLabels("half", np.arange(20) >= 10, derived_from="frame"))
    np.testing.assert_array_equal(
        store.frames_where("energy < 1.5 and half == 1", entry=v.entry),
        np.flatnonzero((ref < 1.5) & (np.arange(20) >= 10)),
    )
    # forces came in eV/Å and are stored in kJ/(mol·Å)
    with h5py.File(data(CU)) as f:
        np.testing.assert_allclose(t.forces(4), f["particles/atoms/forces/value"][4] * 96.48533212331, rtol=1e-6)
    assert t.units["force"] == "kJ mol-1 Angstrom-1"


def test_observables_matched_by_step_with_gaps_and_constants(
    store: moldb.Store, ala: tuple[Path, np.ndarray, object], tmp_path: Path
) -> None:
    path = _variant(ala, tmp_path, "obs")
    _, _, u = ala
    rgyr = []
    for _ in u.trajectory:  # type: ignore[attr-defined]
        rgyr.append(u.atoms.radius_of_gyration())  # type: ignore[attr-defined]
    with h5py.File(path, "r+") as f:
        steps = f["particles/trajectory/position/step"][()]
        obs = f.require_group("observables")
        g = obs.create_group("rgyr")  # every frame
        g.create_dataset("value", data=np.array(rgyr)).attrs["unit"] = "Angstrom"
        g["step"] = f["particles/trajectory/position/step"]
        half = obs.create_group("trajectory").create_group("every_other")  # the particles group's own subgroup
        half.create_dataset("value", data=np.array(rgyr[::2]) * 2)
        half.create_dataset("step", data=steps[::2])
        obs.create_dataset("n_waters", data=np.int32(0))  # time-independent
        bad = obs.create_group("unaligned")  # no step, 3 samples for 10 frames
        bad.create_dataset("value", data=np.arange(3.0))
    v = store.ingest(path)
    t = store.trajectory(v.entry)
    got = t.observables()
    np.testing.assert_allclose(got["rgyr"].values, rgyr, rtol=0, atol=0)
    ev = got["every_other"].values
    np.testing.assert_array_equal(ev[::2], np.array(rgyr[::2]) * 2)
    assert np.isnan(ev[1::2]).all() and got["every_other"].n_matched == 5
    src = t.descriptor.source
    assert src["observables_constant"] == {"n_waters": {"value": 0, "unit": "", "dtype": "<i4"}}
    assert "no step to match" in src["observables_skipped"]["unaligned"]
    # NaN compares false
    np.testing.assert_array_equal(store.frames_where("every_other > 0", entry=v.entry), np.arange(0, 10, 2))


def test_cobrotoxin_lambda_by_step(store: moldb.Store) -> None:
    v = store.ingest(data("traj/cobrotoxin/cobrotoxin.h5md"))
    t = store.trajectory(v.entry)
    lam = t.observables()["lambda"]
    assert lam.n_matched == 3 and lam.values.tolist() == [0.0, 0.0, 0.0]
    assert t.step.tolist() == [0, 25000, 50000]  # position/step is a hard link to observables/lambda/step


def test_h5md_export_keeps_observables_and_species_and_reads_in_mdanalysis(store: moldb.Store, tmp_path: Path) -> None:
    v = store.ingest(data(CU))
    t = store.trajectory(v.entry)
    out = store.export(v.entry, tmp_path / "cu_out.h5md")
    with h5py.File(out) as f:
        assert f["particles/trajectory/species"][()].tolist() == [29] * 108
        assert f["observables/energy/value"].attrs["unit"] == "eV"
        # step/time of every element are hard links to position's (required for box by the spec)
        assert f["observables/energy/step"].id == f["particles/trajectory/position/step"].id
        assert f["particles/trajectory/box/edges/time"].id == f["particles/trajectory/position/time"].id
        assert "connectivity" not in f  # no bonds to write
    r = _reader(out)
    for i in (0, 7, 19):
        ts = r[i]
        np.testing.assert_array_equal(ts.positions, t.frame(i))
        np.testing.assert_array_equal(ts.forces, t.forces(i))
        assert ts.data["energy"] == t.observables()["energy"].values[i]
        assert ts.time == pytest.approx(t.time[i])
    # and back: same frames, same observable, elements from species (no topology file beside it)
    w = store.ingest(out, entry="CU_AGAIN")
    t2 = store.trajectory(w.entry)
    np.testing.assert_array_equal(t2.frames(), t.frames())
    np.testing.assert_array_equal(t2.observables()["energy"].values, t.observables()["energy"].values)
    assert set(store.get(w.entry).atoms.column("type_symbol").to_pylist()) == {"Cu"}


# -- connectivity ----------------------------------------------------------------------------------------
def test_connectivity_dataset_with_reference_becomes_bonds(
    store: moldb.Store, ala: tuple[Path, np.ndarray, object], tmp_path: Path
) -> None:
    _, bonds, _ = ala
    path = _variant(ala, tmp_path, "plain")
    with h5py.File(path, "r+") as f:
        c = f.create_group("connectivity")
        ds = c.create_dataset("bonds", data=bonds.astype(np.int32))
        ds.attrs["particles_group"] = f["particles/trajectory"].ref
        c.create_dataset("bond_orders", data=np.ones(len(bonds)))
        ang = c.create_dataset("angles", data=np.array([[0, 1, 2]], np.int32))
        ang.attrs["particles_group"] = f["particles/trajectory"].ref
    v = store.ingest(path)
    t = store.trajectory(v.entry)
    conn = t.connectivity()
    assert conn is not None and conn.elements == ["angles", "bonds"] and len(bonds) == 21
    assert conn.arity == [3, 2]
    np.testing.assert_array_equal(conn.pairs("bonds"), bonds)
    np.testing.assert_array_equal(conn.pairs(), bonds)  # pair elements only
    assert conn.tuples("angles").tolist() == [[0, 1, 2]]  # triples are kept (tests/test_trajectory_tuples.py)
    np.testing.assert_array_equal(conn.order[conn.element == 1], np.ones(21, np.float32))
    assert "connectivity_skipped" not in t.descriptor.source
    s = store.get(v.entry)
    merged = s.bonds()
    assert {tuple(p) for p in bonds.tolist()} <= _pairs(merged)  # every guessed bond is a bond of the entry
    kinds = set(merged.column("kind").to_pylist())
    assert kinds <= {"intra", "polymer", "connectivity/bonds"}
    # a pair both know keeps the derived row; each pair once
    assert len(_pairs(merged)) == merged.num_rows
    assert _pairs(t.bonds()) == _pairs(merged)  # one model: trajectory atoms are the entry rows
    # a topology-only re-deposit (same atoms, no frames) reads v1's trajectory, and so its connectivity
    top = s.write(tmp_path / "top.cif")
    assert store.deposit(top, entry=v.entry, message="topology only").version == 2
    again = store.get(v.entry).bonds()
    assert _pairs(again) == _pairs(merged) and "connectivity/bonds" in again.column("kind").to_pylist()


@pytest.mark.parametrize("layout", ["znh5md", "espresso", "ids"])
def test_connectivity_layouts_of_real_writers(
    store: moldb.Store, ala: tuple[Path, np.ndarray, object], tmp_path: Path, layout: str
) -> None:
    _, bonds, _ = ala
    path = _variant(ala, tmp_path, layout)
    n = len(bonds)
    with h5py.File(path, "r+") as f:
        g = f["particles/trajectory"]
        c = f.create_group("connectivity")
        if layout == "znh5md":  # connectivity/<group>/bonds: time-dependent, padded with -1
            e = c.create_group("trajectory").create_group("bonds")
            val = np.full((10, n + 3, 2), -1, np.int32)
            val[:, :n] = bonds
            e.create_dataset("value", data=val, fillvalue=-1)
            e["step"] = g["position/step"]
            e.attrs["particles_group"] = g.ref
            o = c["trajectory"].create_group("bond_orders")
            ov = np.full((10, n + 3), np.nan)
            ov[:, :n] = 1.0
            o.create_dataset("value", data=ov)
            name = "bonds"
        elif layout == "espresso":  # connectivity/<group name>: time-dependent, no reference
            e = c.create_group("trajectory")
            e.create_dataset("value", data=np.repeat(bonds[None].astype(np.int32), 10, axis=0))
            e["step"] = g["position/step"]
            name = "trajectory"
        else:  # particles have ids 100 + i; tuples name ids
            g.create_dataset("id", data=np.arange(100, 122, dtype=np.int64))
            ds = c.create_dataset("bonds", data=(bonds + 100).astype(np.int64))
            ds.attrs["particles_group"] = g.ref
            name = "bonds"
    v = store.ingest(path)
    conn = store.trajectory(v.entry).connectivity()
    assert conn is not None and conn.elements == [name]
    np.testing.assert_array_equal(conn.pairs(name), bonds)
    if layout == "znh5md":
        np.testing.assert_array_equal(conn.order, np.ones(n, np.float32))


def test_connectivity_of_another_group_is_left_out_and_bad_indices_refused(
    store: moldb.Store, ala: tuple[Path, np.ndarray, object], tmp_path: Path
) -> None:
    path = _variant(ala, tmp_path, "other")
    with h5py.File(path, "r+") as f:
        other = f["particles"].create_group("solvent")
        other.create_group("box").attrs["dimension"] = 3
        ds = f.create_group("connectivity").create_dataset("water", data=np.array([[0, 1]], np.int32))
        ds.attrs["particles_group"] = other.ref
    v = store.ingest(path)
    t = store.trajectory(v.entry)
    assert t.connectivity() is None
    assert "'solvent'" in t.descriptor.source["connectivity_skipped"]["water"]
    bad = _variant(ala, tmp_path, "bad")
    with h5py.File(bad, "r+") as f:
        ds = f.create_group("connectivity").create_dataset("bonds", data=np.array([[0, 1], [5, 22]], np.int32))
        ds.attrs["particles_group"] = f["particles/trajectory"].ref
    before = store.entries().num_rows
    with pytest.raises(moldb.ParseError, match=r"bad\.h5md.*connectivity/bonds: particle index 22 is out of range"):
        store.ingest(bad)
    assert store.entries().num_rows == before and "BAD" not in store


def test_bonds_round_trip_through_h5md_export(
    store: moldb.Store, ala: tuple[Path, np.ndarray, object], tmp_path: Path
) -> None:
    _, bonds, _ = ala
    path = _variant(ala, tmp_path, "rt")
    extra = np.array([[1, 21]], np.int64)  # a pair no template knows (a restraint, say)
    with h5py.File(path, "r+") as f:
        c = f.create_group("connectivity")
        for name, pairs in (("bonds", bonds), ("restraints", extra)):
            c.create_dataset(name, data=pairs.astype(np.int32)).attrs["particles_group"] = f["particles/trajectory"].ref
    v = store.ingest(path)
    t = store.trajectory(v.entry)
    before = store.get(v.entry).bonds()
    out = store.export(v.entry, tmp_path / "exported.h5md")
    with h5py.File(out) as f:
        names = sorted(k for k in f["connectivity"] if not k.endswith("_orders"))
        assert (
            f["connectivity/bonds"].attrs["particles_group"]
            and f[f["connectivity/bonds"].attrs["particles_group"]].name == "/particles/trajectory"
        )
        np.testing.assert_array_equal(f["connectivity/restraints"][()], extra)
    assert names == ["bonds", "restraints"]  # the stored elements as stored (moldb derives no other bond here)
    r = _reader(out)  # MDAnalysis still reads it, identical coordinates
    for i in range(t.n_frames):
        np.testing.assert_array_equal(r[i].positions, t.frame(i))
    w = store.ingest(out, topology=tmp_path / "rt.pdb", entry="RT_AGAIN")
    after = store.get(w.entry).bonds()
    assert _pairs(after) == _pairs(before)
    assert (1, 21) in _pairs(after)
    assert store.trajectory(w.entry).connectivity().pairs("restraints").tolist() == [[1, 21]]


def test_partial_stored_bonds_are_completed_by_derived_ones(
    store: moldb.Store, ala: tuple[Path, np.ndarray, object], tmp_path: Path
) -> None:
    _, bonds, _ = ala
    path = _variant(ala, tmp_path, "part")
    with h5py.File(path, "r+") as f:  # the file names only 5 of the bonds
        f.create_group("connectivity").create_dataset("bonds", data=bonds[:5].astype(np.int32))
    v = store.ingest(path)
    before = store.get(v.entry).bonds()
    out = store.export(v.entry, tmp_path / "part_out.h5md")
    with h5py.File(out) as f:
        stored = f["connectivity/bonds"][()]
        derived = f["connectivity/moldb_bonds"][()]
        orders = f["connectivity/moldb_bonds_orders"][()]
    np.testing.assert_array_equal(stored, bonds[:5])
    assert not ({tuple(p) for p in stored.tolist()} & {tuple(sorted(p)) for p in derived.tolist()})
    assert len(derived) == before.num_rows - 5 == 13
    assert orders.tolist().count(2.0) == 1 and set(orders.tolist()) == {1.0, 2.0}  # CCD orders: ALA's C=O is double
    w = store.ingest(out, topology=tmp_path / "part.pdb", entry="PART_AGAIN")
    assert _pairs(store.get(w.entry).bonds()) == _pairs(before)


def test_subset_export_keeps_bonds_among_selected_atoms(store: moldb.Store, tmp_path: Path) -> None:
    store.ingest(data("traj/1l2y/1l2y.xtc"), topology=data("pdb/1l2y.pdb.gz"), entry="TRP")
    t = store.trajectory("TRP")
    out = export_h5md(store, "TRP", tmp_path / "bb.h5md", frames=slice(0, 38, 5), select="name N CA C O OXT")
    idx = t.atom_indices("name N CA C O OXT")
    with h5py.File(out) as f:
        pos = f["particles/trajectory/position/value"][()]
        pairs = f["connectivity/bonds"][()]
        names = [s.decode() for s in f["parameters/atom_names"][()]]
    np.testing.assert_array_equal(pos, t.frames(slice(0, 38, 5), select="name N CA C O OXT"))
    assert set(names) == {"N", "CA", "C", "O", "OXT"} and pos.shape == (8, idx.size, 3)
    full = t.bonds()
    pos_of = {int(a): k for k, a in enumerate(idx)}
    want = {(pos_of[a], pos_of[b]) for a, b in _pairs(full) if a in pos_of and b in pos_of}
    assert {tuple(p) for p in pairs.tolist()} == want
    assert len(want) >= 20 * 3 + 1  # N-CA, CA-C, C-O of 20 residues and C-OXT (+ peptide C-N where derived)
