"""H5MD connectivity beyond static pairs: angles / dihedrals and time-dependent elements, ingest → export → ingest.

The input is an H5MD 1.1 file written here with h5py from the corpus' alanine dipeptide (Mol*'s
``protein.pdb`` + ``protein.dcd``, 10 frames x 22 atoms), following the spec's "Connectivity group"
and "Storage of particles and tuples lists": ``connectivity/bonds`` ``[N][2]``, ``angles``
``[N][3]`` and ``dihedrals`` ``[N][4]`` (MDAnalysis's guessed bonds, angles and dihedrals), and two
time-dependent elements ``value [variable][N][2]`` padded with the declared fill value -1: the
heavy-atom contacts (< 3.6 Å, not bonded) of every frame, and the same sampled every other frame.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import moldb
from moldb.ir.trajectory import STEP_MAX
from tests.conftest import data

mda = pytest.importorskip("MDAnalysis")
h5py = pytest.importorskip("h5py")

ALA_PDB, ALA_DCD = "traj/molstar_ala2/protein.pdb", "traj/molstar_ala2/protein.dcd"
STEP = 1000  # steps per frame in the generated file


def _set(a: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(x) for x in r) for r in np.asarray(a).tolist()}


def _padded(samples: list[np.ndarray], t: int) -> np.ndarray:
    n = max(len(s) for s in samples)
    out = np.full((len(samples), n, t), -1, dtype=np.int32)
    for k, s in enumerate(samples):
        out[k, : len(s)] = s
    return out


@pytest.fixture(scope="module")
def ala(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``ala2.h5md`` (+ ``ala2.pdb`` beside it) with static and time-dependent tuples; what it holds."""
    from MDAnalysis.lib.distances import distance_array

    d = tmp_path_factory.mktemp("tuples")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(data(ALA_PDB)), str(data(ALA_DCD)))
        u.atoms.guess_bonds()
        bonds = np.asarray(u.bonds.indices, np.int64)
        angles = np.asarray(u.angles.indices, np.int64)
        dihedrals = np.asarray(u.dihedrals.indices, np.int64)
    heavy = u.select_atoms("not name H*").indices
    bonded = _set(np.sort(bonds, axis=1))
    xyz, contacts = [], []
    for _ in u.trajectory:
        xyz.append(u.atoms.positions.copy())
        dist = distance_array(u.atoms.positions[heavy], u.atoms.positions[heavy])
        i, j = np.nonzero(np.triu(dist < 3.6, 1))
        c = np.array([(heavy[a], heavy[b]) for a, b in zip(i, j, strict=True) if (heavy[a], heavy[b]) not in bonded])
        contacts.append(c.astype(np.int64))
    n_frames = len(xyz)
    step = np.arange(n_frames, dtype=np.int64) * STEP
    path = d / "ala2.h5md"
    with h5py.File(path, "w") as f:
        h = f.create_group("h5md")
        h.attrs["version"] = np.array([1, 1], np.int32)
        h.create_group("author").attrs["name"] = "moldb tests"
        c = h.create_group("creator")
        c.attrs["name"], c.attrs["version"] = "h5py", h5py.__version__
        g = f.create_group("particles").create_group("trajectory")
        box = g.create_group("box")
        box.attrs["dimension"] = np.int32(3)
        box.attrs["boundary"] = np.array(["none"] * 3, dtype=h5py.string_dtype())
        pos = g.create_group("position")
        pos.create_dataset("value", data=np.stack(xyz)).attrs["unit"] = "Angstrom"
        pos.create_dataset("step", data=step)
        pos.create_dataset("time", data=step * 0.002).attrs["unit"] = "ps"
        conn = f.create_group("connectivity")
        for name, tup in (("bonds", bonds), ("angles", angles), ("dihedrals", dihedrals)):
            conn.create_dataset(name, data=tup.astype(np.int32)).attrs["particles_group"] = g.ref
        for name, frames in (("contacts", range(n_frames)), ("contacts_every_other", range(0, n_frames, 2))):
            e = conn.create_group(name)
            e.attrs["particles_group"] = g.ref
            e.create_dataset("value", data=_padded([contacts[k] for k in frames], 2), fillvalue=-1)
            e.create_dataset("step", data=step[list(frames)])
            e.create_dataset("time", data=step[list(frames)] * 0.002).attrs["unit"] = "ps"
    shutil.copy(data(ALA_PDB), d / "ala2.pdb")
    return {
        "path": path,
        "bonds": bonds,
        "angles": angles,
        "dihedrals": dihedrals,
        "contacts": contacts,
        "n_frames": n_frames,
    }


