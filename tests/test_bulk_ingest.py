"""Bulk ingest (``Store.ingest_many``, ``moldb ingest``): batches commit as one, and store what single ingests store."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import moldb
import moldb.api.bulk as bulk_mod
import moldb.ingest.hooks as hooks
from moldb.cli.main import app
from tests.conftest import data

MIXED = ["mmcif/1o1z.cif.gz", "mmcif/1cbs_updated.cif.gz", "bcif/1l2y.bcif", "mmtf/1O2F.mmtf", "pdb/1bna.pdb.gz",
         "mmcif/3o5r.cif.gz", "mmcif/1xnr.cif.gz"]


def fragments(store: Path, array: str) -> int:
    return len(list((store / array / "__fragments").iterdir()))


def _existing(rels: list[str]) -> list[Path]:
    paths = [data(r) for r in rels]
    missing = [p for p in paths if not p.exists()]
    assert not missing, f"test inputs missing: {missing}"
    return paths


def test_batches_store_what_single_ingests_store(tmp_path: Path) -> None:
    files = _existing(MIXED)
    bulk, single = moldb.create(tmp_path / "bulk"), moldb.create(tmp_path / "single")
    seen: list[str] = []
    report = bulk.ingest_many(files, batch_entries=3, progress=lambda p: seen.append(p.name))
    assert report.failed == [] and report.batches == 3  # 3 + 3 + 1
    assert seen == [f.name for f in files]
    assert [v.entry for v in report.ingested] == ["1O1Z", "1CBS", "1L2Y", "1O2F", "1BNA", "3O5R", "1XNR"]
    stamps = [v.timestamp for v in report.ingested]
    assert stamps[0] == stamps[1] == stamps[2] < stamps[3] == stamps[4] == stamps[5] < stamps[6]
    assert report.n_atoms == sum(v.n_atoms for v in report.ingested) > 50_000
    for f in files:
        single.ingest(f)
    for v in report.ingested:
        a, b = bulk.get(v.entry), single.get(v.entry)
        assert a.atoms.equals(b.atoms), v.entry
        assert [(c.name, c.table) for c in a.categories] == [(c.name, c.table) for c in b.categories]
        assert a.bonds().equals(b.bonds()), v.entry
        assert bulk.groupings(v.entry).equals(single.groupings(v.entry)), v.entry
        assert a.version.content_hash == b.version.content_hash and a.version.summary == b.version.summary
        assert a.version.message == f"ingest {Path(v.source['path']).name}"
    box = ((0.0, 0.0, 0.0), (20.0, 20.0, 20.0))  # answered from the spatial index each commit writes
    near = bulk.select(box=box).to_arrow()
    assert near.num_rows > 1000 and near.equals(single.select(box=box).to_arrow())
    # one fragment per batch in each array, against about one per file
    assert fragments(tmp_path / "bulk", "versions") == 3 and fragments(tmp_path / "single", "versions") == 7
    assert fragments(tmp_path / "bulk", "blocks") == 3


def test_failures_are_reported_and_write_nothing(tmp_path: Path) -> None:
    st = moldb.create(tmp_path / "s")
    st.ingest(data("mmcif/1o1z.cif.gz"))
    garbage = tmp_path / "garbage.cif"
    garbage.write_bytes(b"HEADER junk\x00\x01\x02 not a structure\n" * 10)
    empty = tmp_path / "empty.cif"
    empty.write_text("data_x\nloop_\n_atom_site.id\n")
    truncated = tmp_path / "trunc.cif.gz"
    truncated.write_bytes(gzip.compress(gzip.decompress(data("mmcif/3o5r.cif.gz").read_bytes())[:20_000])[:5_000])
    files = [data("mmcif/1o1z.cif.gz"), garbage, empty, data("mmcif/1cbs_updated.cif.gz"), tmp_path / "missing.cif",
             truncated, data("bcif/1cbs_full.bcif"), data("mmcif/3o5r.cif.gz")]
    report = st.ingest_many(files)
    assert [v.entry for v in report.ingested] == ["1CBS", "3O5R"]
    why = {Path(f.path).name: f.error for f in report.failed}
    assert list(why) == ["1o1z.cif.gz", "garbage.cif", "empty.cif", "missing.cif", "trunc.cif.gz", "1cbs_full.bcif"]
    assert isinstance(why["1o1z.cif.gz"], moldb.DuplicateEntryError) and "already stored" in str(why["1o1z.cif.gz"])
    dup = why["1cbs_full.bcif"]
    assert isinstance(dup, moldb.DuplicateEntryError) and "twice in this batch" in str(dup)
    assert "1cbs_full.bcif" in str(dup)
    assert isinstance(why["garbage.cif"], moldb.MoldbError) and "garbage.cif" in str(why["garbage.cif"])
    assert isinstance(why["empty.cif"], moldb.ValidationError) and "empty.cif: no atoms" in str(why["empty.cif"])
    assert isinstance(why["missing.cif"], OSError)
    assert isinstance(why["trunc.cif.gz"], moldb.ParseError)
    assert sorted(st.entries().column("entry").to_pylist()) == ["1CBS", "1O1Z", "3O5R"]
    assert [h.version for h in st.history("1O1Z")] == [1]
    assert st.get("1CBS").version.source["format"] == "mmcif"
    assert json.loads(json.dumps(report.as_dict()))["failed"][2]["type"] == "ValidationError"


def test_an_entry_failing_inside_its_batch_is_rolled_back_alone(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(backend: Any, ts: int, entry: str, parsed: Any, blocks: dict[str, int], new: list[str]) -> None:
        if entry == "1CBS":
            raise moldb.ValidationError("1CBS refused by a test hook")

    monkeypatch.setattr(hooks, "_HOOKS", [*hooks.ingest_hooks(), ("test.refuse", refuse)])
    st = moldb.create(tmp_path / "s")
    report = st.ingest_many([data("mmcif/1cbs_updated.cif.gz"), data("mmcif/1o1z.cif.gz")])
    assert [v.entry for v in report.ingested] == ["1O1Z"]
    assert [str(f.error) for f in report.failed] == ["1CBS refused by a test hook"]
    # the refused entry was first: its operator registration was rolled back, the next entry's kept it
    assert len(st.operators()) > 0
    assert st.entries().column("entry").to_pylist() == ["1O1Z"]
    blocks = st._backend.reader("blocks", refresh=True).query(attrs=["entry"]).multi_index[:]
    assert {e.decode() if isinstance(e, bytes) else e for e in blocks["entry"]} == {"1O1Z"}


def test_time_travel_sees_a_batch_all_at_once(tmp_path: Path) -> None:
    st = moldb.create(tmp_path / "s")
    st._backend.fixed_timestamps = iter([1, 10, 20])
    st.ingest(data("mmcif/1o1z.cif.gz"))
    st.ingest_many([data("mmcif/1cbs_updated.cif.gz"), data("bcif/1l2y.bcif")])
    st.ingest_many([data("mmcif/3o5r.cif.gz")])
    for when, expect in [(1, ["1O1Z"]), (9, ["1O1Z"]), (10, ["1CBS", "1L2Y", "1O1Z"]),
                         (20, ["1CBS", "1L2Y", "1O1Z", "3O5R"])]:
        assert sorted(moldb.open(tmp_path / "s", as_of=when).entries().column("entry").to_pylist()) == expect


def test_a_crash_mid_batch_leaves_no_entry_of_it_visible(tmp_path: Path) -> None:
    uri = tmp_path / "s"
    st = moldb.create(uri)
    st.ingest_many([data("mmcif/1o1z.cif.gz")])
    script = textwrap.dedent(f"""
        import os, signal, moldb
        from moldb.storage.backend import Backend
        orig = Backend.write_cells
        def write_cells(self, name, *a, **k):
            if name == "versions" and self._batch is None:  # the batch's commit point, after its blocks
                os.kill(os.getpid(), signal.SIGKILL)
            return orig(self, name, *a, **k)
        Backend.write_cells = write_cells
        moldb.open({str(uri)!r}).ingest_many({[str(data("mmcif/1cbs_updated.cif.gz")), str(data("bcif/1l2y.bcif"))]!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == -9, proc.stderr.decode()
    assert fragments(uri, "blocks") == 2  # the crashed batch's blocks landed, unreferenced
    fresh = moldb.open(uri)
    assert fresh.entries().column("entry").to_pylist() == ["1O1Z"]
    assert fresh.get("1O1Z").atoms.num_rows == 2302
    rep = fresh.maintain(orphan_grace_s=0)
    assert {o["entry"] for o in rep["orphans"]["collected"]} == {"1CBS", "1L2Y"}
    again = fresh.ingest_many([data("mmcif/1cbs_updated.cif.gz"), data("bcif/1l2y.bcif")])
    assert [v.entry for v in again.ingested] == ["1CBS", "1L2Y"] and again.failed == []


def test_parse_threads_change_nothing_but_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _existing(["mmcif/3o5r.cif.gz", "bcif/1l2y.bcif", "mmcif/1o1z.cif.gz", "mmtf/1O2F.mmtf",
                       "mmcif/1cbs_updated.cif.gz"])
    bad = tmp_path / "bad.cif"
    bad.write_text("data_x\n_cell.length_a 1\n")
    files.insert(2, bad)
    got = {}
    for w in (1, 3):
        st = moldb.create(tmp_path / f"w{w}")
        report = st.ingest_many(files, batch_entries=2, workers=w)
        assert [Path(f.path).name for f in report.failed] == ["bad.cif"]
        assert "bad.cif" in str(report.failed[0].error)
        got[w] = [(v.entry, v.content_hash, v.n_atoms) for v in report.ingested]
        assert report.batches == 3
    assert got[1] == got[3] and [g[0] for g in got[1]] == ["3O5R", "1L2Y", "1O1Z", "1O2F", "1CBS"]
    monkeypatch.setenv("MOLDB_INGEST_WORKERS", "3")
    assert bulk_mod.default_workers() == 3
    monkeypatch.setenv("MOLDB_INGEST_WORKERS", "many")
    with pytest.raises(ValueError, match="MOLDB_INGEST_WORKERS='many'"):
        bulk_mod.default_workers()
    monkeypatch.delenv("MOLDB_INGEST_WORKERS")
    assert 1 <= bulk_mod.default_workers() <= 4


def test_bad_batch_sizes_are_refused(tmp_path: Path) -> None:
    st = moldb.create(tmp_path / "s")
    with pytest.raises(ValueError, match="batch_entries"):
        st.ingest_many([data("mmcif/1o1z.cif.gz")], batch_entries=0)
    with pytest.raises(ValueError, match="workers must be"):
        st.ingest_many([data("mmcif/1o1z.cif.gz")], workers=0)
    with pytest.raises(moldb.ValidationError, match="read-only"):
        moldb.open(tmp_path / "s", as_of=1).ingest_many([data("mmcif/1o1z.cif.gz")])
    assert len(st.entries()) == 0


def test_cli_ingest_commits_in_batches(tmp_path: Path) -> None:
    s = str(tmp_path / "s")
    runner = CliRunner()
    assert runner.invoke(app, ["init", s]).exit_code == 0
    files = [str(p) for p in _existing(MIXED[:5])]
    r = runner.invoke(app, ["ingest", "--store", s, "--batch", "2", "--workers", "2", "--json", *files])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert [d["entry"] for d in got["ingested"]] == ["1O1Z", "1CBS", "1L2Y", "1O2F", "1BNA"]
    assert len({d["timestamp"] for d in got["ingested"]}) == 3
    r = runner.invoke(app, ["ingest", "--store", s, files[0], str(tmp_path / "nope.cif")])
    assert r.exit_code == 1 and "0 ingested, 2 failed" in r.output and "nope.cif" in r.output
