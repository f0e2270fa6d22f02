"""The fused ``U_total`` (one shared TLS centre, parameters summed per group combination) against the
per-descriptor reference sum, on 5EIL's deposited TLS groups and atoms (read with gemmi)."""

from __future__ import annotations

import numpy as np
import pytest

from moldb.errors import ValidationError
from moldb.operators import adp, tls_from_mmcif_units
from moldb.operators.adp_poly import tls_at_centre, tls_u6_rows
from moldb.render import GaussianDescriptor, Renderer, RenderModel
from moldb.render.fused import covariance_plan
from tests._tls_data import DATA, read_tls


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def path(request, monkeypatch):
    """Every test runs through the compiled kernel (numba) and through the numpy expressions."""
    from moldb.operators import adp_kernel

    if request.param == "compiled":
        pytest.importorskip("numba")
        monkeypatch.setenv("MOLDB_NUMBA", "1")
        assert adp_kernel.available()
    else:
        monkeypatch.setenv("MOLDB_NUMBA", "0")
        assert not adp_kernel.available()
    return request.param


@pytest.fixture(scope="module")
def eil():
    d = read_tls(DATA / "5eil.cif.gz")
    T, L, S = tls_from_mmcif_units(d.T, d.L, d.S)
    return d, T, L, S


def _reference(model: RenderModel) -> np.ndarray:
    r = Renderer(model)
    return sum(r.contribution(d) for d in model.continuous)


