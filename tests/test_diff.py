"""``Store.diff`` / ``diff_structures`` on real re-depositions of 5EIL, checked against gemmi's reading."""

from __future__ import annotations

import json
import time
from pathlib import Path

import gemmi
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

import moldb
from moldb.cli.main import app
from moldb.ingest.formats import read_file
from moldb.versioning.diff import LIST_CAP, diff_structures
from tests import cif_edits as ce
from tests.conftest import data

SRC = "mmcif/5eil.cif.gz"
N_5EIL = 7327


@pytest.fixture
def eil(store: moldb.Store) -> moldb.Store:
    store.ingest(data(SRC))
    return store


def test_bfactor_refit_with_rfree_and_tls(eil: moldb.Store, tmp_path: Path) -> None:
    src = data(SRC)
    f = tmp_path / "refit.cif"

    def refit(block: gemmi.cif.Block) -> None:
        ce.shift_b(1.5)(block)
        ce.set_value("_refine.ls_R_factor_R_free", "0.2391")(block)
        ce.set_row_value("pdbx_refine_tls", "id", "1", "T[1][1]", "0.4000")(block)

    ce.edit(src, f, refit)
    eil.deposit(f, entry="5EIL", message="TLS re-fit")
    d = eil.diff("5EIL", 1, 2)
    b_old = np.array(ce.column_text(src, "B_iso_or_equiv"), dtype=float)
    b_new = np.array(ce.column_text(f, "B_iso_or_equiv"), dtype=float)
    assert (d.n_atoms, d.matched, d.added, d.removed, d.renamed) == ((N_5EIL, N_5EIL), N_5EIL, 0, 0, 0)
    assert d.changed_columns == {"B_iso_or_equiv": int(np.count_nonzero(b_old != b_new))} == {"B_iso_or_equiv": N_5EIL}
    assert (d.moved, d.rmsd, d.max_shift) == (0, 0.0, 0.0)
    assert set(d.categories_changed) == {"refine", "pdbx_refine_tls"}
    assert d.categories_changed["refine"]["values"] == {"ls_R_factor_R_free": ["0.2450", "0.2391"]}
    assert d.categories_changed["pdbx_refine_tls"]["items_changed"] == {"T[1][1]": 1}
    assert d.tls_changed == {"pdbx_refine_tls": {"added": [], "removed": [],
                                                 "changed": {"1": {"T[1][1]": ["0.4106", "0.4000"]}}}}
    assert d.categories_added == d.categories_removed == []
    dd = d.as_dict()
    assert json.loads(json.dumps(dd)) == dd
    assert dd["a"]["version"] == 1 and dd["b"]["version"] == 2 and dd["b"]["message"] == "TLS re-fit"
    assert not dd["identical"]


def test_three_waters_added(eil: moldb.Store, tmp_path: Path) -> None:
    f = ce.edit(data(SRC), tmp_path / "waters.cif", ce.add_waters(3))
    eil.deposit(f, entry="5EIL")
    d = eil.diff("5EIL", 1, 2)
    assert (d.n_atoms, d.matched, d.added, d.removed, d.renamed, d.moved) == ((N_5EIL, N_5EIL + 3), N_5EIL, 3, 0, 0, 0)
    assert d.changed_columns == {} and d.rmsd == 0.0
    assert [(a["residue"], a["chain"], a["seq"], a["atom"], a["id"]) for a in d.added_atoms] == [
        ("HOH", "G", 233, "O", 7328), ("HOH", "G", 234, "O", 7329), ("HOH", "G", 235, "O", 7330)]
    assert d.removed_atoms == [] and d.categories_changed == {} and d.tls_changed == {}
    back = eil.diff("5EIL", 2, 1)  # and the other way round
    assert (back.added, back.removed, back.matched) == (0, 3, N_5EIL)


