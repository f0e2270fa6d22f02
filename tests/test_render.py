"""Render engine: discrete nesting, continuous-additive sampling, policies, offsets, PSD, torch CPU."""

from __future__ import annotations

import numpy as np
import pytest

from moldb.errors import ValidationError
from moldb.operators import iadp_v1, quat_v1, tls_v1
from moldb.render import (
    BasisDescriptor,
    DecoderDescriptor,
    DiscreteDescriptor,
    DiscreteState,
    ExternalReference,
    GaussianDescriptor,
    NonPSDCovarianceError,
    Renderer,
    RenderModel,
    RigidDescriptor,
)

RNG = np.random.default_rng(0)
N = 40
X = RNG.normal(size=(N, 3)) * 8


def _tls(name="tls", policy="sample_per_step", offset=None, S=None):
    T = np.diag([0.05, 0.08, 0.04])
    L = np.diag([2e-4, 3e-4, 1e-4])
    S = np.array([[0, 1e-3, 0], [0, 0, -2e-3], [1e-3, 0, 0]]) if S is None else S
    return GaussianDescriptor(name, "tls_v1", {"T": T, "L": L, "S": S, "origin": np.array([1.0, 2.0, 3.0])},
                              policy=policy, offset=np.zeros(3) if offset is None else offset)


def _nested():
    lig = DiscreteDescriptor("ligand", {
        "X": DiscreteState(np.array([0, 1]), np.full((2, 3), 0.5), "delta"),
        "Y": DiscreteState(np.array([0, 1]), np.zeros((2, 3)), "delta")}, default="X")
    loop = DiscreteDescriptor("loop", {
        "A": DiscreteState(np.array([5, 6]), np.ones((2, 3)), "delta"),
        "B": DiscreteState(np.array([5, 6]), -np.ones((2, 3)), "delta"),
        "C": DiscreteState(np.array([5, 6]), np.array([[9.0, 9, 9], [8, 8, 8]]), "replace")},
        default="A", parent="ligand", allowed={"X": ("A", "B"), "Y": ("C",)}, offset=np.array([0.0, 0, 1]))
    return lig, loop


def test_legal_joint_states_and_nesting():
    r = Renderer(RenderModel(X, discrete=_nested()))
    assert r.joint_states() == [{"ligand": "X", "loop": "A"}, {"ligand": "X", "loop": "B"},
                                {"ligand": "Y", "loop": "C"}]
    with pytest.raises(ValidationError, match="not legal"):
        r.mean({"ligand": "Y", "loop": "A"})
    with pytest.raises(ValidationError, match="unknown"):
        r.mean({"rotamer": "A"})
    m = r.mean({"ligand": "Y"})  # loop defaults to its first legal state, C (replace + offset)
    np.testing.assert_allclose(m[5:7], [[9, 9, 10], [8, 8, 9]])
    m = r.mean()  # X, A: deltas add
    np.testing.assert_allclose(m[:2], X[:2] + 0.5)
    np.testing.assert_allclose(m[5:7], X[5:7] + 1)
    np.testing.assert_allclose(m[7:], X[7:])


def test_external_reference_replaces_and_orders():
    frames = {"0": X[:3] + 10, "1": X[:3] - 10}
    ext = ExternalReference("md", "h5md://traj.h5", "ab" * 32, ("0", "1"), frames.__getitem__, "0",
                            atoms=np.array([0, 1, 2]))
    lig, _ = _nested()
    r = Renderer(RenderModel(X, discrete=(lig, ext)))
    np.testing.assert_allclose(r.mean({"md": "1"})[:3], X[:3] - 10)  # replaces after the ligand delta
    assert len(r.joint_states()) == 4


