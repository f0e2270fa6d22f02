"""Operators: conventions, invariances, numpy/torch agreement, registry, neural decoder."""

from __future__ import annotations

import hashlib
import math
import warnings

import gemmi
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldb.errors import ValidationError
from moldb.operators import (
    B_TO_U,
    OPERATORS,
    NeuralDecoder,
    aadp_v1,
    get,
    iadp_v1,
    nm_v1,
    quat_v1,
    script_to_bytes,
    skew_a,
    tls_from_mmcif_units,
    tls_shift_origin,
    tls_v1,
)


def _rand_tls(rng: np.random.Generator, g: int = 1):
    T = rng.normal(size=(g, 3, 3)) * 0.2
    L = rng.normal(size=(g, 3, 3)) * 0.03
    S = rng.normal(size=(g, 3, 3)) * 0.01
    return T @ T.transpose(0, 2, 1), L @ L.transpose(0, 2, 1), S, rng.normal(size=(g, 3)) * 10


def _matrix_form(x, T, L, S, O_):
    """Independent reference: U = T + A L Aᵀ + A S + Sᵀ Aᵀ per atom, A built explicitly."""
    out = np.empty((len(x), 3, 3))
    for i, p in enumerate(x):
        r = p - O_
        A = np.array([[0, r[2], -r[1]], [-r[2], 0, r[0]], [r[1], -r[0], 0]])
        out[i] = T + A @ L @ A.T + A @ S + S.T @ A.T
    return out


def test_skew_a_is_lambda_cross_r():
    rng = np.random.default_rng(1)
    r, lam = rng.normal(size=3), rng.normal(size=3)
    np.testing.assert_allclose(skew_a(r) @ lam, np.cross(lam, r), atol=1e-15)


def test_tls_matches_matrix_form_many_groups():
    rng = np.random.default_rng(2)
    T, L, S, O_ = _rand_tls(rng, 4)
    amp = rng.uniform(0.5, 2, 4)
    x = rng.normal(size=(50, 3)) * 15
    group = rng.integers(-1, 4, 50)
    U = tls_v1(x, T, L, S, O_, group, amp)
    for i in range(50):
        g = group[i]
        want = np.zeros((3, 3)) if g < 0 else amp[g] * _matrix_form(x[i : i + 1], T[g], L[g], S[g], O_[g])[0]
        np.testing.assert_allclose(U[i], want, atol=1e-13)


def test_tls_matches_gemmi_in_mmcif_units():
    rng = np.random.default_rng(3)
    T, Ld, Sd, O_ = _rand_tls(rng)
    Ld, Sd = Ld * 3000, Sd * 50  # deg², Å·deg magnitudes
    x = rng.normal(size=(20, 3)) * 12
    U = tls_v1(x, *tls_from_mmcif_units(T[0], Ld[0], Sd[0]), O_[0])
    g = gemmi.TlsGroup()
    g.T = gemmi.SMat33d(*T[0][[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]])
    g.L = gemmi.SMat33d(*Ld[0][[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]])
    g.S = gemmi.Mat33(Sd[0].tolist())
    g.origin = gemmi.Position(*O_[0])
    for i in range(20):
        ref = gemmi.calculate_u_from_tls(g, gemmi.Position(*x[i])).elements_pdb()
        np.testing.assert_allclose(U[i][[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]], ref, atol=1e-12)


def test_trace_of_s_does_not_change_u():
    # why CCTBX may set S33 = -(S11 + S22) and gemmi may keep S33: U is the same
    rng = np.random.default_rng(4)
    T, L, S, O_ = _rand_tls(rng)
    x = rng.normal(size=(30, 3)) * 10
    U0 = tls_v1(x, T, L, S, O_)
    U1 = tls_v1(x, T, L, S + 0.37 * np.eye(3), O_)
    np.testing.assert_allclose(U0, U1, atol=1e-13)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(-50, 50), st.floats(-50, 50), st.floats(-50, 50))
def test_origin_shift_leaves_u_unchanged(seed, dx, dy, dz):
    rng = np.random.default_rng(seed)
    T, L, S, O_ = _rand_tls(rng)
    x = rng.normal(size=(25, 3)) * 20
    new = O_[0] + np.array([dx, dy, dz])
    T2, L2, S2 = tls_shift_origin(T[0], L[0], S[0], O_[0], new)
    np.testing.assert_allclose(tls_v1(x, T2, L2, S2, new), tls_v1(x, T, L, S, O_), atol=1e-10)
    assert abs(np.trace(S2) - np.trace(S[0])) < 1e-12  # tr(L Dᵀ) = 0


def test_iadp_and_aadp():
    B = np.array([8 * math.pi**2, 20.0])
    U = iadp_v1(B)
    np.testing.assert_allclose(U[0], np.eye(3), atol=1e-15)
    assert U[1, 0, 0] == pytest.approx(20 * B_TO_U)
    U6 = np.array([[0.1, 0.2, 0.3, 0.01, 0.02, 0.03]])
    np.testing.assert_array_equal(aadp_v1(U6)[0], [[0.1, 0.01, 0.02], [0.01, 0.2, 0.03], [0.02, 0.03, 0.3]])