def test_angles_dihedrals_and_time_dependent_contacts_are_stored(store: moldb.Store, ala: dict[str, object]) -> None:
    v = store.ingest(ala["path"])
    t = store.trajectory(v.entry)
    conn = t.connectivity()
    assert conn is not None
    assert conn.elements == ["angles", "bonds", "contacts", "contacts_every_other", "dihedrals"]
    assert conn.arity == [3, 2, 2, 2, 4]
    assert conn.time_dependent == ["contacts", "contacts_every_other"]
    np.testing.assert_array_equal(conn.tuples("angles"), ala["angles"])
    np.testing.assert_array_equal(conn.tuples("dihedrals"), ala["dihedrals"])
    assert (len(ala["angles"]), len(ala["dihedrals"])) == (36, 41)
    np.testing.assert_array_equal(conn.pairs("bonds"), ala["bonds"])
    with pytest.raises(ValueError, match="tuples of 3 particles"):
        conn.pairs("angles")
    with pytest.raises(KeyError, match="no connectivity element 'impropers'"):
        conn.tuples("impropers")
    # the contacts in effect at each frame are those of that frame's sample ...
    contacts = ala["contacts"]
    assert len({frozenset(_set(c)) for c in contacts}) > 1  # they do change
    for i in range(t.n_frames):
        at = t.connectivity(frame=i)
        assert _set(at.pairs("contacts")) == _set(contacts[i]), i
        # ... and a sample holds until the next one: odd frames see the previous even frame's contacts
        assert _set(at.pairs("contacts_every_other")) == _set(contacts[i - i % 2]), i
        np.testing.assert_array_equal(at.tuples("angles"), ala["angles"])  # static elements at every frame
    # one row per run: a contact present in frames 0-9 is one row with an open end
    always = set.intersection(*(_set(c) for c in contacts))
    m = conn.element == conn.elements.index("contacts")
    rows = {
        (int(a), int(b)): (int(lo), int(hi))
        for a, b, lo, hi in zip(conn.atom_1[m], conn.atom_2[m], conn.step_lo[m], conn.step_hi[m], strict=True)
    }
    assert always and all(rows[p] == (0, STEP_MAX) for p in always)
    src = t.descriptor.source
    assert src["connectivity_time_dependent"]["changing"] == ["contacts", "contacts_every_other"]
    assert "connectivity_skipped" not in src
    # bonds of the entry: pairs only, contacts as at the first frame (angles / dihedrals are not bonds)
    b = store.get(v.entry).bonds()
    kinds = set(b.column("kind").to_pylist())
    assert "connectivity/angles" not in kinds and "connectivity/dihedrals" not in kinds
    as_bonds = _set(np.stack([b.column("atom_1").to_numpy(), b.column("atom_2").to_numpy()], axis=1))
    later = set.union(*(_set(c) for c in contacts[1:])) - _set(contacts[0])
    assert _set(contacts[0]) <= as_bonds and later and not (later & as_bonds)
    with pytest.raises(moldb.ValidationError, match="frame 10 is out of range"):
        t.connectivity(frame=10)


def test_tuples_survive_export_and_reingest(store: moldb.Store, ala: dict[str, object], tmp_path: Path) -> None:
    v = store.ingest(ala["path"])
    t = store.trajectory(v.entry)
    out = store.export(v.entry, tmp_path / "ala2_out.h5md")
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["connectivity/angles"][()], ala["angles"])
        np.testing.assert_array_equal(f["connectivity/dihedrals"][()], ala["dihedrals"])
        e = f["connectivity/contacts"]
        assert f[e.attrs["particles_group"]].name == "/particles/trajectory"
        assert e["value"].fillvalue == -1 and e["value"].shape[2] == 2
        # a sample wherever the contacts change on the written frames (here: every frame but one)
        changes = 1 + sum(_set(a) != _set(b) for a, b in zip(ala["contacts"], ala["contacts"][1:], strict=False))
        assert e["value"].shape[0] == changes == len(e["step"]) == 9
        assert f["connectivity/contacts_every_other/step"][()].tolist() == [0, 2000, 4000, 6000, 8000]
    w = store.ingest(out, topology=ala["path"].with_suffix(".pdb"), entry="ALA_AGAIN")
    t2 = store.trajectory(w.entry)
    c1, c2 = t.connectivity(), t2.connectivity()
    assert c2.elements == c1.elements and c2.arity == c1.arity and c2.time_dependent == c1.time_dependent
    for name in ("angles", "dihedrals", "bonds"):
        np.testing.assert_array_equal(c2.tuples(name), c1.tuples(name))
    for i in range(t.n_frames):
        for name in ("contacts", "contacts_every_other"):
            assert _set(t2.connectivity(frame=i).pairs(name)) == _set(t.connectivity(frame=i).pairs(name))