def _levels(d, rng: np.random.Generator) -> list[GaussianDescriptor]:
    """Deposited TLS groups plus two synthetic coarser levels and a finer one over the same atoms."""
    n = len(d.xyz)
    out = []
    for name, k in (("molecule", 1), ("halves", 2), ("fine", 300)):
        group = np.minimum(np.arange(n) * k // n, k - 1)
        a = rng.normal(size=(k, 3, 3))
        T = a @ a.transpose(0, 2, 1) * 0.01
        b = rng.normal(size=(k, 3, 3))
        L = b @ b.transpose(0, 2, 1) * 1e-4
        S = rng.normal(size=(k, 3, 3)) * 1e-3
        origin = np.array([d.xyz[group == g].mean(0) for g in range(k)]) + rng.normal(size=(k, 3))
        out.append(GaussianDescriptor(name, "tls_v1", {"T": T, "L": L, "S": S, "origin": origin, "group": group,
                                                       "amplitude": rng.uniform(0.5, 2.0, k)}))
    return out


def test_fused_equals_per_level_sum_on_5eil(eil):
    d, T, L, S = eil
    rng = np.random.default_rng(3)
    tls = GaussianDescriptor("tls", "tls_v1", {"T": T, "L": L, "S": S, "origin": d.origin, "group": d.group})
    assert (d.group == -1).any()  # some atoms are in no deposited group: zeros from that level
    u6 = np.nan_to_num(d.u6) * 0.1
    model = RenderModel(d.xyz, continuous=(tls, *_levels(d, rng),
                                           GaussianDescriptor("b", "iadp_v1", {"B": d.b}),
                                           GaussianDescriptor("u", "aadp_v1", {"U6": u6})))
    ref = _reference(model)
    U = Renderer(model).covariance()
    assert U.shape == (len(d.xyz), 3, 3) and U.flags.c_contiguous
    np.testing.assert_allclose(U, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    # deposited TLS alone matches the per-atom tls_v1 of the operator module
    only = RenderModel(d.xyz, continuous=(tls,))
    np.testing.assert_allclose(Renderer(only).covariance(),
                               adp.tls_v1(d.xyz, T, L, S, d.origin, d.group), atol=1e-13)


def test_scoped_descriptors_and_offsets(eil):
    d, T, _, S = eil
    n = len(d.xyz)
    atoms = np.arange(0, n, 3)
    g = np.minimum(np.arange(atoms.size) * 4 // atoms.size, 3)
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 3, 3))
    tls = GaussianDescriptor("part", "tls_v1", {"T": a @ a.transpose(0, 2, 1) * 0.01, "L": T[:4] * 1e-3,
                                                "S": S[:4], "origin": d.origin[:4], "group": g},
                             atoms=atoms, offset=np.array([1.0, -2.0, 0.5]))
    b = GaussianDescriptor("b", "iadp_v1", {"B": d.b[atoms[::2]]}, atoms=atoms[::2])
    mean_only = GaussianDescriptor("m", "iadp_v1", {"B": d.b}, policy="mean")
    model = RenderModel(d.xyz, continuous=(tls, b, mean_only))
    r = Renderer(model)
    U = r.covariance()
    ref = r.contribution(tls) + r.contribution(b)
    np.testing.assert_allclose(U, ref, atol=1e-13)
    outside = np.setdiff1d(np.arange(n), atoms)
    assert not U[outside].any()
    np.testing.assert_allclose(r.covariance(include_mean_only=True), ref + r.contribution(mean_only), atol=1e-13)


def test_torch_fused_agrees(eil):
    torch = pytest.importorskip("torch")
    d, T, L, S = eil
    tls = GaussianDescriptor("tls", "tls_v1", {"T": T, "L": L, "S": S, "origin": d.origin, "group": d.group})
    model = RenderModel(d.xyz, continuous=(tls, *_levels(d, np.random.default_rng(1)),
                                           GaussianDescriptor("b", "iadp_v1", {"B": d.b})))
    ref = _reference(model)
    U64 = Renderer(model, backend="torch").covariance()
    assert isinstance(U64, torch.Tensor) and U64.dtype == torch.float64
    np.testing.assert_allclose(U64.numpy(), ref, atol=1e-12 * np.abs(ref).max())
    U32 = Renderer(model, backend="torch", dtype="float32").covariance()
    np.testing.assert_allclose(U32.numpy(), ref, atol=2e-5 * np.abs(ref).max())


def test_shared_centre_is_an_exact_origin_shift():
    """tls_at_centre + tls_u6_rows reproduce tls_v1 for random tensors, origins and centres."""
    rng = np.random.default_rng(11)
    G, n = 7, 50
    T, L, S = (rng.normal(size=(G, 3, 3)) for _ in range(3))
    T, L = T + T.transpose(0, 2, 1), L + L.transpose(0, 2, 1)
    origin = rng.normal(size=(G, 3)) * 20
    x = rng.normal(size=(n, 3)) * 30
    group = rng.integers(0, G, n)
    ref = adp.tls_v1(x, T, L, S, origin, group)
    for centre in (np.zeros(3), np.array([100.0, -50.0, 12.0])):
        P = tls_at_centre(*(a.reshape(G, 9).T for a in (T, L, S)), (origin - centre).T)
        u6 = tls_u6_rows(P[:, group], (x - centre).T)
        got = u6[[0, 3, 4, 3, 1, 5, 4, 5, 2]].T.reshape(n, 3, 3)
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)


def test_plan_is_cached_per_model_and_checks_groups(eil):
    d, T, L, S = eil
    tls = GaussianDescriptor("tls", "tls_v1", {"T": T, "L": L, "S": S, "origin": d.origin, "group": d.group})
    model = RenderModel(d.xyz, continuous=(tls,))
    p1 = covariance_plan(model, [tls])
    assert covariance_plan(model, [tls]) is p1
    assert len(p1.combos) == len(np.unique(d.group))
    bad = GaussianDescriptor("bad", "tls_v1", {"T": T[:2], "L": L[:2], "S": S[:2], "origin": d.origin[:2],
                                               "group": d.group})
    with pytest.raises(ValidationError, match=r"group index \d+ out of range for 2 groups"):
        Renderer(RenderModel(d.xyz, continuous=(bad,))).covariance()
    short = GaussianDescriptor("short", "tls_v1", {"T": T, "L": L, "S": S, "origin": d.origin,
                                                   "group": d.group[:10]})
    with pytest.raises(ValidationError, match="'group' has 10 entries"):
        Renderer(RenderModel(d.xyz, continuous=(short,))).covariance()