def test_deterministic_displacements_compose_in_order():
    basis = RNG.normal(size=(2, N, 3))
    nm = BasisDescriptor("nm", basis, np.array([0.3, -0.2]))
    q = np.array([np.cos(0.2), 0, 0, np.sin(0.2)])
    rb = RigidDescriptor("rb", q, np.zeros(3), np.array([1.0, 0, 0]), atoms=np.arange(10))
    r = Renderer(RenderModel(X, continuous=(nm, rb)))
    want = X + np.einsum("k,kna->na", [0.3, -0.2], basis)
    want[:10] += quat_v1(want[:10], q, np.zeros(3), np.array([1.0, 0, 0]))
    np.testing.assert_allclose(r.mean(), want, atol=1e-12)


def test_one_draw_from_summed_covariance_monte_carlo():
    B = RNG.uniform(10, 30, N)
    tls = _tls()
    iso = GaussianDescriptor("b", "iadp_v1", {"B": B})
    r = Renderer(RenderModel(X, continuous=(tls, iso)))
    U = r.covariance()
    np.testing.assert_allclose(U, tls_v1(X, *(tls.params[k] for k in ("T", "L", "S", "origin"))) + iadp_v1(B))
    d = r.sample(20_000, seed=3) - X
    C = np.einsum("sni,snj->nij", d, d) / len(d)
    err = np.linalg.norm(C - U, axis=(1, 2)) / np.linalg.norm(U, axis=(1, 2))
    assert err.max() < 0.05, err.max()
    np.testing.assert_allclose(d.mean(0), 0, atol=0.02)


