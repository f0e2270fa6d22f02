"""``Store.maintain()``: consolidation + vacuum keep every version bit-identical; orphan blocks; retention."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tiledb
from typer.testing import CliRunner

import moldb
from moldb.cli.main import app
from moldb.storage.maintenance import find_orphans
from tests import cif_edits as ce
from tests._crash import crash_before_commit
from tests.conftest import data

FILES = {"1O1Z": "mmcif/1o1z.cif.gz", "3O5R": "mmcif/3o5r.cif.gz", "5ZMZ": "mmcif/5zmz.cif.gz"}


def _snapshot(st: moldb.Store, tmp_path: Path, tag: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Every version of every entry: atom table, categories and exported mmCIF text."""
    out = {}
    for row in st.entries().to_pylist():
        for h in st.history(row["entry"]):
            s = st.get(h.entry, version=h.version)
            path = s.write(tmp_path / f"{tag}_{h.entry}_{h.version}.cif")
            out[(h.entry, h.version)] = {"atoms": s.atoms, "cats": [(c.name, c.table) for c in s.categories],
                                         "text": path.read_text(), "ts": h.timestamp, "blocks": h.blocks}
    return out


def _assert_same(before: dict[tuple[str, int], dict[str, Any]], after: dict[tuple[str, int], dict[str, Any]]) -> None:
    assert list(after) == list(before)
    for key, b in before.items():
        a = after[key]
        assert a["atoms"].equals(b["atoms"]), key
        assert a["atoms"].schema.equals(b["atoms"].schema), key
        assert [n for n, _ in a["cats"]] == [n for n, _ in b["cats"]], key
        assert all(x.equals(y) for (_, x), (_, y) in zip(a["cats"], b["cats"], strict=True)), key
        assert a["text"] == b["text"], key
        assert (a["ts"], a["blocks"]) == (b["ts"], b["blocks"]), key


def _history_store(tmp_path: Path) -> tuple[moldb.Store, list[moldb.VersionInfo]]:
    """Three entries with 1–3 versions each (B re-fits, waters added), tags, interleaved commits."""
    st = moldb.create(tmp_path / "store")
    written = []
    for eid, rel in FILES.items():
        written.append(st.ingest(data(rel), entry=eid))
    for k, delta in enumerate((1.0, -0.5)):
        for eid, rel in FILES.items():
            if eid == "5ZMZ" and k:
                continue
            f = ce.edit(data(rel), tmp_path / f"{eid}_{k}.cif", ce.shift_b(delta))
            written.append(st.deposit(f, entry=eid, message=f"refit {k}", author="ana"))
    f = ce.edit(data(FILES["1O1Z"]), tmp_path / "1o1z_w.cif", ce.add_waters(3))
    written.append(st.deposit(f, entry="1O1Z", message="waters"))
    st.tag("1O1Z", 1, "deposited")
    st.tag("3O5R", 2, "paper")
    return st, written


def test_every_version_reads_back_identical_after_maintain(tmp_path: Path) -> None:
    st, written = _history_store(tmp_path)
    before = _snapshot(st, tmp_path, "before")
    as_of = {v.timestamp: [(r["entry"], r["version"]) for r in
                           moldb.open(st.uri, as_of=v.timestamp).entries().to_pylist()] for v in written}
    frags_before = {n: len(tiledb.array_fragments(str(tmp_path / "store" / n))) for n in ("versions", "blocks")}
    assert frags_before["versions"] > 1 and frags_before["blocks"] > 1

    rep = st.maintain()

    assert rep["arrays"]["versions"]["fragments_before"] == frags_before["versions"]
    assert all(a["fragments_after"] <= 1 for a in rep["arrays"].values())
    assert rep["bytes_after"] < rep["bytes_before"]
    assert rep["orphans"] == {"collected": [], "young": [], "uncollected_old": [], "grace_s": 3600.0}
    for store in (st, moldb.open(st.uri)):  # the maintaining handle and a fresh one
        _assert_same(before, _snapshot(store, tmp_path, "after"))
        assert store.tags("1O1Z") == {"deposited": 1} and store.get("3O5R", version="paper").version.version == 2
        for v in written:  # as_of: the store pinned at every commit, and per-entry
            pinned = moldb.open(st.uri, as_of=v.timestamp)
            assert [(r["entry"], r["version"]) for r in pinned.entries().to_pylist()] == as_of[v.timestamp]
            assert store.get(v.entry, as_of=v.timestamp).version.version == v.version
    # TileDB's own time travel on the consolidated sparse `versions` array (per-cell timestamps)
    backend = st._backend
    for v in written:
        cells = backend.read_versions(as_of=v.timestamp, attrs=["ts"])
        assert sorted(int(t) for t in cells["ts"]) == sorted(w.timestamp for w in written if w.timestamp <= v.timestamp)
    # writing continues after maintenance, and a second run is a no-op for the data
    v_next = st.deposit(data(FILES["3O5R"]), entry="3O5R", message="again")
    assert v_next.version == 4 and v_next.parent == 3
    rep2 = st.maintain()
    assert rep2["arrays"]["versions"]["fragments_after"] == 1
    assert st.get("3O5R", version=4).atoms.equals(before[("3O5R", 1)]["atoms"])
    _assert_same(before, {k: v for k, v in _snapshot(st, tmp_path, "again").items() if k != ("3O5R", 4)})
    log = st.maintenance_log()
    assert [e["op"] for e in log] == ["maintain", "maintain"] and log[0]["timestamp"] == rep["timestamp"]


