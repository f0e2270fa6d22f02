"""Random schedules of deposit / read / tag / as_of / maintain against an in-memory model; concurrent depositors."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import moldb
from tests import cif_edits as ce
from tests.conftest import data

ENTRIES = {"1O1Z": "mmcif/1o1z.cif.gz", "3O5R": "mmcif/3o5r.cif.gz", "5ZMZ": "mmcif/5zmz.cif.gz"}
N_VARIANTS = 3  # per entry: the file itself and two random B-factor re-fits


def _b_refit(src: Path, dst: Path, seed: int) -> Path:
    n = len(gemmi.cif.read(str(src)).sole_block().find_values("_atom_site.B_iso_or_equiv"))
    delta = np.round(np.random.default_rng(seed).normal(0.0, 2.0, n), 2)
    return ce.edit(src, dst, ce.shift_b(delta))


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Variant files per entry and what each reads back as (from a golden store, one entry per file)."""
    root = tmp_path_factory.mktemp("variants")
    files: dict[str, list[Path]] = {}
    for k, (eid, rel) in enumerate(ENTRIES.items()):
        files[eid] = [data(rel)] + [_b_refit(data(rel), root / f"{eid}_{i}.cif", seed=10 * k + i)
                                    for i in range(1, N_VARIANTS)]
    golden = moldb.create(root / "golden")
    expect: dict[tuple[str, int], tuple[Any, list[Any]]] = {}
    for eid, paths in files.items():
        for i, p in enumerate(paths):
            g = golden.get(golden.ingest(p, entry=f"{eid}_G{i}").entry)
            expect[(eid, i)] = (g.atoms, [(c.name, c.table) for c in g.categories])
    for eid in files:  # the variants really differ
        assert not expect[(eid, 0)][0].equals(expect[(eid, 1)][0])
    return {"files": files, "expect": expect}


def _check_version(store: moldb.Store, eid: str, version: int | str | None, variant: int,
                   variants: dict[str, Any]) -> None:
    s = store.get(eid, version=version)
    atoms, cats = variants["expect"][(eid, variant)]
    assert s.atoms.equals(atoms), (eid, version, variant)
    got = [(c.name, c.table) for c in s.categories]
    assert [n for n, _ in got] == [n for n, _ in cats]
    assert all(x.equals(y) for (_, x), (_, y) in zip(got, cats, strict=True))


