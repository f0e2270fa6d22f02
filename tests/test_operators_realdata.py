"""tls_v1 / iadp_v1 against deposited data: 5EIL (PHENIX, 29 TLS groups) and 3O5R (full aniso)."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from moldb.operators import B_TO_U, tls_from_mmcif_units, tls_shift_origin, tls_v1
from moldb.render import GaussianDescriptor, Renderer, RenderModel
from tests._tls_data import DATA, read_tls

IDX6 = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])


@pytest.fixture(scope="module")
def eil():
    d = read_tls(DATA / "5eil.cif.gz")
    T, L, S = tls_from_mmcif_units(d.T, d.L, d.S)
    return d, T, L, S, tls_v1(d.xyz, T, L, S, d.origin, d.group)


def _straightforward(x, T, L, S, O_):
    """Independent float64 reference written from the formula, one atom at a time."""
    r = x - O_
    A = np.array([[0.0, r[2], -r[1]], [-r[2], 0.0, r[0]], [r[1], -r[0], 0.0]])
    return T + A @ L @ A.T + A @ S + S.T @ A.T


def test_5eil_groups_parsed(eil):
    d, *_ = eil
    assert d.T.shape == (29, 3, 3)
    assert (d.group >= 0).sum() == 7221  # atoms inside TLS selections (of 7,327)


def test_tls_v1_matches_straightforward_reference(eil):
    d, T, L, S, U = eil
    for i in np.flatnonzero(d.group >= 0)[::7]:
        g = d.group[i]
        np.testing.assert_allclose(U[i], _straightforward(d.xyz[i], T[g], L[g], S[g], d.origin[g]), atol=1e-12)
    assert np.all(U[d.group < 0] == 0)


def test_tls_v1_matches_gemmi_on_5eil(eil):
    d, *_, U = eil
    st = gemmi.read_structure(str(DATA / "5eil.cif.gz"))
    groups = st.meta.refinement[0].tls_groups
    assert [g.id for g in groups] == d.ids
    worst = 0.0
    for i in np.flatnonzero(d.group >= 0)[::5]:
        ref = gemmi.calculate_u_from_tls(groups[d.group[i]], gemmi.Position(*d.xyz[i])).elements_pdb()
        worst = max(worst, float(np.abs(U[i][IDX6] - ref).max()))
    assert worst < 1e-9, worst


def _deviatoric(u6):
    out = u6.copy()
    out[:, :3] -= u6[:, :3].mean(1, keepdims=True)
    return out


def test_tls_u_explains_deposited_anisotropy(eil):
    """PHENIX writes ANISOU = U_TLS + U_iso(residual): the anisotropic part must be U_TLS's."""
    d, *_, U = eil
    m = (d.group >= 0) & np.isfinite(d.u6[:, 0])
    dep, tls = _deviatoric(d.u6[m]), _deviatoric(U[m][:, *IDX6])
    corr = np.corrcoef(dep.ravel(), tls.ravel())[0, 1]
    print(f"5EIL: {m.sum()} aniso atoms, deviatoric correlation {corr:.4f}, "
          f"median |residual anisotropy| {np.median(np.abs(dep - tls).max(1)):.4f} Å²")
    assert corr > 0.99
    assert np.median(np.abs(dep - tls).max(1)) < 0.01
    # the same check rejects the other S conventions (transposed / negated S)
    for S_alt in (d.S.transpose(0, 2, 1), -d.S):
        Ua = tls_v1(d.xyz, *tls_from_mmcif_units(d.T, d.L, S_alt), d.origin, d.group)
        assert np.corrcoef(dep.ravel(), _deviatoric(Ua[m][:, *IDX6]).ravel())[0, 1] < 0.6


def test_origin_invariance_on_real_groups(eil):
    d, T, L, S, U = eil
    rng = np.random.default_rng(0)
    for g in range(len(T)):
        new = d.origin[g] + rng.normal(size=3) * 20
        T2, L2, S2 = tls_shift_origin(T[g], L[g], S[g], d.origin[g], new)
        sel = d.group == g
        np.testing.assert_allclose(tls_v1(d.xyz[sel], T2, L2, S2, new), U[sel], atol=1e-10)


def test_monte_carlo_covariance_on_5eil_group(eil):
    d, T, L, S, _ = eil
    sel = np.flatnonzero(d.group == 0)
    x = d.xyz[sel]
    tls = GaussianDescriptor("tls", "tls_v1", {"T": T[0], "L": L[0], "S": S[0], "origin": d.origin[0]})
    iso = GaussianDescriptor("b", "iadp_v1", {"B": np.full(len(sel), 5.0)})
    r = Renderer(RenderModel(x, continuous=(tls, iso)))
    U = r.covariance()
    draws = r.sample(20_000, seed=11) - x
    C = np.einsum("sni,snj->nij", draws, draws) / len(draws)
    err = np.linalg.norm(C - U, axis=(1, 2)) / np.linalg.norm(U, axis=(1, 2))
    print(f"5EIL group 1: {len(sel)} atoms, relative Frobenius error median {np.median(err):.4f} max {err.max():.4f}")
    assert err.max() < 0.05


def test_3o5r_b_matches_trace_of_aniso():
    st = gemmi.read_structure(str(DATA / "3o5r.cif.gz"))
    ueq, b = [], []
    for cra in st[0].all():
        a = cra.atom.aniso
        if a.nonzero():
            ueq.append((a.u11 + a.u22 + a.u33) / 3)
            b.append(cra.atom.b_iso)
    ueq, b = np.array(ueq), np.array(b)
    assert len(b) == 1470
    diff = np.abs(b * B_TO_U - ueq)
    print(f"3O5R: max |B/8π² - tr(U)/3| = {diff.max():.2e} Å² over {len(b)} atoms")
    # B printed to 0.01 Å² (≤ 6.3e-5 Å² in U) and U to 1e-4 Å² (≤ 5e-5 on the mean): well inside 2e-4
    assert diff.max() < 2e-4
