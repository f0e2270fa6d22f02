"""Stored motion descriptors (nm_v1, quat_v1, TorchScript decoder, H5MD frames) rendered by store.renderer."""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import moldb
from moldb.cli.main import app
from moldb.errors import ValidationError
from moldb.operators import nm_v1, quat_v1
from moldb.render import (
    BasisDescriptor,
    DecoderDescriptor,
    ExternalReference,
    Renderer,
    RenderModel,
    RigidDescriptor,
)
from tests.conftest import data

_JIT = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch 2.13 deprecates TorchScript
H5MD = "traj/cobrotoxin/cobrotoxin.h5md"


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("motion") / "store"
    s = moldb.create(p)
    s.ingest(data("mmcif/1l2y.cif.gz"))  # 38 NMR models x 304 atoms: the ensemble node restricts rows
    s.ingest(data("traj/cobrotoxin/cobrotoxin.pdb.gz"))  # topology of the H5MD frames
    a = s.get("1L2Y").atoms
    seq = a.column("auth_seq_id").to_numpy().astype(int)
    s.add_grouping("1L2Y", "halves/v1", members={"N": seq <= 10, "C": seq > 10})
    model = a.column("pdbx_PDB_model_num").to_numpy().astype(int)
    name = np.asarray(a.column("label_atom_id").to_pylist())
    s.add_grouping("1L2Y", "ca1", members={"CA": (name == "CA") & (model == 1)})
    s.close()
    return p


@pytest.fixture
def st(path: Path) -> moldb.Store:
    s = moldb.open(path)
    yield s
    s.close()