def test_subset_export_samples_the_written_frames_and_atoms(
    store: moldb.Store, ala: dict[str, object], tmp_path: Path
) -> None:
    v = store.ingest(ala["path"])
    t = store.trajectory(v.entry)
    sel = "not name H*"
    idx = t.atom_indices(sel)
    out = moldb.api.trajectory.export_h5md(store, v.entry, tmp_path / "heavy.h5md", frames=[1, 4, 5, 8], select=sel)
    pos_of = {int(a): k for k, a in enumerate(idx)}
    with h5py.File(out) as f:
        e = f["connectivity/contacts"]
        value, steps = e["value"][()], e["step"][()]
        angles = f["connectivity/angles"][()]
    want_angles = {tuple(pos_of[a] for a in r) for r in _set(ala["angles"]) if all(a in pos_of for a in r)}
    assert _set(angles) == want_angles and len(want_angles) > 0
    for j, frame in enumerate([1, 4, 5, 8]):  # the sample in effect at each written frame
        k = int(np.searchsorted(steps, t.step[frame], side="right")) - 1
        got = _set(value[k][value[k, :, 0] >= 0])
        assert got == {(pos_of[a], pos_of[b]) for a, b in _set(ala["contacts"][frame])}, j


def test_frames_out_of_step_order_get_one_sample_each(
    store: moldb.Store, ala: dict[str, object], tmp_path: Path
) -> None:
    v = store.ingest(ala["path"])
    out = moldb.api.trajectory.export_h5md(store, v.entry, tmp_path / "back.h5md", frames=[5, 2, 2])
    with h5py.File(out) as f:
        assert f["connectivity/contacts/step"][()].tolist() == [5000, 2000, 2000]
    t2 = store.trajectory(store.ingest(out, topology=ala["path"].with_suffix(".pdb"), entry="BACK").entry)
    for j, frame in enumerate([5, 2, 2]):
        assert _set(t2.connectivity(frame=j).pairs("contacts")) == _set(ala["contacts"][frame])


def test_unusable_tuple_elements_are_reported_or_refused(
    store: moldb.Store, ala: dict[str, object], tmp_path: Path
) -> None:
    path = tmp_path / "odd.h5md"
    shutil.copy(ala["path"], path)
    shutil.copy(ala["path"].with_suffix(".pdb"), tmp_path / "odd.pdb")
    with h5py.File(path, "r+") as f:
        g = f["particles/trajectory"]
        f["connectivity"].create_dataset("quintuples", data=np.array([[0, 1, 2, 3, 4]], np.int32))
        e = f["connectivity"].create_group("unplaced")  # time-dependent, 3 samples, no step
        e.create_dataset("value", data=np.zeros((3, 1, 2), np.int32))
        e.attrs["particles_group"] = g.ref
    t = store.trajectory(store.ingest(path).entry)
    skipped = t.descriptor.source["connectivity_skipped"]
    assert "tuples of 5 particles" in skipped["quintuples"]
    assert "3 samples and no step" in skipped["unplaced"]
    bad = tmp_path / "bad.h5md"
    shutil.copy(ala["path"], bad)
    with h5py.File(bad, "r+") as f:
        del f["connectivity/angles"]
        f["connectivity"].create_dataset("angles", data=np.array([[0, 1, 2], [3, 4, 22]], np.int32))
    before = store.entries().num_rows
    with pytest.raises(moldb.ParseError, match=r"connectivity/angles: particle index 22 is out of range"):
        store.ingest(bad, topology=ala["path"].with_suffix(".pdb"), entry="BAD")
    assert store.entries().num_rows == before