def test_atom_renamed_and_residue_renamed(eil: moldb.Store, tmp_path: Path) -> None:
    f = tmp_path / "renamed.cif"

    def rename(block: gemmi.cif.Block) -> None:
        ce.rename_atom("137", "CD")(block)  # ILE A 8 CD1 -> CD (the old PDB name)
        ce.rename_residue("7327", "DOD")(block)  # last water becomes heavy water, in place

    ce.edit(data(SRC), f, rename)
    eil.deposit(f, entry="5EIL")
    d = eil.diff("5EIL", 1, 2)
    assert (d.added, d.removed, d.renamed, d.moved) == (0, 0, 2, 0)
    assert d.matched == N_5EIL - 1  # the renamed atom changed its key; the renamed residue's atom did not
    assert d.changed_columns == {"label_comp_id": 1, "auth_comp_id": 1}
    first, second = d.renamed_atoms
    assert first == {"model": 1, "chain": "A", "seq": 8, "ins": None, "alt": None,
                     "old": {"residue": "ILE", "atom": "CD1", "id": 137},
                     "new": {"residue": "ILE", "atom": "CD", "id": 137}}
    assert (second["old"]["residue"], second["new"]["residue"], second["seq"]) == ("HOH", "DOD", 232)


def test_coordinates_moved_rmsd_matches_gemmi(eil: moldb.Store, tmp_path: Path) -> None:
    src = data(SRC)
    t = ce.atom_rows(gemmi.cif.read(str(src)).sole_block())
    chain, seq = ce.col(t, "auth_asym_id"), ce.col(t, "auth_seq_id")

    def sel(row: list[str]) -> bool:
        return row[chain] == "A" and 10 <= int(row[seq]) <= 20

    n_sel = sum(sel([str(v) for v in r]) for r in t)
    shifts = np.round(np.random.default_rng(7).normal(0.0, 0.4, (n_sel, 3)), 3)
    shifts[0] = (0.0, 0.0, 0.0)  # one selected atom stays put
    f = ce.edit(src, tmp_path / "moved.cif", ce.move_atoms(sel, shifts))
    eil.deposit(f, entry="5EIL", message="rebuilt loop")
    d = eil.diff("5EIL", 1, 2)
    x0, x1 = ce.coords(src), ce.coords(f)  # gemmi's parse, rows in file order (same atoms)
    shift = np.sqrt(((x1 - x0) ** 2).sum(axis=1))
    assert d.matched == N_5EIL and d.added == d.removed == d.renamed == 0
    assert d.moved == int(np.count_nonzero(np.any(x0 != x1, axis=1))) == n_sel - 1
    assert d.rmsd == pytest.approx(float(np.sqrt(np.mean(shift**2))), abs=1e-9)
    assert d.max_shift == pytest.approx(float(shift.max()), abs=1e-9)
    assert d.changed_columns == {c: int(np.count_nonzero(x0[:, j] != x1[:, j]))
                                 for j, c in enumerate(("Cartn_x", "Cartn_y", "Cartn_z"))}


def test_identical_and_tags(eil: moldb.Store) -> None:
    eil.deposit(data(SRC), entry="5EIL")
    eil.tag("5EIL", 1, "deposited")
    d = eil.diff("5EIL", "deposited", 2)
    assert d.identical and d.matched == N_5EIL and d.changed_columns == {} and d.categories_changed == {}
    with pytest.raises(moldb.EntryNotFoundError):
        eil.diff("5EIL", 1, 9)


def test_lists_are_capped_counts_exact() -> None:
    p = read_file(data(SRC))
    waters = pc.equal(p.atoms.column("label_comp_id").cast(pa.string()), "HOH")
    fewer = p.atoms.filter(pc.invert(waters))
    d = diff_structures(p.atoms, p.categories, fewer, p.categories)
    n_water = int(pc.sum(waters).as_py())
    assert d.removed == n_water > LIST_CAP and len(d.removed_atoms) == LIST_CAP
    assert d.matched == N_5EIL - n_water and d.added == 0