entry_ix = st.integers(0, len(ENTRIES) - 1)
operation = st.one_of(
    st.tuples(st.just("deposit"), entry_ix, st.integers(0, N_VARIANTS - 1)),
    st.tuples(st.just("read"), entry_ix, st.integers(0, 7)),
    st.tuples(st.just("tag"), entry_ix, st.integers(0, 7), st.sampled_from(["submitted", "paper", "final"])),
    st.tuples(st.just("as_of"), st.integers(0, 30)),
    st.tuples(st.just("maintain"), st.booleans(), st.booleans()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=st.lists(operation, min_size=1, max_size=9))
def test_random_schedules_match_the_model(variants: dict[str, Any], schedule: list[tuple[Any, ...]]) -> None:
    names = list(ENTRIES)
    root = Path(tempfile.mkdtemp(prefix="moldb-prop-"))
    try:
        store = moldb.create(root / "s")
        ledger: dict[str, list[int]] = {e: [] for e in names}  # entry -> variant deposited as version i+1
        tags: dict[str, dict[str, int]] = {e: {} for e in names}
        commits: list[tuple[int, dict[str, int]]] = []  # timestamp -> latest version per entry after it
        for op in schedule:
            kind = op[0]
            if kind == "deposit":
                eid, var = names[op[1]], op[2]
                v = store.deposit(variants["files"][eid][var], entry=eid, message=f"variant {var}")
                ledger[eid].append(var)
                assert (v.entry, v.version, v.parent) == (eid, len(ledger[eid]), len(ledger[eid]) - 1)
                commits.append((v.timestamp, {e: len(vs) for e, vs in ledger.items() if vs}))
            elif kind == "read":
                eid = names[op[1]]
                if not ledger[eid]:
                    with pytest.raises(moldb.EntryNotFoundError):
                        store.get(eid)
                    continue
                ver = op[2] % len(ledger[eid]) + 1
                _check_version(store, eid, ver, ledger[eid][ver - 1], variants)
                _check_version(store, eid, None, ledger[eid][-1], variants)
            elif kind == "tag":
                eid, name = names[op[1]], op[3]
                if not ledger[eid]:
                    with pytest.raises(moldb.EntryNotFoundError):
                        store.tag(eid, 1, name)
                    continue
                ver = op[2] % len(ledger[eid]) + 1
                store.tag(eid, ver, name)
                tags[eid][name] = ver
                assert store.tags(eid) == tags[eid]
                _check_version(store, eid, name, ledger[eid][ver - 1], variants)
            elif kind == "as_of":
                if not commits:
                    continue
                ts, latest = commits[op[1] % len(commits)]
                pinned = moldb.open(store.uri, as_of=ts)
                assert {r["entry"]: r["version"] for r in pinned.entries().to_pylist()} == latest
                for eid, ver in latest.items():
                    assert store.get(eid, as_of=ts).version.version == ver
            else:
                rep = store.maintain(vacuum=op[1], orphan_grace_s=0 if op[2] else 3600)
                assert rep["orphans"]["collected"] == [] and rep["orphans"]["young"] == []
                assert rep["arrays"]["versions"]["fragments_after"] <= 1
        # the whole model, through a fresh handle
        fresh = moldb.open(store.uri)
        for eid, vs in ledger.items():
            if not vs:
                assert eid not in fresh
                continue
            assert [h.version for h in fresh.history(eid)] == list(range(1, len(vs) + 1))
            for i, var in enumerate(vs, start=1):
                _check_version(fresh, eid, i, var, variants)
            assert fresh.tags(eid) == tags[eid]
        for ts, latest in commits:
            assert {e: fresh.get(e, as_of=ts).version.version for e in latest} == latest
        store.close()
        fresh.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


CHILD = textwrap.dedent("""
    import json, sys, moldb
    store = moldb.open(sys.argv[1])
    done = []
    for path in sys.argv[2:]:
        v = store.deposit(path, entry="1O1Z", message=path, author=f"proc-{sys.argv[2]}")
        done.append([path, v.version, v.timestamp])
    print(json.dumps(done))
""")


def test_concurrent_depositors_get_distinct_versions(tmp_path: Path) -> None:
    n_proc, per_proc = 4, 3
    src = data(ENTRIES["1O1Z"])
    files = [_b_refit(src, tmp_path / f"d{i}.cif", seed=100 + i) for i in range(n_proc * per_proc)]
    store = moldb.create(tmp_path / "s")
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(store.uri),
                               *map(str, files[k * per_proc:(k + 1) * per_proc])],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for k in range(n_proc)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        results.extend(json.loads(out))
    versions = sorted(v for _, v, _ in results)
    assert versions == list(range(1, n_proc * per_proc + 1))
    hist = store.history("1O1Z")
    assert [h.version for h in hist] == versions
    ts = [h.timestamp for h in hist]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)  # commit order = version order, no shared timestamp
    assert all(h.parent == h.version - 1 for h in hist)
    for path, version, stamp in results:  # every version reads back the file its process deposited
        s = store.get("1O1Z", version=version)
        assert s.version.message == path and s.version.timestamp == stamp
        block = gemmi.cif.read(path).sole_block()
        for item in ("B_iso_or_equiv", "Cartn_x"):
            want = np.array(block.find_values(f"_atom_site.{item}"), dtype=float)
            np.testing.assert_array_equal(s.atoms.column(item).to_numpy(), want)
        assert s.version.source["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