def test_orphan_blocks_collected_after_grace_period(tmp_path: Path) -> None:
    st, _ = _history_store(tmp_path)
    st.maintain()  # one fragment per array: the orphans below then sit beside consolidated data
    before = _snapshot(st, tmp_path, "before")
    crash_before_commit(tmp_path / "store", data("mmcif/5eil.cif.gz"))
    assert "CRASHED" not in st
    orphans = find_orphans(st._backend, until=2**62, cutoff=0)
    assert len(orphans["young"]) == 5 and {o["entry"] for o in orphans["young"]} == {"CRASHED"}
    size_with_orphans = st.disk_usage()["blocks"]

    rep = st.maintain()  # default grace: one hour, the orphans are seconds old
    assert rep["orphans"]["collected"] == [] and len(rep["orphans"]["young"]) == 5
    assert len(find_orphans(st._backend, until=2**62, cutoff=0)["young"]) == 5

    rep = st.maintain(orphan_grace_s=0)
    assert sorted(o["block"] for o in rep["orphans"]["collected"]) == sorted(o["block"] for o in orphans["young"])
    assert find_orphans(st._backend, until=2**62, cutoff=2**62) == {"old": [], "young": []}
    blocks_after = rep["arrays"]["blocks"]
    assert blocks_after["fragments_after"] == 1
    assert blocks_after["bytes_after"] < size_with_orphans - 100_000  # 5EIL's blocks are gone from disk
    _assert_same(before, _snapshot(moldb.open(st.uri), tmp_path, "after"))
    v = st.deposit(data("mmcif/5eil.cif.gz"), entry="CRASHED")  # the entry the crashed writer never committed
    assert v.version == 1 and st.get("CRASHED").atoms.num_rows == 7327
    log = st.maintenance_log()
    assert [e["orphans_collected"] for e in log] == [0, 0, 5] and log[1]["orphans_young"] == 5


def test_purge_versions_is_explicit_and_logged(tmp_path: Path) -> None:
    st, _ = _history_store(tmp_path)
    keep = _snapshot(st, tmp_path, "before")
    res = st.purge_versions("1o1z", keep_last=1, author="admin")
    assert (res["purged"], res["kept"], res["tags_removed"]) == ([1, 2, 3], [4], ["deposited"])
    assert [h.version for h in st.history("1O1Z")] == [4]
    with pytest.raises(moldb.EntryNotFoundError):
        st.get("1O1Z", version=1)
    assert st.tags("1O1Z") == {}
    rep = st.maintain(orphan_grace_s=0)
    purged_blocks = {b for (e, v), s in keep.items() if e == "1O1Z" and v < 4 for b in s["blocks"].values()}
    live = {b for s in _snapshot(st, tmp_path, "x").values() for b in s["blocks"].values()}
    assert {o["block"] for o in rep["orphans"]["collected"]} == purged_blocks - live
    after = _snapshot(moldb.open(st.uri), tmp_path, "after")
    _assert_same({k: v for k, v in keep.items() if k[0] != "1O1Z" or k[1] == 4}, after)
    assert st.deposit(data(FILES["1O1Z"]), entry="1O1Z").version == 5  # numbers are never reused
    assert [e["op"] for e in st.maintenance_log()] == ["purge_versions", "maintain"]
    with pytest.raises(moldb.ValidationError):
        st.purge_versions("1O1Z", keep_last=0)


def test_cli_maintain(tmp_path: Path) -> None:
    st, _ = _history_store(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["maintain", "--store", st.uri, "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["arrays"]["versions"]["fragments_after"] == 1 and rep["orphans"]["collected"] == []
    r = runner.invoke(app, ["maintain", "--store", st.uri, "--no-vacuum", "--orphan-grace", "0"])
    assert r.exit_code == 0 and "orphan blocks collected: 0" in r.output
    r = runner.invoke(app, ["maintain", "--store", str(tmp_path / "nowhere")])
    assert r.exit_code == 2


def test_store_opened_before_another_handle_maintains(tmp_path: Path) -> None:
    st, _ = _history_store(tmp_path)
    reader = moldb.open(st.uri)
    expected = reader.get("3O5R", version=1).atoms
    other = moldb.open(st.uri)
    other.maintain()
    assert reader.get("3O5R", version=1).atoms.equals(expected)
