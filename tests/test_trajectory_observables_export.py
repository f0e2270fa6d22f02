"""H5MD export of time-independent observables and frame labels; MDAnalysis reads them; ingest brings them back.

Input: the corpus' ``cu.h5md`` (20 frames x 108 Cu, ``observables/atoms/energy`` in eV), and a copy
given two time-independent observables as H5MD 1.1 allows them (plain datasets): the box volume
(from its box edges, Å^3) and the atom count of the group (``observables/atoms/n_atoms``, int32).
Frame labels are computed from the file's energies.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import moldb
from moldb.api.trajectory import export_h5md
from moldb.export.h5md import Series, write_h5md
from tests.conftest import data

pytest.importorskip("MDAnalysis")
h5py = pytest.importorskip("h5py")

CU = "traj/cu_h5md/cu.h5md"


def _reader(path: Path) -> object:
    from MDAnalysis.coordinates.H5MD import H5MDReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return H5MDReader(str(path))


@pytest.fixture()
def cu_const(tmp_path: Path) -> tuple[Path, float]:
    path = tmp_path / "cu_const.h5md"
    shutil.copy(data(CU), path)
    with h5py.File(path, "r+") as f:
        edges = f["particles/atoms/box/edges/value"][0]
        volume = float(abs(np.linalg.det(edges)))
        f["observables"].create_dataset("volume", data=np.float64(volume)).attrs["unit"] = "Angstrom^3"
        f["observables/atoms"].create_dataset("n_atoms", data=np.int32(108))
    return path, volume


def test_constants_are_exported_as_time_independent_observables(
    store: moldb.Store, cu_const: tuple[Path, float], tmp_path: Path
) -> None:
    path, volume = cu_const
    v = store.ingest(path)
    t = store.trajectory(v.entry)
    want = {
        "volume": {"value": volume, "unit": "Angstrom^3", "dtype": "<f8"},
        "atoms/n_atoms": {"value": 108, "unit": "", "dtype": "<i4"},
    }
    assert t.descriptor.source["observables_constant"] == want
    assert volume == pytest.approx(10.83**3)
    out = store.export(v.entry, tmp_path / "out.h5md")
    with h5py.File(out) as f:
        vol = f["observables/volume"]
        assert isinstance(vol, h5py.Dataset) and vol.shape == () and vol[()] == volume
        assert vol.attrs["unit"] == "Angstrom^3"
        n = f["observables/atoms/n_atoms"]
        assert n.dtype == np.int32 and n[()] == 108 and "unit" not in n.attrs
        assert f["observables/energy/value"].shape == (20,)
    # MDAnalysis's H5MDReader refuses time-independent observables (as it refuses the source file) ...
    with pytest.raises((ValueError, TypeError)):
        _reader(path)[0]
    with pytest.raises((ValueError, TypeError)):
        _reader(out)[0]
    # ... so constants=False writes a file it reads
    plain = export_h5md(store, v.entry, tmp_path / "plain.h5md", constants=False)
    with h5py.File(plain) as f:
        assert set(f["observables"]) == {"energy"}
    r = _reader(plain)
    np.testing.assert_array_equal(r[4].positions, t.frame(4))
    assert r[4].data["energy"] == t.observables()["energy"].values[4]
    # and back: same constants (values, units, dtypes), same time series
    w = store.ingest(out, entry="CU_AGAIN")
    t2 = store.trajectory(w.entry)
    assert t2.descriptor.source["observables_constant"] == want
    np.testing.assert_array_equal(t2.observables()["energy"].values, t.observables()["energy"].values)
    # a frame label named like a constant keeps the name; the constant moves aside
    store.add_descriptor(v.entry, moldb.FrameLabels("volume", np.full(20, 2.0), derived_from="test"))
    with h5py.File(store.export(v.entry, tmp_path / "clash.h5md")) as f:
        assert f["observables/volume/value"][()].tolist() == [2.0] * 20
        assert f["observables/volume_constant"][()] == volume


def test_frame_labels_are_exported_as_observables_mdanalysis_reads(store: moldb.Store, tmp_path: Path) -> None:
    v = store.ingest(data(CU))
    t = store.trajectory(v.entry)
    energy = t.observables()["energy"].values
    cluster = np.digitize(energy, [1.2, 1.6]).astype(np.int64)
    state = np.where(energy < 1.4, "low", "high")
    late = np.arange(20) >= 10
    labels = {"cluster": cluster, "state": state, "late": late, "energy": energy * 2}
    for name, vals in labels.items():
        store.add_descriptor(v.entry, moldb.FrameLabels(name, vals, derived_from=f"energy-bins/{name}"))
    out = store.export(v.entry, tmp_path / "labels.h5md")
    with h5py.File(out) as f:
        obs = f["observables"]
        assert set(obs) == {"energy", "energy_label", "cluster", "state", "late"}
        np.testing.assert_array_equal(obs["cluster/value"][()], cluster)
        assert dict(obs["cluster"].attrs) == {"moldb_kind": "frame_labels", "derived_from": "energy-bins/cluster"}
        assert list(obs["state"].attrs["categories"]) == ["high", "low"]
        np.testing.assert_array_equal(obs["state/value"][()], (state == "low").astype(int))  # codes
        assert obs["late/value"].dtype == np.int8 and obs["late/value"][()].tolist() == late.astype(int).tolist()
        np.testing.assert_array_equal(obs["energy/value"][()], energy)  # the observable keeps its name
        np.testing.assert_array_equal(obs["energy_label/value"][()], energy * 2)
        assert obs["state/step"].id == f["particles/trajectory/position/step"].id
    r = _reader(out)
    for i in (0, 3, 12, 19):
        d = r[i].data
        assert (d["cluster"], d["state"], d["late"]) == (cluster[i], int(state[i] == "low"), int(late[i]))
        assert d["energy"] == energy[i] and d["energy_label"] == energy[i] * 2
    # back in: labels come back as observables, with what they were; frames_where reads the categories
    w = store.ingest(out, entry="CU_LABELS")
    t2 = store.trajectory(w.entry)
    obs2 = t2.observables()
    np.testing.assert_array_equal(obs2["cluster"].values, cluster)
    assert obs2["state"].attrs == {
        "moldb_kind": "frame_labels",
        "derived_from": "energy-bins/state",
        "categories": ["high", "low"],
    }
    for expr in ("state == 'low' and cluster != 0", "late == 1 and energy_label > 3"):
        np.testing.assert_array_equal(
            store.frames_where(expr, entry=w.entry),
            store.frames_where(expr.replace("energy_label", "energy"), entry=v.entry),
        )
    assert store.frames_where("state == 'low'", entry=w.entry).tolist() == np.flatnonzero(state == "low").tolist()
    # a subset of the frames carries the labels of those frames
    sub = export_h5md(store, v.entry, tmp_path / "sub.h5md", frames=slice(0, 20, 3))
    with h5py.File(sub) as f:
        np.testing.assert_array_equal(f["observables/cluster/value"][()], cluster[::3])
        assert f["observables/cluster/step"][()].tolist() == list(range(0, 20, 3))


def test_writer_refuses_misshapen_series_and_tuples(tmp_path: Path) -> None:
    xyz = np.zeros((2, 3, 3), np.float32)
    kw = {
        "n_atoms": 3,
        "n_frames": 2,
        "positions": lambda lo, hi: xyz[lo:hi],
        "time": np.zeros(2),
        "step": np.arange(2),
        "box": None,
    }
    with pytest.raises(moldb.ValidationError, match=r"observable 'cluster' has \(3,\) rows; expected one per frame"):
        write_h5md(tmp_path / "a.h5md", observables={"cluster": Series(np.arange(3))}, **kw)
    with pytest.raises(moldb.ValidationError, match=r"connectivity 'angles': tuples must be \(n, 2 … 4\) particle"):
        write_h5md(tmp_path / "b.h5md", connectivity={"angles": (np.array([[0, 1, 3]]), None)}, **kw)
    assert not list(tmp_path.iterdir())
