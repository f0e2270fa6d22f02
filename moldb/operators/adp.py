"""Parametric-Gaussian operators: ``tls_v1``, ``iadp_v1``, ``aadp_v1``.

Each returns a per-atom 3×3 displacement covariance (Å²) that the render engine *adds* into
``U_total`` (composition algebra ``additive_covariance``). Bodies are written once over the
array-namespace shim and run on numpy float64 and on torch (CPU/CUDA).

TLS convention (``tls_v1``)
---------------------------
A rigid group with origin ``O`` moves by ``u = t + λ × r`` with ``r = x - O`` (Schomaker &
Trueblood 1968). With ``T = <t tᵀ>``, ``L = <λ λᵀ>``, ``S = <λ tᵀ>`` (so ``S[i, j] = <λ_i t_j>``,
libration index first) and ``A`` the matrix with ``λ × r = A λ``::

    A = [[ 0,  z, -y],
         [-z,  0,  x],
         [ y, -x,  0]]           (A = -[r]×, r = (x, y, z))
    U = T + A L Aᵀ + A S + Sᵀ Aᵀ

L is in rad² and S in Å·rad here. mmCIF ``_pdbx_refine_tls`` (and PDB REMARK 3) store L in deg²
and S in Å·deg: convert with :func:`tls_from_mmcif_units` first.

This was checked (read, not copied) against two independent public implementations, and the
real-data test compares numerically with the second:

* CCTBX ``mmtbx/tls/tls.h`` (``uaniso_from_tls``): takes L in deg², S in Å·deg and converts to
  radians; its ``ASSA`` terms, e.g. ``U11 += 2 (S21 z - S31 y)``, ``U12 += S31 x - S32 y +
  (S22 - S11) z``, are exactly ``A S + Sᵀ Aᵀ`` with the ``A`` above and ``S`` row = libration. It
  replaces ``S33`` by ``-(S11 + S22)``; that cannot change U because ``A(S + kI) + (S + kI)ᵀAᵀ =
  AS + SᵀAᵀ`` for antisymmetric ``A`` (tested in ``tests/test_operators.py``).
* gemmi ``calculate_u_from_tls`` (``src/calculate.cpp``): scales ``r`` by deg→rad so the same
  deg-unit tensors give Å²; same sign of the S term (``S[1][0] z - S[2][0] y`` for U11) and the
  same L quadratic form. ``tests/test_operators_realdata.py`` matches it to float precision on 5EIL.

Origin change (:func:`tls_shift_origin`): moving the origin by ``d`` (``O' = O + d``) with
``D = A(d)`` gives ``L' = L``, ``S' = S + L Dᵀ``, ``T' = T + D L Dᵀ + D S + Sᵀ Dᵀ``; derived by
substituting ``A(r) = A(r') + A(d)`` in the formula above (the classical Schomaker–Trueblood
origin-shift result; see also Urzhumtsev et al., Acta Cryst. D69, 2013).
"""

from __future__ import annotations

import math

import numpy as np

from moldb.operators._xp import Array, as_index, as_like, sym3

__all__ = [
    "B_TO_U",
    "aadp_v1",
    "iadp_v1",
    "skew_a",
    "tls_from_mmcif_units",
    "tls_shift_origin",
    "tls_v1",
]

B_TO_U = 1.0 / (8.0 * math.pi**2)
"""Factor from an isotropic B (Å²) to U_iso (Å²): ``U = B / 8π²``."""

_DEG = math.pi / 180.0


def skew_a(r: np.ndarray) -> np.ndarray:
    """The TLS ``A`` matrix of an offset: ``A(r) λ = λ × r``.

    Parameters
    ----------
    r : ndarray, shape (..., 3), float64

    Returns
    -------
    ndarray, shape (..., 3, 3)
    """
    r = np.asarray(r, dtype=np.float64)
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    o = np.zeros_like(x)
    return np.stack([np.stack([o, z, -y], -1), np.stack([-z, o, x], -1), np.stack([y, -x, o], -1)], -2)