def test_no_gaussians_gives_zeros(eil):
    d = eil[0]
    U = Renderer(RenderModel(d.xyz)).covariance()
    assert U.shape == (len(d.xyz), 3, 3) and not U.any()


def test_draws_prefix_stable_and_match_covariance(eil):
    d = eil[0]
    model = RenderModel(d.xyz[:400], continuous=(GaussianDescriptor("b", "iadp_v1", {"B": d.b[:400]}),
                                                 GaussianDescriptor("u", "aadp_v1",
                                                                    {"U6": np.nan_to_num(d.u6[:400])})))
    r = Renderer(model)
    a, b = r.sample(3, seed=9), r.sample(300, seed=9)
    np.testing.assert_array_equal(a, b[:3])  # render k is the same whatever n is asked for
    X = r.sample(6000, seed=4) - r.mean()
    emp = np.einsum("dai,daj->aij", X, X) / len(X)
    U = r.covariance()
    assert np.median(np.abs(emp - U).max((1, 2)) / np.abs(U).max((1, 2))) < 0.05


def test_compiled_kernel_equals_numpy_expressions(eil, monkeypatch):
    """The two numpy paths agree to rounding, float64 and float32, on every operator and scope kind."""
    pytest.importorskip("numba")
    d, T, L, S = eil
    rng = np.random.default_rng(11)
    n = len(d.xyz)
    tls = GaussianDescriptor("tls", "tls_v1", {"T": T, "L": L, "S": S, "origin": d.origin, "group": d.group})
    half = np.arange(0, n, 2)
    model = RenderModel(d.xyz, continuous=(
        tls, *_levels(d, rng),
        GaussianDescriptor("b", "iadp_v1", {"B": d.b}),
        GaussianDescriptor("b2", "iadp_v1", {"B": d.b[half] * 0.5}, atoms=half),
        GaussianDescriptor("u", "aadp_v1", {"U6": np.nan_to_num(d.u6[half]) * 0.1}, atoms=half)))
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("MOLDB_NUMBA", flag)
        out[flag] = {dt: Renderer(model, dtype=dt).covariance() for dt in ("float64", "float32")}
    scale = np.abs(out["0"]["float64"]).max()
    np.testing.assert_allclose(out["1"]["float64"], out["0"]["float64"], rtol=0, atol=1e-13 * scale)
    assert out["1"]["float32"].dtype == np.float32
    # the compiled kernel accumulates in float64 whatever the output dtype: closer to the reference
    err_c = np.abs(out["1"]["float32"] - out["0"]["float64"]).max()
    err_n = np.abs(out["0"]["float32"] - out["0"]["float64"]).max()
    assert err_c <= err_n and err_c < 1e-6 * scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_draws_consume_the_numpy_stream(eil, dtype, monkeypatch):
    """Same seed, same renders with or without numba (float64: bit-identical, same factor)."""
    pytest.importorskip("numba")
    from moldb.operators import adp_kernel

    rng = np.random.default_rng(5)
    F = rng.normal(size=(7, 3, 3)).astype(dtype)
    X = np.zeros((4, 7, 3), dtype)
    adp_kernel.add_draws(np.random.default_rng(9), F, X)
    z = np.random.default_rng(9).standard_normal((4, 3, 7), dtype=dtype)
    np.testing.assert_allclose(X, np.einsum("aij,dja->dai", F, z), rtol=1e-6 if dtype == np.float32 else 1e-14)
    d = eil[0]
    model = RenderModel(d.xyz[:500], continuous=(GaussianDescriptor("b", "iadp_v1", {"B": d.b[:500]}),))
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("MOLDB_NUMBA", flag)
        out[flag] = Renderer(model).sample(6, seed=7)
    np.testing.assert_array_equal(out["1"], out["0"])
