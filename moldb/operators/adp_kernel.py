"""A compiled one-pass ``U_total`` kernel for numpy (numba), with the array-at-a-time code as fallback.

The fused evaluation (:mod:`moldb.operators.adp_poly`) is about 150 elementwise passes when run
as numpy expressions; each pass streams its operands through memory. Compiled, the same algebra is
one loop per stage that keeps every intermediate in registers:

1. shift every TLS group to the shared centre (21 numbers per group, ``tls_at_centre``);
2. sum the shifted parameters of each distinct combination of groups (one row per finest group);
3. per atom: ``tls_v1`` of its combination's 21 numbers at ``x - c``, plus its isotropic
   (``B/8π²``) and anisotropic ADP terms, written straight into ``U`` (n, 3, 3).

The loops follow :func:`~moldb.operators.adp_poly.tls_at_centre` and
:func:`~moldb.operators.adp_poly.tls_u6_rows` term for term and accumulate in float64 whatever the
output dtype; the tests hold both paths to 1e-12 relative. numba is optional (``moldb[render]``):
without it, or with ``MOLDB_NUMBA=0``, :func:`available` is False and callers use the numpy path.
Kernels compile on first use (about a second, then cached on disk by numba).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["add_draws", "available", "fused_u"]

_KERNELS: dict[str, Any] = {}


def available() -> bool:
    """True when numba imports and ``MOLDB_NUMBA`` is not ``"0"``."""
    if os.environ.get("MOLDB_NUMBA", "1") == "0":
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _compile() -> dict[str, Any]:
    if _KERNELS:
        return _KERNELS
    from numba import njit

    @njit(cache=True, nogil=True)
    def shift(T9: Any, L9: Any, S9: Any, o3: Any, amp: Any, P: Any) -> None:  # pragma: no cover - compiled
        sp = np.empty(9)
        ds1 = np.empty(9)
        ds = np.empty(9)
        for g in range(T9.shape[0]):
            ox, oy, oz = o3[g, 0], o3[g, 1], o3[g, 2]
            # D = A(o) with rows (0, oz, -oy), (-oz, 0, ox), (oy, -ox, 0)
            L = L9[g]
            S = S9[g]
            # S' = S - L Dᵀ; (L Dᵀ)[i, j] = Σ_k L[i, k] D[j, k]
            for i in range(3):
                li0, li1, li2 = L[3 * i], L[3 * i + 1], L[3 * i + 2]
                sp[3 * i + 0] = S[3 * i + 0] - (li1 * oz - li2 * oy)
                sp[3 * i + 1] = S[3 * i + 1] - (-li0 * oz + li2 * ox)
                sp[3 * i + 2] = S[3 * i + 2] - (li0 * oy - li1 * ox)
            # (D M)[i, j] for M = S' and M = S
            for j in range(3):
                ds1[j] = oz * sp[3 + j] - oy * sp[6 + j]
                ds1[3 + j] = -oz * sp[j] + ox * sp[6 + j]
                ds1[6 + j] = oy * sp[j] - ox * sp[3 + j]
                ds[j] = oz * S[3 + j] - oy * S[6 + j]
                ds[3 + j] = -oz * S[j] + ox * S[6 + j]
                ds[6 + j] = oy * S[j] - ox * S[3 + j]
            a = amp[g]
            T = T9[g]
            # T' = T - D S' - (D S)ᵀ, six unique entries (11 22 33 12 13 23)
            P[g, 0] = a * (T[0] - ds1[0] - ds[0])
            P[g, 1] = a * (T[4] - ds1[4] - ds[4])
            P[g, 2] = a * (T[8] - ds1[8] - ds[8])
            P[g, 3] = a * (T[1] - ds1[1] - ds[3])
            P[g, 4] = a * (T[2] - ds1[2] - ds[6])
            P[g, 5] = a * (T[5] - ds1[5] - ds[7])
            P[g, 6] = a * L[0]
            P[g, 7] = a * L[4]
            P[g, 8] = a * L[8]
            P[g, 9] = a * L[1]
            P[g, 10] = a * L[2]
            P[g, 11] = a * L[5]
            for k in range(9):
                P[g, 12 + k] = a * sp[k]
        for k in range(21):
            P[T9.shape[0], k] = 0.0

    @njit(cache=True, nogil=True)
    def atoms(P: Any, combos: Any, combo: Any, r: Any, iso: Any, u6: Any, out: Any) -> None:  # pragma: no cover
        nc, nl = combos.shape
        Pc = np.zeros((nc, 21))
        for c in range(nc):
            for j in range(nl):
                g = combos[c, j]
                for k in range(21):
                    Pc[c, k] += P[g, k]
        has_iso = iso.shape[0] > 0
        has_u6 = u6.shape[0] > 0
        for a in range(r.shape[0]):
            p = Pc[combo[a]]
            x, y, z = r[a, 0], r[a, 1], r[a, 2]
            xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
            l11, l22, l33, l12, l13, l23 = p[6], p[7], p[8], p[9], p[10], p[11]
            # A S with the rows of A: (0, z, -y), (-z, 0, x), (y, -x, 0)
            as00 = z * p[15] - y * p[18]
            as01 = z * p[16] - y * p[19]
            as02 = z * p[17] - y * p[20]
            as10 = x * p[18] - z * p[12]
            as11 = x * p[19] - z * p[13]
            as12 = x * p[20] - z * p[14]
            as20 = y * p[12] - x * p[15]
            as21 = y * p[13] - x * p[16]
            as22 = y * p[14] - x * p[17]
            u11 = p[0] + zz * l22 - 2 * yz * l23 + yy * l33 + 2 * as00
            u22 = p[1] + zz * l11 - 2 * xz * l13 + xx * l33 + 2 * as11
            u33 = p[2] + yy * l11 - 2 * xy * l12 + xx * l22 + 2 * as22
            u12 = p[3] - zz * l12 + xz * l23 + yz * l13 - xy * l33 + as01 + as10
            u13 = p[4] + yz * l12 - xz * l22 - yy * l13 + xy * l23 + as02 + as20
            u23 = p[5] - yz * l11 + xz * l12 + xy * l13 - xx * l23 + as12 + as21
            if has_iso:
                b = iso[a]
                u11 += b
                u22 += b
                u33 += b
            if has_u6:
                u11 += u6[a, 0]
                u22 += u6[a, 1]
                u33 += u6[a, 2]
                u12 += u6[a, 3]
                u13 += u6[a, 4]
                u23 += u6[a, 5]
            o = out[a]
            o[0, 0] = u11
            o[1, 1] = u22
            o[2, 2] = u33
            o[0, 1] = u12
            o[1, 0] = u12
            o[0, 2] = u13
            o[2, 0] = u13
            o[1, 2] = u23
            o[2, 1] = u23

    @njit(cache=True, nogil=True)
    def draw(rng: Any, F: Any, X: Any, z: Any, f32: bool) -> None:  # pragma: no cover - compiled
        na = F.shape[0]
        for d in range(X.shape[0]):
            # the stream order of rng.standard_normal((n, 3, na), dtype): render, component, atom
            for c in range(3):
                for a in range(na):
                    if f32:
                        z[c, a] = rng.standard_normal(dtype=np.float32)
                    else:
                        z[c, a] = rng.standard_normal()
            for a in range(na):
                z0, z1, z2 = z[0, a], z[1, a], z[2, a]
                for i in range(3):
                    X[d, a, i] += F[a, i, 0] * z0 + F[a, i, 1] * z1 + F[a, i, 2] * z2

    _KERNELS.update(shift=shift, atoms=atoms, draw=draw)
    return _KERNELS


def fused_u(
    T9: np.ndarray, L9: np.ndarray, S9: np.ndarray, o3: np.ndarray, amp: np.ndarray,
    combos: np.ndarray, combo: np.ndarray, r: np.ndarray, iso: np.ndarray, u6: np.ndarray,
    dtype: np.dtype,
) -> np.ndarray:
    """``U_total`` (n, 3, 3) of a TLS stack plus ADPs, compiled.

    Parameters
    ----------
    T9, L9, S9 : ndarray, shape (G, 9), float64
        Every TLS group of every level, row-major tensors (Å², rad², Å·rad).
    o3 : ndarray, shape (G, 3), float64
        Each group's origin minus the shared centre.
    amp : ndarray, shape (G,), float64
        Per-group amplitude (ones when none).
    combos : ndarray, shape (n_combos, n_levels), int64
        Group rows of each combination; ``G`` (a zero row) for "in no group".
    combo : ndarray, shape (n,), int64
        Each atom's combination.
    r : ndarray, shape (n, 3), float64
        Atom positions minus the centre.
    iso : ndarray, shape (n,) or (0,), float64
        Isotropic ``U`` added to the diagonal (``B/8π²`` summed over ``iadp_v1``), empty for none.
    u6 : ndarray, shape (n, 6) or (0, 6), float64
        Anisotropic ``U11 U22 U33 U12 U13 U23`` summed over ``aadp_v1``, empty for none.
    dtype : numpy dtype
        Of the result (the sums are float64 either way).

    Returns
    -------
    ndarray, shape (n, 3, 3)
    """
    k = _compile()
    P = np.empty((T9.shape[0] + 1, 21))
    k["shift"](T9, L9, S9, o3, amp, P)
    out = np.empty((r.shape[0], 3, 3), dtype=dtype)
    k["atoms"](P, combos, combo, r, iso, u6, out)
    return out


def add_draws(rng: np.random.Generator, F: np.ndarray, X: np.ndarray) -> None:
    """``X[d, a] += F[a] @ z[d, a]`` with ``z`` standard normals from ``rng``, in place, compiled.

    Consumes ``rng`` exactly as ``rng.standard_normal((n, 3, n_atoms), dtype=X.dtype)`` does (numba
    implements numpy's generators), so a seed renders the same draws with or without numba.

    Parameters
    ----------
    rng : numpy.random.Generator
    F : ndarray, shape (n_atoms, 3, 3)
        Per-atom factor, ``F Fᵀ = U_total`` (same dtype as ``X``).
    X : ndarray, shape (n, n_atoms, 3), float32 or float64
        Renders, C-contiguous.
    """
    k = _compile()
    z = np.empty((3, F.shape[0]), dtype=X.dtype)
    k["draw"](rng, np.ascontiguousarray(F, dtype=X.dtype), X, z, X.dtype == np.float32)
