"""Topology-only re-deposits: later versions read the trajectory of the newest earlier version with one.

Input: the corpus' 1L2Y XTC (38 frames x 304 atoms) with ``pdb/1l2y.pdb.gz`` (38 models, 11,552
atoms) as topology, re-deposited as the same PDB file, as ``mmcif/1l2y.cif.gz`` (same atoms, another
file) and as ``mmcif/5zmz.cif.gz`` (31 atoms), plus ``cu.h5md`` as a second trajectory entry.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import moldb
from moldb.api.trajectory import TrajectoryTopologyError
from tests.conftest import data

pytest.importorskip("MDAnalysis")

XTC, TOP = "traj/1l2y/1l2y.xtc", "pdb/1l2y.pdb.gz"


def test_topology_only_redeposit_reads_the_earlier_trajectory(store: moldb.Store, tmp_path: Path) -> None:
    store.ingest(data(XTC), topology=data(TOP), entry="TRP")
    ref = store.trajectory("TRP").frames()
    store.add_descriptor("TRP", moldb.FrameLabels("cluster", np.arange(38) % 3, derived_from="test"))
    v2 = store.deposit(data(TOP), entry="TRP", message="topology only")
    assert v2.version == 2
    t = store.trajectory("TRP")
    assert (t.version, t.for_version, t.n_frames) == (1, 2, 38)
    assert "TRP v1 (read for v2)" in repr(t)
    np.testing.assert_array_equal(t.frames(), ref)
    assert store.trajectory("TRP", version=2).version == 1
    assert store.trajectory("TRP", version=1).for_version == 1
    # per-frame queries, labels and export follow the trajectory
    hits = store.frames_where("cluster == 2 and time > 10", entry="TRP")
    np.testing.assert_array_equal(hits, np.flatnonzero((np.arange(38) % 3 == 2) & (t.time > 10)))
    d = store.add_descriptor("TRP", moldb.FrameLabels("late", np.arange(38) >= 30, derived_from="test"))
    assert d.id == "frame_labels/late"
    assert store.frames_where("late == 1 and cluster == 0").tolist() == [30, 33, 36]
    assert {x.id for x in store.descriptors("TRP", version=1)} >= {"frame_labels/cluster", "frame_labels/late"}
    out = store.export("TRP", tmp_path / "trp.h5md")
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["particles/trajectory/position/value"][5], ref[5])
        assert f["observables/late/value"][()].tolist() == [0] * 30 + [1] * 8
    # the same atoms from another file (another topo block): still the v1 trajectory
    store.deposit(data("mmcif/1l2y.cif.gz"), entry="TRP", message="mmCIF of the same model")
    t3 = store.trajectory("TRP")
    assert (t3.version, t3.for_version) == (1, 3)
    assert store.frames_where("late == 1", entry="TRP").tolist() == list(range(30, 38))


def test_redeposit_with_another_atom_count_names_both_versions(store: moldb.Store) -> None:
    store.ingest(data(XTC), topology=data(TOP), entry="TRP")
    store.deposit(data(TOP), entry="TRP", message="topology only")
    store.deposit(data("mmcif/5zmz.cif.gz"), entry="TRP", message="another structure")
    msg = (
        r"TRP v3 has no trajectory of its own, and its topology \(31 atoms\) does not match the one of v1 "
        r"\(11552 atoms\), the newest version with a trajectory; read that one with "
        r"store.trajectory\('TRP', version=1\)"
    )
    with pytest.raises(TrajectoryTopologyError, match=msg):
        store.trajectory("TRP")
    with pytest.raises(moldb.EntryNotFoundError, match=msg):  # it is a "not found" for that version
        store.frames_where("time > 1", entry="TRP")
    # the versions that read v1's trajectory still query its frames
    hits = store.frames_where("frame >= 30", entry="TRP", version=2)
    assert hits.tolist() == list(range(30, 38)) == store.frames_where("frame >= 30", entry="TRP", version=1).tolist()
    with pytest.raises(moldb.ValidationError, match="needs entry"):
        store.frames_where("frame >= 30", version=1)
    with pytest.raises(TrajectoryTopologyError, match="TRP v3 has no trajectory of its own"):
        store.add_descriptor("TRP", moldb.FrameLabels("x", np.zeros(38)))
    assert store.trajectory("TRP", version=2).version == 1  # earlier versions still read it
    assert store.trajectory("TRP", version=1).n_frames == 38
    # scanning every entry skips it
    cu = store.ingest(data("traj/cu_h5md/cu.h5md"))
    assert store.frames_where("time > 0.0185").tolist() == [19]
    assert store.frames_where("time > 0.0185", entry=cu.entry).tolist() == [19]
    # depositing a topology with the trajectory's atom count again makes it readable again
    store.deposit(data(TOP), entry="TRP", message="back to the NMR models")
    t = store.trajectory("TRP")
    assert (t.version, t.for_version) == (1, 4)


def test_purging_the_trajectory_version_removes_it_from_later_ones(store: moldb.Store) -> None:
    store.ingest(data(XTC), topology=data(TOP), entry="TRP")
    store.deposit(data(TOP), entry="TRP", message="topology only")
    assert store.trajectory("TRP").version == 1
    store.purge_versions("TRP", keep_last=1)
    with pytest.raises(
        moldb.EntryNotFoundError, match=r"TRP v2 has no trajectory; a trajectory is stored as a new entry"
    ):
        store.trajectory("TRP")
