"""The 6VXX ECHT benchmark store (``benchmarks/_spike.py``) and its storage figures (``benchmarks/bench_ir.py``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import moldb
from moldb.storage import ir_store
from tests.conftest import DATA

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import _spike, bench_ir

DEG = math.pi / 180.0
N_ATOMS = 22_812


@pytest.fixture(scope="module")
def spike(tmp_path_factory: pytest.TempPathFactory) -> tuple[moldb.Store, str, list[str]]:
    store, entry, ids = _spike.build_spike_store(tmp_path_factory.mktemp("spike"))
    yield store, entry, ids
    store.close()


def test_real_6vxx_is_ingested(spike: tuple[moldb.Store, str, list[str]]) -> None:
    store, entry, ids = spike
    assert entry == "SPIKE" and ids == [lv for lv, _ in _spike.LEVELS] + ["echt.atomic"]
    assert _spike.spike_source() == DATA / "pdb" / "6vxx_biovia.pdb.gz"
    s = store.get(entry)
    assert s.atoms.num_rows == N_ATOMS
    assert s.version.source["sha256"] == "075ac43cdb683a8f2db282747b5d388e264c62f41a6ac85affd5e234b31c78ed"
    assert sorted(set(s.atoms.column("auth_asym_id").to_pylist())) == ["A", "B", "C"]


def test_levels_partition_every_atom(spike: tuple[moldb.Store, str, list[str]]) -> None:
    store, entry, _ = spike
    counts = {"echt.molecule/v1": 1, "echt.domain/v1": 12, "echt.secondary_structure/v1": 332,
              "echt.residue/v1": 2916}
    table = {r["name"]: r for r in store.groupings(entry).to_pylist()}
    for name, n in counts.items():
        assert table[name]["n_groups"] == n and table[name]["kind"] == "heterogeneity_descriptor.scope"
        rows = store.grouping(entry, name).column("row").to_numpy()
        assert np.array_equal(np.sort(rows), np.arange(N_ATOMS)), name  # each atom exactly once
    bbsc = _spike.echt_groups(store, entry, residue_level="bb+sc")  # ECHT's backbone / side-chain split
    residue = next(v for k, v in bbsc.items() if k.startswith("echt.residue"))
    assert len(residue) == 5658
    assert np.array_equal(np.sort(np.concatenate(list(residue.values()))), np.arange(N_ATOMS))


def test_domains_follow_the_residue_ranges(spike: tuple[moldb.Store, str, list[str]]) -> None:
    store, entry, _ = spike
    atoms = store.get(entry).atoms
    chain = np.asarray(atoms.column("auth_asym_id").to_pylist())
    resid = atoms.column("auth_seq_id").to_numpy()
    m = store.grouping(entry, "echt.domain/v1")
    names = np.asarray(m.column("group").to_pylist())
    rows = m.column("row").to_numpy()
    rbd = rows[names == "B.RBD"]
    assert set(chain[rbd]) == {"B"} and resid[rbd].min() >= 319 and resid[rbd].max() <= 541
    sd = resid[rows[names == "C.SD1-2"]]
    assert set(np.unique(sd)) <= set(range(306, 319)) | set(range(542, 686))
    assert resid[rows[names == "A.S2"]].min() >= 686


def test_sse_groups_are_contiguous_runs(spike: tuple[moldb.Store, str, list[str]]) -> None:
    store, entry, _ = spike
    m = store.grouping(entry, "echt.secondary_structure/v1")
    names = m.column("group").to_pylist()
    kinds = {n.split(".")[1][0] for n in names}
    assert kinds == {"H", "E", "C"}
    assert sum(n.split(".")[1].startswith("H") for n in set(names)) == 30
    rows = m.column("row").to_numpy()
    idx = m.column("group_index").to_numpy()
    for g in np.unique(idx)[:50]:
        r = np.sort(rows[idx == g])
        assert np.all(np.diff(r) == 1)  # one run of consecutive atoms


def test_parameters_are_at_printed_precision(spike: tuple[moldb.Store, str, list[str]]) -> None:
    store, entry, _ = spike
    ds = {d.id: d for d in store.descriptors(entry)}
    for lvl, _ in _spike.LEVELS:
        d = ds[lvl]
        assert np.array_equal(np.rint(d.T * 1e4) / 1e4, d.T)
        assert np.array_equal((np.rint(d.L / DEG**2 * 1e4) / 1e4) * DEG**2, d.L)
        s = np.rint(d.S / DEG * 1e4).astype(np.int64)
        assert np.array_equal((s / 1e4) * DEG, d.S) and np.all(np.trace(s, axis1=1, axis2=2) == 0)
        assert np.array_equal(np.rint(d.origin * 1e4) / 1e4, d.origin)
        assert np.array_equal(d.T, d.T.transpose(0, 2, 1)) and np.array_equal(d.L, d.L.transpose(0, 2, 1))
        cell = max((c for c in ir_store.read_cells(store._backend, "descriptors", entry) if c["name"] == lvl),
                   key=lambda c: c["ts"])
        enc = {a["name"]: a for a in ir_store.describe_packed(
            ir_store.read_cell(store._backend, "descriptors", entry, cell["version"], lvl))}
        assert all(a["kind"] == "fixed" and a["exceptions"] == 0 for a in enc.values())
        assert enc["T"]["encoding"]["sym"] and enc["L"]["encoding"]["sym"] and enc["S"]["encoding"]["trace0"]
    b = ds["echt.atomic"].B
    assert b.shape == (N_ATOMS,) and np.array_equal(np.rint(b * 100) / 100, b)
    # physically scaled: the stack's mean B is near the chapter's 28.8 Å²
    u = bench_ir.u_total(store, [lv for lv, _ in _spike.LEVELS] + ["echt.atomic"])
    mean_b = float(np.trace(u, axis1=1, axis2=2).mean() / 3 * 8 * math.pi**2)
    assert 20 < mean_b < 40


def test_bad_residue_level_and_missing_source(tmp_path: Path, spike: tuple[moldb.Store, str, list[str]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store, entry, _ = spike
    with pytest.raises(ValueError, match="residue_level"):
        _spike.echt_groups(store, entry, residue_level="atom")
    monkeypatch.setenv("MOLDB_BENCH_DATA", str(tmp_path / "nowhere"))
    assert _spike.spike_source() == tmp_path / "nowhere" / "pdb" / "6vxx_biovia.pdb.gz"
    with pytest.raises(FileNotFoundError):
        _spike.build_spike_store(tmp_path / "w")


def test_chapter_configuration_meets_the_storage_goal(tmp_path: Path) -> None:
    """One TLS group per residue (the chapter's ~3,000): on disk <= 250 kB; aniso peer measured."""
    fig = bench_ir.echt_figure(tmp_path, 0, "residue", True, peer=True)
    assert [r["groups"] for r in fig["levels"]] == [1, 12, 332, 2916, N_ATOMS]
    assert fig["disk_B"] <= bench_ir.GOAL
    assert fig["payload_B"] < 0.4 * sum(r["v1_params_B"] for r in fig["levels"])
    assert fig["aniso"]["block_B"] < fig["aniso"]["float32_B"]


def test_dag_figure() -> None:
    dag = bench_ir.dag_figure(reps=1)
    assert dag["legal"] == dag["count"] == 1000 and dag["median_s"] < 0.5 and dag["peak_B"] < 200_000
