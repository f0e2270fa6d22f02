"""IR through a real store: built-in groupings/descriptors at ingest, user groupings, versions, CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import gemmi
import numpy as np
import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

import moldb
from moldb.cli.main import app
from moldb.ir import TLS, FitBlock, Grouping
from moldb.ir.operators import builtin_operator
from tests.cif_edits import add_waters, edit, shift_b
from tests.conftest import data

ENTRIES = ("5eil", "4zxb", "1o1z", "6ep0", "1l2y")


@pytest.fixture(scope="module")
def ir_store(tmp_path_factory: pytest.TempPathFactory) -> moldb.Store:
    st = moldb.create(tmp_path_factory.mktemp("ir") / "store")
    for e in ENTRIES:
        st.ingest(data(f"mmcif/{e}.cif.gz"))
    yield st
    st.close()


def _gemmi_counts(path: Path) -> dict[tuple[str, int], int]:
    """(auth chain, auth seq) → atoms over all models, counted by gemmi."""
    st = gemmi.read_structure(str(path))
    out: dict[tuple[str, int], int] = {}
    for model in st:
        for ch in model:
            for res in ch:
                out[(ch.name, res.seqid.num)] = out.get((ch.name, res.seqid.num), 0) + len(res)
    return out


def _group_sizes(tab) -> dict[str, int]:
    counts = pc.value_counts(tab.column("group").combine_chunks().cast("string")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def test_5eil_tls_groups_tensors_and_membership(ir_store: moldb.Store) -> None:
    gt = {r["name"]: r for r in ir_store.groupings("5EIL").to_pylist()}
    assert gt["tls"]["n_groups"] == 29 and gt["tls"]["n_unparsed"] == 0
    block = gemmi.cif.read(str(data("mmcif/5eil.cif.gz"))).sole_block()
    tls_rows = block.find("_pdbx_refine_tls.", ["id", "T[1][1]", "L[2][2]", "S[1][2]", "origin_x"])
    tls = {d.id: d for d in ir_store.descriptors("5EIL")}["tls"]
    assert isinstance(tls, TLS) and len(tls.groups) == 29 and tls.groups[0] == tls_rows[0][0] == "1"
    assert tls.T[0, 0, 0] == float(tls_rows[0][1]) == 0.4106
    assert math.isclose(tls.L[0, 1, 1], float(tls_rows[0][2]) * (math.pi / 180) ** 2)
    assert math.isclose(tls.S[0, 0, 1], float(tls_rows[0][3]) * math.pi / 180)
    assert tls.origin[0, 0] == float(tls_rows[0][4])
    assert tls.b_includes_tls is True  # phenix writes total B
    # membership: every group's atom count equals gemmi's count over the file's residue ranges
    counts = _gemmi_counts(data("mmcif/5eil.cif.gz"))
    sizes = _group_sizes(ir_store.grouping("5EIL", "tls"))
    sel = block.find("_pdbx_refine_tls_group.", ["refine_tls_id", "selection_details"])
    for gid, text in ((r[0], gemmi.cif.as_string(r[1])) for r in sel):
        m = re.match(r"chain '(\w+)' and \(resid (-?\d+) through (-?\d+) \)", text.strip())
        assert m, text
        want = sum(n for (c, s), n in counts.items() if c == m[1] and int(m[2]) <= s <= int(m[3]))
        assert sizes[gid] == want > 0, gid


def test_4zxb_buster_and_6ep0_star_selections(ir_store: moldb.Store) -> None:
    gt = {r["name"]: r for r in ir_store.groupings("4ZXB").to_pylist()}
    assert gt["tls"]["n_groups"] == 26 and gt["tls"]["n_unparsed"] == 0
    counts = _gemmi_counts(data("mmcif/4zxb.cif.gz"))
    sizes = _group_sizes(ir_store.grouping("4ZXB", "tls"))
    # group 1: '{ E|1 - E|162 E|168 - E|172 E|177 - E|191 }'
    want = sum(n for (c, s), n in counts.items()
               if c == "E" and (1 <= s <= 162 or 168 <= s <= 172 or 177 <= s <= 191))
    assert sizes["1"] == want > 0
    a_atoms = sum(n for (c, _), n in _gemmi_counts(data("mmcif/6ep0.cif.gz")).items() if c == "A")
    assert _group_sizes(ir_store.grouping("6EP0", "tls"))["1"] == a_atoms  # '{ A|* }'


def test_chain_residue_and_other_builtin_groupings(ir_store: moldb.Store) -> None:
    atoms = ir_store.get("5EIL").atoms
    want = {c["values"]: c["counts"] for c in
            pc.value_counts(atoms.column("label_asym_id").combine_chunks().cast("string")).to_pylist()}
    assert _group_sizes(ir_store.grouping("5EIL", "chain")) == want
    names = set(ir_store.groupings("5EIL").column("name").to_pylist())
    assert {"chain", "residue", "entity", "molecule_type", "altloc", "tls"} <= names
    alt = ir_store.grouping("5EIL", "altloc")
    assert alt.num_rows == atoms.num_rows - atoms.column("label_alt_id").null_count
    mt = _group_sizes(ir_store.grouping("5EIL", "molecule_type"))
    n_water = int(pc.sum(pc.equal(atoms.column("label_comp_id").cast("string"), "HOH")).as_py())
    assert mt["water"] == n_water and sum(mt.values()) == atoms.num_rows
    nmr = {r["name"]: r for r in ir_store.groupings("1L2Y").to_pylist()}
    assert nmr["model"]["n_groups"] == 38
    ens = {d.id: d for d in ir_store.descriptors("1L2Y")}["ensemble"]
    assert ens.sample_axis == "model" and len(ens.states) == 38 and int(ens.regime) == 2


def test_builtin_descriptors_and_operators(ir_store: moldb.Store) -> None:
    d = {x.id: x for x in ir_store.descriptors("1O1Z")}
    assert set(d) == {"tls", "iadp", "altloc"}
    assert d["tls"].b_includes_tls is False  # _refine.pdbx_TLS_residual_ADP_flag 'LIKELY RESIDUAL'
    assert d["iadp"].column_refs == {"B": "B_iso_or_equiv"}
    alt = d["altloc"]
    assert alt.states == ["A", "B"] and len(alt.rows) == 96 and int(alt.regime) == 1 and alt.mode.value == "B"
    assert set(ir_store.descriptors("5EIL")[0].column_refs) == {"U11", "U22", "U33", "U12", "U13", "U23"}
    ops = {r["name"]: r for r in ir_store.operators().to_pylist()}
    for name in ("parametric_gaussian/tls_v1", "parametric_gaussian/iadp_v1", "parametric_gaussian/aadp_v1",
                 "basis/nm_v1", "rigid_body/quat_v1", "identity"):
        assert ops[name]["content_hash"] == builtin_operator(name).content_hash()
        assert ops[name]["venue"] == "registry"
    assert ops["parametric_gaussian/tls_v1"]["composition"] == "additive_covariance"


def test_add_grouping_read_back_and_errors(ir_store: moldb.Store) -> None:
    n = ir_store.get("4ZXB").atoms.num_rows
    mask = np.zeros(n, dtype=bool)
    mask[10:20] = True

    class Sel:
        rows = np.array([100, 101, 102])

    g = ir_store.add_grouping("4ZXB", "domains/v1", kind="heterogeneity_descriptor.scope",
                              members={"NTD": np.arange(5), "RBD": mask, "S2": Sel()},
                              weights={"NTD": [1, 1, 1, 1, 0.5], "RBD": np.ones(10), "S2": [2, 2, 2]},
                              provenance={"source": "user", "author": "ana", "fit": {"software": "manual"}})
    assert isinstance(g, Grouping) and g.groups == ["NTD", "RBD", "S2"]
    tab = ir_store.grouping("4ZXB", "domains/v1")
    assert tab.column("row").to_pylist() == [*range(5), *range(10, 20), 100, 101, 102]
    assert tab.column("group").cast("string").to_pylist()[:6] == ["NTD"] * 5 + ["RBD"]
    assert tab.column("weight").to_pylist()[4] == 0.5
    row = {r["name"]: r for r in ir_store.groupings("4ZXB").to_pylist()}["domains/v1"]
    assert row["kind"] == "heterogeneity_descriptor.scope" and row["n_members"] == 18 and row["weighted"]
    with pytest.raises(moldb.ValidationError, match="already defined"):
        ir_store.add_grouping("4ZXB", "domains/v1", members={"x": [1]})
    with pytest.raises(moldb.ValidationError, match="built-in"):
        ir_store.add_grouping("4ZXB", "chain", members={"x": [1]}, replace=True)
    with pytest.raises(moldb.ValidationError, match="outside"):
        ir_store.add_grouping("4ZXB", "bad", members={"x": [n]})
    with pytest.raises(moldb.ValidationError, match="not valid"):
        ir_store.add_grouping("4ZXB", "bad name", members={"x": [1]})
    with pytest.raises(moldb.EntryNotFoundError, match="no grouping 'nope'"):
        ir_store.grouping("4ZXB", "nope")


def test_add_descriptor_with_fit_provenance(ir_store: moldb.Store) -> None:
    ir_store.add_grouping("5EIL", "echt.domain/v1", kind="heterogeneity_descriptor.scope",
                          members={"A": np.arange(100), "B": np.arange(100, 200)})
    fit = FitBlock(software="pandemic.adp", target="lsq U_input", regularizer="elastic-net",
                   params={"gamma": 0.9, "delta": 0.8}, input_hash="sha256:abc")
    t = TLS(scope="echt.domain/v1", groups=["A", "B"], T=np.eye(3)[None].repeat(2, 0) * 0.1,
            L=np.zeros((2, 3, 3)), S=np.zeros((2, 3, 3)), origin=[[0, 0, 0], [1, 2, 3]])
    got = ir_store.add_descriptor("5EIL", t, provenance={"source": "user", "fit": fit.model_dump()})
    assert got.id == "tls-1"
    back = {d.id: d for d in ir_store.descriptors("5EIL")}["tls-1"]
    assert isinstance(back, TLS) and back.provenance.fit is not None
    assert back.provenance.fit.params["gamma"] == 0.9 and back.origin[1].tolist() == [1, 2, 3]
    with pytest.raises(moldb.ValidationError, match="scope 'nope'"):
        ir_store.add_descriptor("5EIL", TLS(scope="nope", groups=[], T=np.zeros((0, 3, 3)),
                                            L=np.zeros((0, 3, 3)), S=np.zeros((0, 3, 3)), origin=np.zeros((0, 3))))
    obs, var, x = ir_store.atoms_by_descriptor("5EIL")
    assert obs.num_rows == x.num_rows == 7327 and "iadp.B" in var.column("feature").to_pylist()
    assert np.isnan(x.column("tls-1.group").to_numpy()[200]) and x.column("tls-1.group").to_numpy()[150] == 1


def test_groupings_are_versioned(tmp_path: Path) -> None:
    st = moldb.create(tmp_path / "s")
    src = data("mmcif/1o1z.cif.gz")
    st.ingest(src)
    st.add_grouping("1O1Z", "loops/v1", members={"L1": np.arange(20)})
    st.deposit(edit(src, tmp_path / "b.cif", shift_b(1.0)), entry="1O1Z")  # same atoms: user grouping carries
    st.deposit(edit(src, tmp_path / "w.cif", add_waters(2)), entry="1O1Z")  # atoms changed: it does not
    before_v2 = st.history("1O1Z")[1].timestamp
    v1 = {r["name"]: r for r in st.groupings("1O1Z", version=1).to_pylist()}
    v2 = {r["name"]: r for r in st.groupings("1O1Z", version=2).to_pylist()}
    v3 = {r["name"]: r for r in st.groupings("1O1Z").to_pylist()}
    assert "loops/v1" in v1 and v2["loops/v1"]["version"] == 1 and "loops/v1" not in v3
    assert v2["chain"]["version"] == 2 and v3["chain"]["n_members"] == v1["chain"]["n_members"] + 2
    assert st.grouping("1O1Z", "loops/v1", version=1).num_rows == 20
    assert v1["tls"]["n_members"] == 2236
    pinned = moldb.open(tmp_path / "s", as_of=before_v2 - 1)  # after add_grouping, before v2
    assert "loops/v1" in pinned.groupings("1O1Z").column("name").to_pylist()
    early = st.groupings("1O1Z", version=1, as_of=st.history("1O1Z")[0].timestamp)
    assert "loops/v1" not in early.column("name").to_pylist()  # added after v1's commit


def test_cli_groupings_and_descriptors(ir_store: moldb.Store) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["groupings", "5EIL", "--store", ir_store.uri, "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["tls"]["n_groups"] == 29
    res = runner.invoke(app, ["descriptors", "1O1Z", "--store", ir_store.uri, "--json"])
    assert res.exit_code == 0 and {d["id"] for d in json.loads(res.output)} == {"tls", "iadp", "altloc"}
    res = runner.invoke(app, ["groupings", "NOPE", "--store", ir_store.uri])
    assert res.exit_code == 2