def test_seeds_reproducible():
    r = Renderer(RenderModel(X, continuous=(_tls(),)))
    a, b, c = r.sample(5, seed=7), r.sample(5, seed=7), r.sample(5, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_mean_only_policy_leaves_draws():
    iso = GaussianDescriptor("b", "iadp_v1", {"B": np.full(N, 20.0)})
    r = Renderer(RenderModel(X, continuous=(_tls(policy="mean"), iso)))
    np.testing.assert_allclose(r.covariance(), iadp_v1(np.full(N, 20.0)))
    np.testing.assert_allclose(r.covariance(include_mean_only=True), r.covariance() + r.contribution(_tls()))
    d = r.sample(20_000, seed=1) - X
    assert abs(d.var() - 20.0 / (8 * np.pi**2)) < 0.01


def test_sample_per_step_basis_and_decoder_pool():
    basis = np.zeros((1, N, 3))
    basis[0, :, 0] = 1.0
    nm = BasisDescriptor("nm", basis, np.array([0.0]), policy="sample_per_step", coeff_std=np.array([2.0]))
    r = Renderer(RenderModel(X, continuous=(nm,)))
    d = r.sample(4000, seed=2) - X
    assert d[:, 0, 0].std() == pytest.approx(2.0, rel=0.05)
    np.testing.assert_allclose(d[:, :, 0], d[:, :1, 0].repeat(N, 1))  # one coefficient moves all atoms
    np.testing.assert_allclose(r.mean(), X)


def test_reference_offsets():
    off = np.array([5.0, -3.0, 2.0])
    t0 = _tls()
    shifted = GaussianDescriptor("tls2", "tls_v1", {**t0.params, "origin": t0.params["origin"] - off}, offset=off)
    np.testing.assert_allclose(Renderer(RenderModel(X, continuous=(shifted,))).covariance(),
                               Renderer(RenderModel(X, continuous=(t0,))).covariance(), atol=1e-14)


def test_psd_policy_clip_and_strict():
    # an indefinite TLS component is fine when the sum is PSD ...
    bad_T = _tls(S=np.zeros((3, 3)))
    bad_T = GaussianDescriptor("t", "tls_v1", {**bad_T.params, "T": np.diag([-0.05, 0.1, 0.1])})
    iso = GaussianDescriptor("b", "iadp_v1", {"B": np.full(N, 8 * np.pi**2 * 0.2)})
    ok = Renderer(RenderModel(X, continuous=(bad_T, iso)), psd="strict")
    assert ok.psd_report.n_clipped == 0
    # ... but an indefinite sum is clipped (and counted) or refused
    r = Renderer(RenderModel(X, continuous=(bad_T,)))
    rep = r.psd_report
    assert rep.n_clipped > 0 and rep.min_eigenvalue < 0
    d = r.sample(20_000, seed=4) - X
    a = rep.atoms[0]
    w, V = np.linalg.eigh(r.covariance()[a])
    clipped = (V * np.maximum(w, 0)) @ V.T
    C = d[:, a].T @ d[:, a] / len(d)
    assert np.linalg.norm(C - clipped) / np.linalg.norm(clipped) < 0.05
    with pytest.raises(NonPSDCovarianceError, match="not positive semi-definite"):
        Renderer(RenderModel(X, continuous=(bad_T,)), psd="strict").sample(1)


def test_torch_cpu_path_agrees():
    torch = pytest.importorskip("torch")
    lig, loop = _nested()
    basis = RNG.normal(size=(2, N, 3))
    model = RenderModel(X, discrete=(lig, loop), continuous=(
        _tls(), GaussianDescriptor("b", "iadp_v1", {"B": RNG.uniform(5, 30, N)}),
        BasisDescriptor("nm", basis, np.array([0.1, 0.2])),
        RigidDescriptor("rb", np.array([0.9, 0.1, 0, 0]), np.zeros(3), np.zeros(3), atoms=np.arange(5))))
    rn, rt = Renderer(model), Renderer(model, backend="torch")
    for state in ({"ligand": "X", "loop": "B"}, {"ligand": "Y"}):
        mt = rt.mean(state)
        assert isinstance(mt, torch.Tensor) and mt.dtype == torch.float64
        np.testing.assert_allclose(mt.numpy(), rn.mean(state), atol=1e-12)
    np.testing.assert_allclose(rt.covariance().numpy(), rn.covariance(), atol=1e-14)
    st = rt.sample(20_000, seed=5)
    torch.testing.assert_close(st, rt.sample(20_000, seed=5))
    d = st.numpy() - rn.mean()
    C = np.einsum("sni,snj->nij", d, d) / len(d)
    U = rn.covariance()
    assert (np.linalg.norm(C - U, axis=(1, 2)) / np.linalg.norm(U, axis=(1, 2))).max() < 0.05


def test_cuda_path_agrees():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False on this machine")
    model = RenderModel(X, continuous=(_tls(), GaussianDescriptor("b", "iadp_v1", {"B": np.full(N, 15.0)})))
    rc, rn = Renderer(model, device="cuda"), Renderer(model)
    np.testing.assert_allclose(rc.mean().cpu().numpy(), rn.mean(), atol=1e-12)
    d = rc.sample(20_000, seed=1).cpu().numpy() - X
    C = np.einsum("sni,snj->nij", d, d) / len(d)
    U = rn.covariance()
    assert (np.linalg.norm(C - U, axis=(1, 2)) / np.linalg.norm(U, axis=(1, 2))).max() < 0.05


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_decoder_in_engine():
    torch = pytest.importorskip("torch")
    from moldb.operators import NeuralDecoder, script_to_bytes

    net = torch.nn.Linear(2, N * 3)
    blob, sha = script_to_bytes(net)
    dec = NeuralDecoder(blob, sha, N, 2)
    pool = RNG.normal(size=(3, 2))
    dd = DecoderDescriptor("cryo", dec, np.array([0.5, -0.5]), policy="sample_per_step", latent_pool=pool)
    r = Renderer(RenderModel(X, continuous=(dd,)))
    np.testing.assert_allclose(r.mean(), X + dec(np.array([0.5, -0.5])).numpy(), atol=1e-5)
    s = r.sample(30, seed=0) - X
    outs = dec(pool).numpy()
    assert all(min(np.abs(s[i] - o).max() for o in outs) < 1e-5 for i in range(30))
    rt = Renderer(RenderModel(X, continuous=(dd,)), backend="torch")
    np.testing.assert_allclose(rt.mean().numpy(), r.mean(), atol=1e-5)