def tls_from_mmcif_units(
    T: np.ndarray, L_deg2: np.ndarray, S_adeg: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert mmCIF/PDB TLS units (T Å², L deg², S Å·deg) to ``tls_v1`` units (Å², rad², Å·rad)."""
    return (
        np.asarray(T, dtype=np.float64),
        np.asarray(L_deg2, dtype=np.float64) * _DEG**2,
        np.asarray(S_adeg, dtype=np.float64) * _DEG,
    )


def tls_shift_origin(
    T: np.ndarray, L: np.ndarray, S: np.ndarray, origin: np.ndarray, new_origin: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-express one TLS group about ``new_origin`` without changing any atom's U.

    Parameters
    ----------
    T, L, S : ndarray, shape (3, 3), float64 (Å², rad², Å·rad)
    origin, new_origin : ndarray, shape (3,)

    Returns
    -------
    (T', L', S') : tuple of ndarray, shape (3, 3)
    """
    D = skew_a(np.asarray(new_origin, dtype=np.float64) - np.asarray(origin, dtype=np.float64))
    L = np.asarray(L, dtype=np.float64)
    S = np.asarray(S, dtype=np.float64)
    T2 = np.asarray(T, dtype=np.float64) + D @ L @ D.T + D @ S + S.T @ D.T
    return T2, L.copy(), S + L @ D.T


def tls_v1(
    x: Array,
    T: Array,
    L: Array,
    S: Array,
    origin: Array,
    group: Array | None = None,
    amplitude: Array | None = None,
) -> Array:
    """Per-atom TLS covariance ``U = T + A L Aᵀ + A S + Sᵀ Aᵀ`` for many groups at once.

    Parameters
    ----------
    x : array, shape (n, 3), float
        Atom positions (Å) in the same frame as ``origin``.
    T, L, S : array, shape (G, 3, 3) or (3, 3)
        Translation (Å²), libration (rad²) and screw (Å·rad, ``S[i, j] = <λ_i t_j>``) tensors.
    origin : array, shape (G, 3) or (3,)
    group : int array, shape (n,), optional
        Group of each atom, ``-1`` for atoms outside every group (they get zeros). Default: all
        atoms in group 0.
    amplitude : array, shape (G,), optional
        ECHT-style scale of each group's U (default 1).

    Returns
    -------
    array, shape (n, 3, 3), same type/dtype/device as ``x``
    """
    n = x.shape[0]
    T, L, S, origin = (as_like(v, x) for v in (T, L, S, origin))
    if T.ndim == 2:
        T, L, S, origin = T[None], L[None], S[None], origin[None]
    g = as_index(np.zeros(n, dtype=np.int64) if group is None else group, x)
    inside = as_like(g >= 0, x)
    g = g * (g >= 0)
    r = x - origin[g]
    rx, ry, rz = r[:, 0], r[:, 1], r[:, 2]
    Lg, Sg = L[g], S[g]
    l11, l22, l33, l12, l13, l23 = (Lg[:, i, j] for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)))
    # A L Aᵀ, expanded with the rows a1 = (0, z, -y), a2 = (-z, 0, x), a3 = (y, -x, 0) of A.
    ala = [
        rz * rz * l22 - 2 * ry * rz * l23 + ry * ry * l33,
        rz * rz * l11 - 2 * rx * rz * l13 + rx * rx * l33,
        ry * ry * l11 - 2 * rx * ry * l12 + rx * rx * l22,
        -rz * rz * l12 + rx * rz * l23 + ry * rz * l13 - rx * ry * l33,
        ry * rz * l12 - rx * rz * l22 - ry * ry * l13 + rx * ry * l23,
        -ry * rz * l11 + rx * rz * l12 + rx * ry * l13 - rx * rx * l23,
    ]
    # A S: entry (i, j) = a_i · S[:, j].
    s = [[Sg[:, i, j] for j in range(3)] for i in range(3)]
    a_rows = ((None, rz, -ry), (-rz, None, rx), (ry, -rx, None))
    AS = [[sum(a * s[k][j] for k, a in enumerate(a_rows[i]) if a is not None) for j in range(3)] for i in range(3)]
    assa = [2 * AS[0][0], 2 * AS[1][1], 2 * AS[2][2], AS[0][1] + AS[1][0], AS[0][2] + AS[2][0], AS[1][2] + AS[2][1]]
    tg = T[g]
    t6 = [tg[:, 0, 0], tg[:, 1, 1], tg[:, 2, 2], tg[:, 0, 1], tg[:, 0, 2], tg[:, 1, 2]]
    scale = inside if amplitude is None else inside * as_like(amplitude, x)[g]
    U = sym3([(t + a + b) * scale for t, a, b in zip(t6, ala, assa, strict=True)])
    return U


def iadp_v1(B: Array) -> Array:
    """Isotropic ADP: ``U = B / 8π² · I₃``.

    Parameters
    ----------
    B : array, shape (n,), float (Å²)

    Returns
    -------
    array, shape (n, 3, 3)
    """
    u = B * B_TO_U
    z = u * 0
    return sym3([u, u, u, z, z, z])


def aadp_v1(U6: Array) -> Array:
    """Anisotropic ADP: symmetric U from its six components.

    Parameters
    ----------
    U6 : array, shape (n, 6), float (Å²)
        Columns in mmCIF order ``U11, U22, U33, U12, U13, U23``.

    Returns
    -------
    array, shape (n, 3, 3)
    """
    return sym3([U6[:, k] for k in range(6)])