def test_duplicate_keys_pair_in_file_order() -> None:
    t = pa.table({"pdbx_PDB_model_num": [1, 1, 1], "label_asym_id": ["A", "A", "A"], "auth_seq_id": [1, 1, 1],
                  "pdbx_PDB_ins_code": [None, None, None], "label_atom_id": ["CA", "CA", "CB"],
                  "label_alt_id": [None, None, None], "Cartn_x": [1.0, 2.0, 3.0], "Cartn_y": [0.0] * 3,
                  "Cartn_z": [0.0] * 3})
    u = t.set_column(6, "Cartn_x", pa.array([1.0, 2.5, 3.0]))
    d = diff_structures(t, [], u, [])
    assert (d.matched, d.moved, d.max_shift) == (3, 1, 0.5)


def test_diff_of_290k_atoms_under_one_second() -> None:
    p = read_file(data("mmtf/4V5A.mmtf"))
    a = p.atoms
    rng = np.random.default_rng(1)
    n = a.num_rows
    dx = np.round(rng.normal(0, 0.05, n), 3)
    x = a.column("Cartn_x").to_numpy() + dx
    b_fac = a.column("B_iso_or_equiv").to_numpy() + 2.0
    b = a.set_column(a.column_names.index("Cartn_x"), "Cartn_x", pa.array(x))
    b = b.set_column(b.column_names.index("B_iso_or_equiv"), "B_iso_or_equiv", pa.array(b_fac))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        d = diff_structures(a, p.categories, b, p.categories)
        best = min(best, time.perf_counter() - t0)
    moved = x != a.column("Cartn_x").to_numpy()
    assert n > 290_000 and d.matched == n and d.moved == int(moved.sum())
    assert d.changed_columns == {"Cartn_x": int(moved.sum()), "B_iso_or_equiv": n}
    assert d.rmsd == pytest.approx(float(np.sqrt(np.mean((x - a.column("Cartn_x").to_numpy()) ** 2))), abs=1e-12)
    assert best <= 1.0, f"diff of {n} atoms took {best:.2f} s"


runner = CliRunner()


def test_cli_deposit_tag_diff_get(tmp_path: Path) -> None:
    s = str(tmp_path / "st")
    assert runner.invoke(app, ["init", s]).exit_code == 0
    r = runner.invoke(app, ["deposit", str(data(SRC)), "--store", s, "--entry", "5eil", "--message", "first",
                            "--author", "ana", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["version"] == 1
    f = ce.edit(data(SRC), tmp_path / "w.cif", ce.add_waters(3))
    r = runner.invoke(app, ["deposit", str(f), "--store", s, "--entry", "5EIL", "-m", "3 waters", "-a", "ana"])
    assert r.exit_code == 0 and "5EIL v2" in r.output
    r = runner.invoke(app, ["tag", "5EIL", "1", "published", "--store", s])
    assert r.exit_code == 0 and "v1" in r.output
    r = runner.invoke(app, ["diff", "5EIL", "published", "2", "--store", s, "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["atoms"]["added"]["count"] == 3 and got["a"]["version"] == 1 and got["b"]["message"] == "3 waters"
    r = runner.invoke(app, ["diff", "5EIL", "1", "2", "--store", s])
    assert r.exit_code == 0 and "added" in r.output
    out = tmp_path / "v1.cif"
    r = runner.invoke(app, ["get", "5EIL", "--version", "published", "-o", str(out), "--store", s])
    assert r.exit_code == 0, r.output
    assert read_file(out).n_atoms == N_5EIL
    v2_ts = moldb.open(s).history("5EIL")[1].timestamp
    out2 = tmp_path / "v2.cif"
    r = runner.invoke(app, ["get", "5EIL", "--as-of", str(v2_ts), "-o", str(out2), "--store", s])
    assert r.exit_code == 0 and read_file(out2).n_atoms == N_5EIL + 3
    r = runner.invoke(app, ["diff", "5EIL", "1", "7", "--store", s])
    assert r.exit_code == 2 and "no version 7" in r.output
    r = runner.invoke(app, ["get", "5EIL", "--as-of", "1970-01-02", "-o", str(out2), "--store", s])
    assert r.exit_code == 2
