"""``tls_v1`` for a whole TLS stack at once: every group re-expressed about one shared centre.

A TLS group's ``U = T + A(r) L A(r)ᵀ + A(r) S + Sᵀ A(r)ᵀ`` (:mod:`moldb.operators.adp`, ``r = x - O``)
can be re-expressed about any other point ``c`` without changing any atom's U (the Schomaker–Trueblood
origin shift, :func:`~moldb.operators.adp.tls_shift_origin`). With ``o = O - c``, ``x' = x - c`` and
``D = A(o)``::

    U(x) = T' + A(x') L A(x')ᵀ + A(x') S' + S'ᵀ A(x')ᵀ
    T' = T + D L Dᵀ - D S - Sᵀ D,    S' = S - L Dᵀ,    L' = L

Once every group of every level shares the centre ``c``, U is *linear* in ``(T', L', S')``: the
contributions of all the levels an atom belongs to add up parameter by parameter. ``U_total`` of a
five-level ECHT stack is then: shift every group (21 numbers each), sum the shifted parameters once
per distinct combination of groups (for nested levels, once per finest group), and evaluate
``tls_v1`` **once** per atom at ``x'``, instead of once per atom per level.

Arrays here are component-major (``(21, G)``: one contiguous row per tensor component), so every
step is an elementwise operation over long rows; the same code runs on numpy and torch.
"""

from __future__ import annotations

from typing import Any

from moldb.operators._xp import Array, as_like, stack

__all__ = ["N_PARAMS", "tls_at_centre", "tls_u6_rows"]

N_PARAMS = 21
"""Rows of a shifted parameter block: ``T'`` (6: 11 22 33 12 13 23), ``L`` (6, same order), ``S'`` (9, row-major)."""

_U6 = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _mm(A: list[list[Any]], B: list[list[Any]]) -> list[list[Any]]:
    """3x3 product of nested lists of rows, ``None`` entries being structural zeros."""
    out: list[list[Any]] = []
    for i in range(3):
        row = []
        for j in range(3):
            terms = [A[i][k] * B[k][j] for k in range(3) if A[i][k] is not None and B[k][j] is not None]
            row.append(sum(terms[1:], terms[0]) if terms else None)
        out.append(row)
    return out


def _t(A: list[list[Any]]) -> list[list[Any]]:
    return [[A[j][i] for j in range(3)] for i in range(3)]


def tls_at_centre(T9: Array, L9: Array, S9: Array, o3: Array, amplitude: Array | None = None) -> Array:
    """Re-express TLS groups about a shared centre.

    Parameters
    ----------
    T9, L9, S9 : array, shape (9, G), float
        Component-major tensors (row ``3 i + j`` holds entry ``(i, j)`` of every group), in Å², rad²
        and Å·rad (``S[i, j] = <λ_i t_j>``).
    o3 : array, shape (3, G)
        Each group's origin minus the centre (Å).
    amplitude : array, shape (G,), optional
        ECHT-style scale of each group's U (folded into the parameters).

    Returns
    -------
    array, shape (21, G)
        ``T'`` (6), ``L`` (6) and ``S'`` (9) rows, see :data:`N_PARAMS`.
    """
    ox, oy, oz = o3[0], o3[1], o3[2]
    D: list[list[Any]] = [[None, oz, -oy], [-oz, None, ox], [oy, -ox, None]]
    L = [[L9[3 * i + j] for j in range(3)] for i in range(3)]
    S = [[S9[3 * i + j] for j in range(3)] for i in range(3)]
    LDt = _mm(L, _t(D))
    s9 = [[S[i][j] - LDt[i][j] for j in range(3)] for i in range(3)]   # S' = S - L Dᵀ
    # T' = T + D L Dᵀ - D S - Sᵀ Dᵀ = T - D S' - (D S)ᵀ; only the six unique entries
    DS1, DS = _mm(D, s9), _mm(D, S)
    t6 = [T9[3 * i + j] - DS1[i][j] - DS[j][i] for i, j in _U6]
    l6 = [L[i][j] for i, j in _U6]
    s9 = [v for row in s9 for v in row]
    P = stack([*t6, *l6, *s9], 0)
    if amplitude is not None:
        P = P * as_like(amplitude, P)[None, :]
    return P


def tls_u6_rows(P: Array, r: Array) -> Array:
    """``tls_v1`` of per-atom parameters, component-major.

    Parameters
    ----------
    P : array, shape (21, n)
        Each atom's (summed) shifted parameters, rows as :func:`tls_at_centre` returns them.
    r : array, shape (3, n)
        Atom positions minus the centre (Å).

    Returns
    -------
    array, shape (6, n)
        ``U11 U22 U33 U12 U13 U23`` (Å²).
    """
    x, y, z = r[0], r[1], r[2]
    xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
    l11, l22, l33, l12, l13, l23 = (P[6 + k] for k in range(6))
    s = [[P[12 + 3 * i + j] for j in range(3)] for i in range(3)]
    # A S with the rows of A: (0, z, -y), (-z, 0, x), (y, -x, 0)
    AS = [[z * s[1][j] - y * s[2][j] for j in range(3)],
          [x * s[2][j] - z * s[0][j] for j in range(3)],
          [y * s[0][j] - x * s[1][j] for j in range(3)]]
    return stack([
        P[0] + zz * l22 - 2 * yz * l23 + yy * l33 + 2 * AS[0][0],
        P[1] + zz * l11 - 2 * xz * l13 + xx * l33 + 2 * AS[1][1],
        P[2] + yy * l11 - 2 * xy * l12 + xx * l22 + 2 * AS[2][2],
        P[3] - zz * l12 + xz * l23 + yz * l13 - xy * l33 + AS[0][1] + AS[1][0],
        P[4] + yz * l12 - xz * l22 - yy * l13 + xy * l23 + AS[0][2] + AS[2][0],
        P[5] - yz * l11 + xz * l12 + xy * l13 - xx * l23 + AS[1][2] + AS[2][1],
    ], 0)