def _xyz(s: moldb.Store, entry: str) -> np.ndarray:
    a = s.get(entry).atoms
    return np.stack([a.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")], 1).astype(np.float64)


def _pos(rows: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """Positions of the rendered rows ``rows`` that lie in ``sub`` (both ascending)."""
    return np.flatnonzero(np.isin(rows, sub))


# -- nm_v1 + quat_v1 ---------------------------------------------------------------------------------
def test_normal_modes_and_rigid_body_round_trip(path: Path) -> None:
    s = moldb.open(path)
    n = s.get("1L2Y").atoms.num_rows
    rng = np.random.default_rng(0)
    basis = (rng.normal(size=(3, n, 3)) * 0.1).astype(np.float32)
    nm = s.add_descriptor("1L2Y", moldb.NormalModes(id="nm", scope="halves/v1", basis=basis,
                                                    coeffs=[1.0, -0.5, 0.25], coeff_std=[0.3, 0.2, 0.1],
                                                    policy="sample_per_step"))
    q = np.array([np.cos(0.3), 0.0, np.sin(0.3), 0.0])
    rb = s.add_descriptor("1L2Y", moldb.RigidBody(id="rb", scope="halves/v1", group="C", q=q,
                                                  centre=[1.0, 2.0, 3.0], translation=[0.5, 0, -0.5],
                                                  reference_offset=[0.0, 0.0, 1.0]))
    assert (nm.id, rb.id) == ("nm", "rb")
    s.close()
    st = moldb.open(path)
    got = {d.id: d for d in st.descriptors("1L2Y")}
    assert isinstance(got["nm"], moldb.NormalModes) and got["nm"].basis.dtype == np.float32
    np.testing.assert_array_equal(got["nm"].basis, basis)
    assert got["rb"].group == "C" and got["rb"].operator.name == "rigid_body/quat_v1"
    r = st.renderer("1L2Y", descriptors=["ensemble", "nm", "rb"])
    assert r.discrete_nodes == {"ensemble": [str(i) for i in range(1, 39)]}
    x = _xyz(st, "1L2Y")
    seq = st.get("1L2Y").atoms.column("auth_seq_id").to_numpy().astype(int)
    c_rows = np.flatnonzero(seq > 10)
    for state in (None, {"model": "7"}):
        rows = r.atom_rows(state)
        assert len(rows) == 304
        # independent reference: the operators on the rendered rows
        want = x[rows] + np.asarray(nm_v1(basis[:, rows].astype(np.float64), np.array([1.0, -0.5, 0.25])))
        c = _pos(rows, c_rows)
        want[c] += quat_v1(want[c], q, np.array([1.0, 2.0, 4.0]), np.array([0.5, 0, -0.5]))
        np.testing.assert_allclose(r.mean(state), want, atol=1e-9)
        # the same draws as a hand-built RenderModel
        hand = RenderModel(x[rows], continuous=(
            BasisDescriptor("nm", basis[:, rows], np.array([1.0, -0.5, 0.25]), policy="sample_per_step",
                            coeff_std=np.array([0.3, 0.2, 0.1])),
            RigidDescriptor("rb", q, np.array([1.0, 2.0, 3.0]), np.array([0.5, 0, -0.5]), atoms=c,
                            offset=np.array([0.0, 0, 1]))))
        np.testing.assert_array_equal(r.sample(6, state=state, seed=3), Renderer(hand).sample(6, seed=3))
    comps = {c["name"]: c for c in r.describe()["components"]}
    assert comps["nm"]["operator"] == "nm_v1" and comps["rb"]["n_atoms"] == len(c_rows)
    st.close()


def test_shape_and_scope_errors(st: moldb.Store) -> None:
    with pytest.raises(ValueError, match="coeff_std"):
        moldb.NormalModes(scope="atom", basis=np.zeros((2, 4, 3)), coeffs=[1, 2], policy="sample_per_step")
    with pytest.raises(ValueError, match="non-zero"):
        moldb.RigidBody(q=[0, 0, 0, 0], centre=[0, 0, 0])
    st.add_descriptor("1L2Y", moldb.NormalModes(id="nm-bad", scope="ca1", basis=np.zeros((1, 5, 3)), coeffs=[1]))
    with pytest.raises(ValidationError, match=r"'nm-bad'.*basis covers 5 atoms; scope 'ca1' has 20"):
        st.renderer("1L2Y", descriptors=["nm-bad"])
    st.add_descriptor("1L2Y", moldb.RigidBody(id="rb-bad", scope="halves/v1", group="X", q=[1, 0, 0, 0],
                                              centre=[0, 0, 0]))
    with pytest.raises(ValidationError, match="no group 'X'"):
        st.renderer("1L2Y", descriptors=["rb-bad"])


# -- TorchScript decoder: trained here on the 1L2Y NMR ensemble ----------------------------------------
@pytest.fixture(scope="module")
def trained(path: Path) -> dict:
    """A 2-latent MLP trained to decode the CA positions of the 38 models from their top-2 PC scores."""
    torch = pytest.importorskip("torch")
    s = moldb.open(path)
    x = _xyz(s, "1L2Y")
    a = s.get("1L2Y").atoms
    s.close()
    ca = np.asarray(a.column("label_atom_id").to_pylist()) == "CA"
    model = a.column("pdbx_PDB_model_num").to_numpy().astype(int)
    Y = np.stack([x[ca & (model == m)] for m in range(1, 39)])  # (38, 20, 3)
    ref = Y[0]
    flat = (Y - Y.mean(0)).reshape(38, -1)
    u, sv, vt = np.linalg.svd(flat, full_matrices=False)
    z = u[:, :2] * sv[:2] / np.sqrt(38)  # unit-ish latents
    target = (Y.mean(0).reshape(-1) + z @ (vt[:2] * np.sqrt(38))).reshape(38, 20, 3) - ref  # displacements
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 60))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    zt, yt = torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(target.reshape(38, -1), dtype=torch.float32)
    for _ in range(1500):
        loss = ((net(zt) - yt) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        d = moldb.NeuralDecoder.from_module(net, latent=z[4], latent_pool=z, policy="sample_per_step",
                                            scope="ca1", id="cryo")
    return {"d": d, "z": z, "target": target, "ref": ref}


@_JIT
def test_decoder_stored_inline_and_rendered(path: Path, trained: dict) -> None:
    s = moldb.open(path)
    d = trained["d"]
    if "cryo" not in {x.id for x in s.descriptors("1L2Y")}:
        s.add_descriptor("1L2Y", d)
    s.close()
    st = moldb.open(path)
    got = next(x for x in st.descriptors("1L2Y") if x.id == "cryo")
    assert isinstance(got, moldb.NeuralDecoder) and got.sha256 == d.sha256 and got.body() == d.body()
    assert got.blob.dtype == np.uint8
    # the inline artifact is in the operator registry: venue inline, hash over the spec and the bytes
    op = next(o for o in st.operators().to_pylist() if o["name"] == "neural_decoder/torchscript_v1")
    spec = next(x for x in moldb.ir.motion.MOTION_OPERATORS if x.name == op["name"])
    assert op["venue"] == "inline"
    assert op["content_hash"] == spec.model_copy(update={"sha256": d.sha256}).content_hash(d.body())
    r = st.renderer("1L2Y", descriptors=["ensemble", "cryo"])
    rows = r.atom_rows()  # model 1: the decoder's scope is rendered
    x = _xyz(st, "1L2Y")
    ca = _pos(rows, st.grouping("1L2Y", "ca1").column("row").to_numpy())
    m = r.mean()
    # learned: the decoded model-5 CA positions are its rank-2 reconstruction
    rms = np.sqrt(((m[ca] - trained["ref"] - trained["target"][4]) ** 2).sum(-1).mean())
    assert rms < 0.15, rms
    from moldb.operators import NeuralDecoder as Op

    dec = Op(d.body(), d.sha256, 20, 2)
    hand = RenderModel(x[rows], continuous=(DecoderDescriptor("cryo", dec, d.latent, atoms=ca,
                                                              policy="sample_per_step", latent_pool=d.latent_pool),))
    np.testing.assert_allclose(m, Renderer(hand).mean(), atol=1e-6)
    np.testing.assert_allclose(r.sample(8, seed=1), Renderer(hand).sample(8, seed=1), atol=1e-6)
    other = r.mean({"model": "2"})  # the decoder's atoms (model 1) are not rendered: nothing to add
    np.testing.assert_allclose(other, x[r.atom_rows({"model": "2"})])
    st.close()


@_JIT
def test_decoder_restricted_to_rendered_rows(path: Path, trained: dict) -> None:
    """A decoder whose scope spans several models runs on its whole scope and keeps the rendered atoms."""
    st = moldb.open(path)
    a = st.get("1L2Y").atoms
    name = np.asarray(a.column("label_atom_id").to_pylist())
    model = a.column("pdbx_PDB_model_num").to_numpy().astype(int)
    if "ca12" not in st.groupings("1L2Y").column("name").to_pylist():
        st.add_grouping("1L2Y", "ca12", members={"CA": (name == "CA") & (model <= 2) & (
            a.column("auth_seq_id").to_numpy().astype(int) <= 10)})
        d = trained["d"].model_copy(update={"id": "cryo12", "scope": "ca12", "policy": "mean"})
        st.add_descriptor("1L2Y", d)
    r = st.renderer("1L2Y", descriptors=["ensemble", "cryo12"])
    full = trained["d"]
    from moldb.operators import NeuralDecoder as Op

    out = Op(full.body(), full.sha256, 20, 2)(full.latent).numpy()  # (20, 3): ca12's rows in ascending order
    x = _xyz(st, "1L2Y")
    scope = st.grouping("1L2Y", "ca12").column("row").to_numpy()
    for state, half in ((None, slice(0, 10)), ({"model": "2"}, slice(10, 20))):
        rows = r.atom_rows(state)
        want = x[rows].copy()
        want[_pos(rows, scope)] += out[half]
        np.testing.assert_allclose(r.mean(state), want, atol=1e-5)
    st.close()


@_JIT
def test_tampered_decoder_is_refused(path: Path, trained: dict, tmp_path: Path) -> None:
    d = trained["d"]
    bad = d.blob.copy()
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(ValueError, match="altered"):
        moldb.NeuralDecoder(blob=bad, sha256=d.sha256, latent=d.latent, scope="ca1")
    st = moldb.open(path)
    t = d.model_copy(update={"id": "cryo-tampered"})
    t.blob = bad  # bytes changed after hashing (what a corrupted or edited store holds)
    st.add_descriptor("1L2Y", t)
    assert any(x.id == "cryo-tampered" for x in st.descriptors("1L2Y"))  # still listed
    with pytest.raises(ValidationError, match=r"1L2Y v1: descriptor 'cryo-tampered'.*not the recorded sha256"):
        st.renderer("1L2Y", descriptors=["cryo-tampered"])
    with pytest.raises(ValidationError, match="cryo-tampered"):
        st.renderer("1L2Y", descriptors=["ensemble", "nm", "cryo-tampered"])  # refused before any rendering
    # the CLI lists every motion descriptor with its operator
    res = CliRunner().invoke(app, ["descriptors", "1L2Y", "--store", str(path), "--json"])
    assert res.exit_code == 0, res.output
    ops = {x["id"]: (x["type"], (x["operator"] or {}).get("name")) for x in json.loads(res.output)}
    assert ops["cryo-tampered"] == ("neural_decoder", "neural_decoder/torchscript_v1")
    assert ops["nm"] == ("normal_modes", "basis/nm_v1") and ops["rb"] == ("rigid_body", "rigid_body/quat_v1")
    st.close()


@_JIT
def test_missing_torch_is_a_clear_error_only_for_decoders(path: Path, trained: dict,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    st = moldb.open(path)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    r = st.renderer("1L2Y", descriptors=["ensemble", "nm"])
    assert r.mean().shape == (304, 3)
    r = st.renderer("1L2Y", descriptors=["ensemble", "cryo"])  # building needs no torch
    with pytest.raises(ValidationError, match=r"'cryo' is a TorchScript neural decoder: rendering it needs PyTorch"):
        r.mean()
    st.close()


@_JIT
def test_decoder_on_cuda(path: Path, trained: dict) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False on this machine")
    st = moldb.open(path)
    rc, rn = st.renderer("1L2Y", device="cuda", descriptors=["ensemble", "cryo", "nm"]), \
        st.renderer("1L2Y", descriptors=["ensemble", "cryo", "nm"])
    mc = rc.mean()
    assert mc.device.type == "cuda"
    np.testing.assert_allclose(mc.cpu().numpy(), rn.mean(), atol=1e-5)
    st.close()


# -- external H5MD frames -------------------------------------------------------------------------------
def test_external_h5md_frames(path: Path, tmp_path: Path) -> None:
    import h5py

    h5 = tmp_path / "cobrotoxin.h5md"
    shutil.copyfile(data(H5MD), h5)
    st = moldb.open(path)
    off = np.array([1.0, -2.0, 0.5])
    d = moldb.ExternalFrames.for_file(h5, id="md", scope="atom", states=["a", "b", "c"], default="b",
                                      reference_offset=off.tolist())
    assert list(d.frames) == [0, 1, 2]
    st.add_descriptor("COBROTOXIN", d)
    st.close()
    st = moldb.open(path)
    ops = [o for o in st.operators().to_pylist() if o["name"] == "external_reference/h5md_v1"]
    assert any(o["venue"] == "external" and o["content_hash"] == next(
        x for x in moldb.ir.motion.MOTION_OPERATORS if x.name == o["name"]).model_copy(
        update={"uri": d.uri, "sha256": d.sha256}).content_hash() for o in ops)
    r = st.renderer("COBROTOXIN", descriptors=["md"])
    assert r.discrete_nodes == {"md": ["a", "b", "c"]} and r.n_joint_states() == 3
    with h5py.File(data(H5MD)) as f:
        P = f["particles/trajectory/position/value"][:].astype(np.float64) * 10  # nm -> Å
    np.testing.assert_allclose(r.mean(), P[1] + off, atol=1e-4)  # default "b"
    np.testing.assert_allclose(r.mean({"md": "c"}), P[2] + off, atol=1e-4)
    x = _xyz(st, "COBROTOXIN")
    hand = RenderModel(x, discrete=(ExternalReference("md", str(h5), d.sha256, ("a", "b", "c"),
                                                      lambda k: P["abc".index(k)], "b", offset=off),))
    np.testing.assert_allclose(r.sample(2, state={"md": "a"}, seed=0),
                               Renderer(hand).sample(2, state={"md": "a"}, seed=0), atol=1e-4)
    # tampering with the file is refused: at build time, and by a renderer built before the change
    h5.chmod(0o644)
    with h5.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ValidationError, match=r"COBROTOXIN v1: descriptor 'md'.*has sha256 .* not the recorded"):
        r.mean({"md": "a"})
    with pytest.raises(ValidationError, match="not the recorded"):
        st.renderer("COBROTOXIN", descriptors=["md"])
    h5.unlink()
    with pytest.raises(ValidationError, match="cannot read external file"):
        st.renderer("COBROTOXIN", descriptors=["md"])
    st.close()
