"""The moldb CLI, run in-process with typer's runner against a real store."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from moldb.cli.main import app
from tests.conftest import data

runner = CliRunner()


def test_init_ingest_ls_show_export_log(tmp_path: Path) -> None:
    s = str(tmp_path / "lab-store")
    assert runner.invoke(app, ["init", s]).exit_code == 0
    r = runner.invoke(app, ["ingest", "--store", s, str(data("mmcif/1o1z.cif.gz")), str(data("bcif/1l2y.bcif")),
                            "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert [d["entry"] for d in got["ingested"]] == ["1O1Z", "1L2Y"] and got["failed"] == []
    r = runner.invoke(app, ["ls", "--store", s, "--json"])
    rows = {row["entry"]: row for row in json.loads(r.output)}
    assert rows["1L2Y"]["n_models"] == 38 and rows["1O1Z"]["n_atoms"] == 2302
    r = runner.invoke(app, ["show", "--store", s, "1o1z"])
    assert r.exit_code == 0 and "TLS groups" in r.output and "A B" in r.output
    r = runner.invoke(app, ["log", "--store", s, "1O1Z", "--json"])
    assert json.loads(r.output)[0]["version"] == 1


def test_errors_have_exit_codes(tmp_path: Path) -> None:
    s = str(tmp_path / "lab-store")
    r = runner.invoke(app, ["ls", "--store", s])
    assert r.exit_code == 2 and "moldb init" in r.output
    runner.invoke(app, ["init", s])
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not a structure")
    r = runner.invoke(app, ["ingest", "--store", s, str(bad), str(data("mmcif/1o1z.cif.gz"))])
    assert r.exit_code == 1 and "bad.cif" in r.output and "1 ingested, 1 failed" in r.output
    r = runner.invoke(app, ["show", "--store", s, "9XYZ"])
    assert r.exit_code == 2 and "9XYZ" in r.output


def test_export_formats_read_back(tmp_path: Path) -> None:
    import gemmi

    s = str(tmp_path / "lab-store")
    runner.invoke(app, ["init", s])
    runner.invoke(app, ["ingest", "--store", s, str(data("mmcif/1o1z.cif.gz"))])
    for fmt, name in [("cif", "out.cif"), ("bcif", "out.bcif"), ("pdb", "out.pdb")]:
        out_path = tmp_path / name
        r = runner.invoke(app, ["export", "--store", s, "1O1Z", "--format", fmt, "-o", str(out_path)])
        assert r.exit_code == 0, r.output
        assert out_path.stat().st_size > 10_000
    st = gemmi.read_structure(str(tmp_path / "out.pdb"))
    assert st[0].count_atom_sites() == 2302
    doc = gemmi.cif.read(str(tmp_path / "out.cif"))
    assert doc.sole_block().find_value("_refine.ls_d_res_high") == "1.60"
    r = runner.invoke(app, ["export", "--store", s, "1O1Z", "-o", str(tmp_path / "out.xyz")])
    assert r.exit_code == 2 and "out.xyz" in r.output