def _rodrigues(q):
    """Independent rotation matrix from the quaternion's axis and angle (Rodrigues' formula)."""
    q = q / np.linalg.norm(q)
    theta = 2 * np.arccos(np.clip(q[0], -1, 1))
    k = q[1:] / np.linalg.norm(q[1:])
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def test_quat_matches_rodrigues_and_nm_batches():
    rng = np.random.default_rng(5)
    q = rng.normal(size=4)
    x, c, t = rng.normal(size=(10, 3)), rng.normal(size=3), rng.normal(size=3)
    R = _rodrigues(q)
    np.testing.assert_allclose(quat_v1(x, q, c, t) + x, (x - c) @ R.T + c + t, atol=1e-12)
    qb = np.stack([q, [1, 0, 0, 0]])
    db = quat_v1(x, qb, np.stack([c, c]), np.stack([t, 0 * t]))
    np.testing.assert_allclose(db[0], quat_v1(x, q, c, t), atol=1e-12)
    np.testing.assert_allclose(db[1], 0, atol=1e-12)
    basis = rng.normal(size=(3, 10, 3))
    cf = rng.normal(size=(4, 3))
    np.testing.assert_allclose(nm_v1(basis, cf)[2], np.einsum("k,kna->na", cf[2], basis), atol=1e-12)


def test_torch_bodies_match_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    T, L, S, O_ = _rand_tls(rng, 3)
    x = rng.normal(size=(40, 3)) * 10
    grp = rng.integers(-1, 3, 40)
    want = tls_v1(x, T, L, S, O_, grp)
    got = tls_v1(torch.as_tensor(x), T, L, S, O_, torch.as_tensor(grp))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-13)
    q, c = rng.normal(size=4), rng.normal(size=3)
    np.testing.assert_allclose(quat_v1(torch.as_tensor(x), q, c, c).numpy(), quat_v1(x, q, c, c), atol=1e-12)
    B = rng.uniform(5, 50, 40)
    np.testing.assert_allclose(iadp_v1(torch.as_tensor(B)).numpy(), iadp_v1(B), atol=1e-15)


def test_registry_hashes():
    assert {"parametric_gaussian/tls_v1", "parametric_gaussian/iadp_v1", "parametric_gaussian/aadp_v1",
            "basis/nm_v1", "rigid_body/quat_v1", "neural_decoder/torchscript_v1"} <= set(OPERATORS)
    hashes = [op.sha256 for op in OPERATORS.values()]
    assert len(set(hashes)) == len(hashes) and all(len(h) == 64 for h in hashes)
    op = get("tls_v1", OPERATORS["parametric_gaussian/tls_v1"].sha256)
    assert op.composition == "additive_covariance" and set(op.venues) == {"cpu", "cuda"}
    assert op.sha256 == get("parametric_gaussian/tls_v1").sha256  # deterministic
    with pytest.raises(ValidationError, match="pins"):
        get("tls_v1", "0" * 64)
    with pytest.raises(ValidationError, match="no operator"):
        get("nope_v9")


# -- neural decoder: trained here on a toy task --------------------------------------------------
# torch 2.13 marks torch.jit.save/load deprecated (in favour of torch.export); TorchScript is what
# the issue pins, so the warning is expected here.
_JIT = pytest.mark.filterwarnings("ignore::DeprecationWarning")
N_ATOMS, LATENT = 12, 2


def _toy_target(z: np.ndarray) -> np.ndarray:
    """Ground truth the decoder learns: two smooth modes of a 12-atom chain."""
    i = np.arange(N_ATOMS)
    m1 = np.stack([np.sin(i / 3), np.cos(i / 3), 0 * i], -1)
    m2 = np.stack([0 * i, np.sin(i / 2), np.cos(i / 5)], -1)
    return z[:, :1, None] * m1 + np.tanh(z[:, 1:, None]) * m2


@pytest.fixture(scope="module")
def trained_decoder():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(LATENT, 64), torch.nn.Tanh(), torch.nn.Linear(64, N_ATOMS * 3))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(300):
        z = rng.normal(size=(128, LATENT))
        y = torch.as_tensor(_toy_target(z).reshape(128, -1), dtype=torch.float32)
        loss = ((net(torch.as_tensor(z, dtype=torch.float32)) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        blob, sha = script_to_bytes(net)
    return blob, sha


@_JIT
def test_neural_decoder_trained_and_hashed(trained_decoder):
    blob, sha = trained_decoder
    assert sha == hashlib.sha256(blob).hexdigest()
    dec = NeuralDecoder(blob, sha, N_ATOMS, LATENT)
    z = np.random.default_rng(1).normal(size=(64, LATENT)) * 0.8
    out = dec(z).numpy()
    assert out.shape == (64, N_ATOMS, 3)
    rms = np.sqrt(((out - _toy_target(z)) ** 2).mean())
    assert rms < 0.05, rms  # learned the toy task
    np.testing.assert_allclose(dec(z[0]).numpy(), out[0], atol=1e-6)
    with pytest.raises(ValidationError, match="altered"):
        NeuralDecoder(blob[:-1] + b"x", sha, N_ATOMS, LATENT)
    ref = np.ones((N_ATOMS, 3))
    absdec = NeuralDecoder(blob, sha, N_ATOMS, LATENT, output="absolute")
    np.testing.assert_allclose(absdec(z[:2], x_ref=ref).numpy(), out[:2] - 1, atol=1e-6)


@_JIT
def test_neural_decoder_cuda(trained_decoder):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False on this machine")
    blob, sha = trained_decoder
    dec = NeuralDecoder(blob, sha, N_ATOMS, LATENT)
    z = np.random.default_rng(2).normal(size=(8, LATENT))
    np.testing.assert_allclose(dec(z, device="cuda").cpu().numpy(), dec(z).numpy(), atol=1e-5)
