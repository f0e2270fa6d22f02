"""store.renderer / to_structure / RenderDataset / `moldb render` on real entries with TLS, aniso ADPs, altlocs."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import gemmi
import numpy as np
import pytest
from typer.testing import CliRunner

import moldb
from moldb.errors import EntryNotFoundError, ValidationError
from moldb.operators import B_TO_U, aadp_v1, iadp_v1, tls_from_mmcif_units, tls_v1
from tests._tls_data import read_tls
from tests.conftest import data


@pytest.fixture(scope="module")
def st(tmp_path_factory: pytest.TempPathFactory) -> moldb.Store:
    s = moldb.create(tmp_path_factory.mktemp("render") / "store")
    for f in ("5eil", "1o1z", "6ep0", "1l2y"):
        s.ingest(data(f"mmcif/{f}.cif.gz"))
    yield s
    s.close()


def _models(path: Path, n_atoms: int) -> list[np.ndarray]:
    """Coordinates per model read back by gemmi, ordered by atom serial (ids are 1..m*n)."""
    g = gemmi.read_structure(str(path))
    out = []
    for k, m in enumerate(g):
        x = np.full((n_atoms, 3), np.nan)
        for cra in m.all():
            x[cra.atom.serial - 1 - k * n_atoms] = cra.atom.pos.tolist()
        out.append(x)
    return out


# -- deposited ADPs: the reconciled U_total against independent float64 references -------------------
def test_5eil_u_total_matches_reconciled_reference(st):
    """5EIL (PHENIX: B and ANISOU are totals): U = ANISOU where present, else U_TLS + (B - B_TLS)/8π² I."""
    r = st.renderer("5EIL")
    rows = r.atom_rows()
    U = r.covariance()
    assert U.shape == (len(rows), 3, 3) == (7283, 3, 3)  # 44 rows of the unchosen altlocs left out
    d = read_tls(data("mmcif/5eil.cif.gz"))  # gemmi-parsed, all 7,327 atoms in gemmi's chain/residue order
    serial = [at.serial for ch in gemmi.read_structure(str(data("mmcif/5eil.cif.gz")))[0] for res in ch for at in res]
    ids = st.get("5EIL").atoms.column("id").to_numpy()
    perm = np.argsort(np.argsort(ids))[np.searchsorted(np.sort(ids), serial)]  # gemmi atom k -> table row
    order = np.empty(len(perm), dtype=np.int64)
    order[perm] = np.arange(len(perm))  # table row -> gemmi atom
    d.xyz, d.b, d.u6, d.group = d.xyz[order], d.b[order], d.u6[order], d.group[order]
    T, L, S = tls_from_mmcif_units(d.T, d.L, d.S)
    u_tls = tls_v1(d.xyz, T, L, S, d.origin, d.group)
    b_res = np.maximum(d.b - np.trace(u_tls, axis1=1, axis2=2) / 3 / B_TO_U, 0)
    ref = u_tls + iadp_v1(b_res)
    has_u = np.isfinite(d.u6[:, 0])
    ref[has_u] = aadp_v1(d.u6[has_u])
    np.testing.assert_allclose(U, ref[rows], atol=2e-6)  # gemmi keeps coordinates / U in float32
    assert has_u.sum() == 3588 and (d.group >= 0).sum() == 7221
    np.testing.assert_allclose(r.mean(), d.xyz[rows], atol=1e-5)
    # the total is consistent with the deposited B: tr(U)/3 == B/8π² on non-aniso atoms outside clamping
    ok = ~has_u[rows] & (b_res[rows] > 0)
    np.testing.assert_allclose(np.trace(U[ok], axis1=1, axis2=2) / 3, d.b[rows][ok] * B_TO_U, atol=1e-6)


def test_1o1z_refmac_residual_b_adds_to_tls(st):
    """1O1Z (REFMAC, residual B): U = U_TLS + B/8π² I, nothing subtracted."""
    descs = {d.id: d for d in st.descriptors("1O1Z")}
    assert descs["tls"].b_includes_tls is False
    r = st.renderer("1O1Z")
    rows = r.atom_rows()
    a = st.get("1O1Z").atoms
    x = np.stack([a.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")], 1)
    b = a.column("B_iso_or_equiv").to_numpy()
    tls = descs["tls"]
    m = st.grouping("1O1Z", "tls")
    g = np.full(len(x), -1)
    g[m.column("row").to_numpy()] = m.column("group_index").to_numpy()
    ref = tls_v1(x, tls.T, tls.L, tls.S, tls.origin, g) + iadp_v1(b)
    np.testing.assert_allclose(r.covariance(), ref[rows], atol=1e-12)
    assert r.notes == []


def test_adp_sum_and_descriptor_selection(st):
    r_sum = st.renderer("6EP0", adp="sum")
    r_dep = st.renderer("6EP0")
    r_b = st.renderer("6EP0", descriptors=["iadp"])
    U_b = r_b.covariance()
    b = st.get("6EP0").atoms.column("B_iso_or_equiv").to_numpy()[r_b.atom_rows()]
    np.testing.assert_allclose(U_b, iadp_v1(b), atol=1e-15)
    # summing the deposited descriptors as stored counts the disorder more than once
    tr_sum = np.trace(r_sum.covariance(), axis1=1, axis2=2).mean()
    tr_dep = np.trace(r_dep.covariance(), axis1=1, axis2=2).mean()
    assert tr_sum > 2 * tr_dep
    with pytest.raises(ValidationError, match="no descriptor"):
        st.renderer("6EP0", descriptors=["nope"])
    with pytest.raises(ValidationError, match="adp='both'"):
        st.renderer("6EP0", adp="both")


# -- joint states --------------------------------------------------------------------------------
def test_altloc_joint_states_and_rows(st):
    r = st.renderer("1O1Z")
    nodes = r.discrete_nodes
    assert len(nodes) == 13 and all(k.startswith("altloc:") and v == ["A", "B"] for k, v in nodes.items())
    assert r.n_joint_states() == 2**13
    first = next(iter(r.joint_states()))
    assert set(first) == set(nodes)
    a = st.get("1O1Z").atoms
    alt = np.asarray(a.column("label_alt_id").cast("string").fill_null("").to_pylist())
    occ = a.column("occupancy").to_numpy()
    node = "altloc:A/12"
    rows_a, rows_b = r.atom_rows({node: "A"}), r.atom_rows({node: "B"})
    assert len(rows_a) == len(rows_b) and not np.array_equal(rows_a, rows_b)
    assert set(alt[rows_b]) <= {"", "A", "B"}
    all_b = r.atom_rows({"altloc": "B"})
    assert "A" not in set(alt[all_b]) and (alt[all_b] == "B").sum() == (alt == "B").sum()
    # the default picks the higher-occupancy altloc of each residue
    default = r.atom_rows()
    assert np.all(occ[default][alt[default] != ""] >= 0.5 - 1e-9)
    np.testing.assert_allclose(r.mean({node: "B"}), np.stack(
        [a.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")], 1)[rows_b])


def test_ensemble_state_picks_model(st):
    r = st.renderer("1L2Y")
    assert r.discrete_nodes == {"ensemble": [str(i) for i in range(1, 39)]}
    a = st.get("1L2Y").atoms
    model = a.column("pdbx_PDB_model_num").to_numpy()
    x = np.stack([a.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")], 1)
    np.testing.assert_allclose(r.mean({"model": "5"}), x[model == 5])
    np.testing.assert_array_equal(r.atom_rows({"ensemble": "38"}), np.flatnonzero(model == 38))
    assert len(list(r.joint_states())) == 38


def test_bad_states(st):
    r = st.renderer("1O1Z")
    with pytest.raises(ValidationError, match="unknown state key 'altloc:Z/999'"):
        r.mean({"altloc:Z/999": "A"})
    with pytest.raises(ValidationError, match="has no state 'C'"):
        r.sample(2, state={"altloc:A/12": "C"})
    with pytest.raises(ValidationError, match="no residue has altloc 'Q'"):
        r.mean({"altloc": "Q"})
    with pytest.raises(ValidationError, match="mapping"):
        r.mean("A")  # type: ignore[arg-type]


# -- sampling -----------------------------------------------------------------------------------
def test_monte_carlo_matches_u_total_on_6ep0(st):
    r = st.renderer("6EP0")
    U = r.covariance()
    sub = np.arange(0, U.shape[0], 97)
    d = r.sample(20_000, seed=5)[:, sub] - r.mean()[sub]
    C = np.einsum("sni,snj->nij", d, d) / len(d)
    err = np.linalg.norm(C - U[sub], axis=(1, 2)) / np.linalg.norm(U[sub], axis=(1, 2))
    assert err.max() < 0.06, err.max()
    assert r.psd_report().n_clipped == 0


def test_sample_reproducible_and_failure_paths(st):
    r = st.renderer("5EIL")
    a, b, c = r.sample(3, seed=7), r.sample(3, seed=7), r.sample(3, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValidationError, match="positive integer"):
            r.sample(bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="seed=-1"):
        r.sample(1, seed=-1)
    with pytest.raises(EntryNotFoundError, match="NOPE"):
        st.renderer("NOPE")
    with pytest.raises(EntryNotFoundError, match="no version 9"):
        st.renderer("5EIL", version=9)
    with pytest.raises(ValidationError, match="device 'tpu'"):
        st.renderer("5EIL", device="tpu")


def test_cuda_requested_without_cuda_is_a_clear_error(st):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; see test_cuda_renderer")
    with pytest.raises(ValidationError, match=r"torch.cuda.is_available\(\) is False.*device='cpu'"):
        st.renderer("5EIL", device="cuda")


def test_torch_backend_on_cpu_agrees(st):
    torch = pytest.importorskip("torch")
    rn = st.renderer("5EIL")
    rt = st.renderer("5EIL", backend="torch")
    assert isinstance(rt.mean(), torch.Tensor)
    np.testing.assert_allclose(rt.covariance().numpy(), rn.covariance(), atol=1e-12)
    s = rt.sample(4, seed=1)
    assert s.shape == (4, 7283, 3)
    torch.testing.assert_close(s, rt.sample(4, seed=1))
    p = rt.to_structure(s[:2])
    assert p.atoms.num_rows == 2 * 7283


def test_cuda_renderer(st):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False on this machine")
    rc, rn = st.renderer("5EIL", device="cuda"), st.renderer("5EIL")
    np.testing.assert_allclose(rc.covariance().cpu().numpy(), rn.covariance(), atol=1e-12)
    assert rc.sample(10, seed=0).device.type == "cuda"


# -- to_structure round trip -------------------------------------------------------------------------
def test_to_structure_round_trip_gemmi(st, tmp_path):
    r = st.renderer("5EIL")
    draws = r.sample(20, state={"altloc": "B"}, seed=7)
    s = r.to_structure(draws[:5])
    assert s.atoms.num_rows == 5 * 7283
    p = s.write(tmp_path / "ensemble.cif")
    models = _models(p, 7283)
    assert len(models) == 5
    for k in range(5):
        np.testing.assert_allclose(models[k], draws[k], atol=5.1e-4)  # 3 decimals in the file
    g = gemmi.read_structure(str(p))
    assert {cra.atom.altloc for cra in g[0].all()} == {"\0"}  # one conformer per model
    assert g[0].count_atom_sites() == 7283 and g.resolution == pytest.approx(2.25)
    # gzip and a single mean model
    pm = r.to_structure(r.mean({"altloc": "B"}), state={"altloc": "B"}).write(tmp_path / "mean.cif.gz")
    with gzip.open(pm, "rt") as fh:
        assert "_atom_site" in fh.read()
    assert len(gemmi.read_structure(str(pm))) == 1


def test_to_structure_shape_errors(st):
    r = st.renderer("5EIL")
    r.sample(2, seed=0)
    with pytest.raises(ValidationError, match=r"expected \(m, 7283, 3\)"):
        r.to_structure(np.zeros((2, 10, 3)))
    r1 = st.renderer("1L2Y")
    x = r1.sample(3, state={"model": "2"}, seed=0)
    s = r1.to_structure(x)  # state of the last sample() is remembered
    assert s.atoms.num_rows == 3 * 304


# -- RenderDataset ---------------------------------------------------------------------------------
def test_render_dataset_dataloader_two_workers(st):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from moldb.torch import RenderDataset, collate_renders

    ds = RenderDataset(st, entries=["5EIL", "1O1Z"], n_samples=6, seed=11)
    assert len(ds) == 12
    assert pickle.loads(pickle.dumps(ds)).uri == st.uri  # the URI travels, never the handle
    ref = {i: ds[i]["coords"] for i in (0, 5, 6, 11)}  # built in the parent, before the workers start
    got: dict[int, torch.Tensor] = {}
    # spawn, as docs/render.md advises: a forked child of a process whose TileDB thread pools are
    # running can crash (seen as a SIGSEGV in a DataLoader worker when the whole suite runs)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_renders, multiprocessing_context="spawn")
    for b in loader:
        assert b["coords"].dtype == torch.float32 and b["mask"].shape == b["coords"].shape[:2]
        for k, i in enumerate(b["index"].tolist()):
            got[i] = b["coords"][k, : int(b["n_atoms"][k])]
            assert b["mask"][k].sum() == b["n_atoms"][k]
    assert sorted(got) == list(range(12))
    for i, t in ref.items():
        torch.testing.assert_close(got[i], t)  # reproducible per (seed, index) across processes
    assert got[0].shape == (7283, 3) and got[6].shape == (2254, 3)
    assert not torch.equal(got[0], got[1])
    mean = torch.from_numpy(st.renderer("5EIL").mean()).float()
    assert 0.5 < float((got[0] - mean).norm(dim=1).pow(2).mean().sqrt()) < 3.0  # Å-scale thermal displacement


def test_render_dataset_spawn_and_errors(st):
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from moldb.torch import RenderDataset

    ds = RenderDataset(str(st.uri), entries=["1l2y"], n_samples=4, seed=2, state={"model": "3"}, dtype="float64")
    items = list(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="spawn"))
    assert [it["index"] for it in items] == [0, 1, 2, 3]
    assert items[0]["coords"].shape == (304, 3)
    with pytest.raises(ValidationError, match="non-empty list"):
        RenderDataset(st, entries=[])
    with pytest.raises(ValidationError, match="n_samples=0"):
        RenderDataset(st, entries=["5EIL"], n_samples=0)
    with pytest.raises(IndexError):
        ds[4]
    with pytest.raises(EntryNotFoundError):
        RenderDataset(st, entries=["NOPE"], n_samples=1)[0]


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_render_end_to_end(st, tmp_path):
    from moldb.cli.main import app

    runner = CliRunner()
    out = tmp_path / "ensemble.cif"
    res = runner.invoke(app, ["render", "5EIL", "--store", str(st.uri), "--state", "altloc:A/51=B", "--draws", "20",
                              "--seed", "7", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["models"] == 20 and info["n_atoms"] == 7283 and info["state"]["altloc:A/51"] == "B"
    assert set(info["state"]) == {"altloc:A/51", "altloc:B/6", "altloc:C/5"}
    assert 0.5 < info["rms_displacement"] < 3.0
    models = _models(out, 7283)
    assert len(models) == 20
    r = st.renderer("5EIL")
    np.testing.assert_allclose(models[3], r.sample(20, state={"altloc:A/51": "B"}, seed=7)[3], atol=5.1e-4)
    res = runner.invoke(app, ["render", "5EIL", "-s", str(st.uri), "--list-states"])
    assert res.exit_code == 0 and "altloc:A/51: A B" in res.stdout and "8 legal joint state(s)" in res.stdout
    for args, msg in ((["--state", "bogus=B"], "unknown state key"), (["--draws", "0"], "positive integer"),
                      (["--state", "novalue"], "NODE=STATE"), (["--device", "cuda"], "cuda")):
        res = runner.invoke(app, ["render", "5EIL", "-s", str(st.uri), "-o", str(tmp_path / "x.cif"), *args])
        if args[0] == "--device":
            torch = pytest.importorskip("torch")
            if torch.cuda.is_available():
                continue
        assert res.exit_code == 2, (args, res.output)
        assert msg in " ".join(res.output.split())
    res = runner.invoke(app, ["render", "NOPE", "-s", str(st.uri), "-o", str(tmp_path / "x.cif")])
    assert res.exit_code == 2 and "not in the store" in res.output
    res = runner.invoke(app, ["render", "5EIL", "-s", str(st.uri)])
    assert res.exit_code == 2 and "--output" in res.output
