"""``frames_where`` over ``time`` / ``step`` / ``frame`` with labels and observables, and the precedence of names.

Input: the corpus' ``cu.h5md`` (20 frames, times in fs → 0.000 … 0.019 ps, steps 0 … 19,
``observables/atoms/energy`` in eV) and a copy of it given an observable named ``frame``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import moldb
from tests.conftest import data

pytest.importorskip("MDAnalysis")
h5py = pytest.importorskip("h5py")

CU = "traj/cu_h5md/cu.h5md"


@pytest.fixture()
def cu(store: moldb.Store) -> tuple[moldb.Store, str, np.ndarray]:
    v = store.ingest(data(CU))
    with h5py.File(data(CU)) as f:
        energy = f["observables/atoms/energy/value"][()]
    return store, v.entry, energy


def test_time_step_and_frame_in_expressions(cu: tuple[moldb.Store, str, np.ndarray]) -> None:
    store, entry, energy = cu
    t = store.trajectory(entry)
    np.testing.assert_allclose(t.time, np.arange(20) * 1e-3)  # fs in the file, ps stored
    hits = store.frames_where("time > 0.0105 and energy < 1.5")
    np.testing.assert_array_equal(hits, np.flatnonzero((t.time > 0.0105) & (energy < 1.5)))
    assert hits.tolist() == [12, 14, 15, 16, 17, 18, 19]
    assert store.frames_where("frame >= 5 and frame < 8").tolist() == [5, 6, 7]
    assert store.frames_where("step == 3 or step == 17", entry=entry).tolist() == [3, 17]
    assert store.frames_where("not frame < 18").tolist() == [18, 19]
    # with labels: a string label, the built-ins and an observable in one expression
    store.add_descriptor(
        entry, moldb.FrameLabels("state", np.where(np.arange(20) % 2, "odd", "even"), derived_from="parity")
    )
    assert store.frames_where("state == 'odd' and frame > 12 and energy < 1.5").tolist() == [15, 17, 19]
    # a column nobody has
    with pytest.raises(moldb.ValidationError, match=r"unknown column 'temperature'"):
        store.frames_where("temperature > 300")


def test_labels_and_observables_shadow_the_builtins(cu: tuple[moldb.Store, str, np.ndarray], tmp_path: Path) -> None:
    store, entry, _ = cu
    # a label called "time" shadows the built-in time; one called "energy" the observable
    store.add_descriptor(entry, moldb.FrameLabels("time", np.arange(20)[::-1] * 10, derived_from="test"))
    assert store.frames_where("time >= 180", entry=entry).tolist() == [0, 1]
    store.add_descriptor(entry, moldb.FrameLabels("energy", np.arange(20), derived_from="test"))
    assert store.frames_where("energy < 2", entry=entry).tolist() == [0, 1]
    assert store.frames_where("step >= 18", entry=entry).tolist() == [18, 19]  # untouched built-in
    # an observable called "frame" shadows the built-in frame index
    path = tmp_path / "cu_frame.h5md"
    shutil.copy(data(CU), path)
    with h5py.File(path, "r+") as f:
        g = f["observables"].create_group("frame")
        g.create_dataset("value", data=np.arange(20, dtype=np.int64) + 100)
        g["step"] = f["particles/atoms/position/step"]
    w = store.ingest(path, entry="CU_FRAME")
    assert store.frames_where("frame == 103", entry=w.entry).tolist() == [3]
    assert store.frames_where("frame == 3", entry=w.entry).tolist() == []
    # two trajectories have "step": name the entry
    with pytest.raises(moldb.ValidationError, match=r"exist in the trajectories of several entries.*pass entry="):
        store.frames_where("step > 3")


def test_entry_without_trajectory_has_no_frame_columns(store: moldb.Store) -> None:
    store.ingest(data("pdb/1l2y.pdb.gz"))
    with pytest.raises(
        moldb.ValidationError, match="1L2Y has no frame labels or observables to query: it has no trajectory"
    ):
        store.frames_where("time > 0", entry="1L2Y")
    with pytest.raises(moldb.ValidationError, match="no entry has a trajectory"):
        store.frames_where("time > 0")
    with pytest.raises(moldb.EntryNotFoundError, match="entry NOPE is not in the store"):
        store.frames_where("time > 0", entry="NOPE")
