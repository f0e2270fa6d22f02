"""Deterministic-displacement operators: ``nm_v1`` (normal-mode / PCA basis) and ``quat_v1``.

Both return displacements ``(…, n, 3)`` that the render engine adds to the mean structure
(never to ``U_total``). Bodies run on numpy and torch alike.
"""

from __future__ import annotations

from moldb.operators._xp import Array, as_like, stack

__all__ = ["nm_v1", "quat_to_matrix", "quat_v1"]


def nm_v1(basis: Array, coeffs: Array) -> Array:
    """Linear basis displacement ``Σ_k c_k · basis[k]`` (normal modes, PCA).

    Parameters
    ----------
    basis : array, shape (k, n, 3), float (Å per unit amplitude)
    coeffs : array, shape (k,) or (b, k)
        Amplitudes; a leading batch axis gives one displacement field per row.

    Returns
    -------
    array, shape (n, 3) or (b, n, 3)
    """
    k, n, _ = basis.shape
    c = as_like(coeffs, basis)
    flat = basis.reshape(k, n * 3)
    out = c @ flat
    return out.reshape(*c.shape[:-1], n, 3)


def quat_to_matrix(q: Array) -> Array:
    """Rotation matrix of a quaternion, scalar first ``(w, x, y, z)``, Hamilton product, active.

    The quaternion is normalised first, so any non-zero ``q`` is accepted.

    Parameters
    ----------
    q : array, shape (4,) or (b, 4)

    Returns
    -------
    array, shape (3, 3) or (b, 3, 3)
    """
    q = q / ((q * q).sum(-1, keepdims=True) ** 0.5)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return stack(rows, -2)


def quat_v1(x: Array, q: Array, centre: Array, translation: Array) -> Array:
    """Rigid-body displacement: ``x' = R(q) (x - c) + c + t``; returns ``x' - x``.

    Parameters
    ----------
    x : array, shape (n, 3), float
        Positions the rigid body acts on (its scope's atoms).
    q : array, shape (4,) or (b, 4)
        Quaternion ``(w, x, y, z)``; see :func:`quat_to_matrix`.
    centre, translation : array, shape (3,) or (b, 3)

    Returns
    -------
    array, shape (n, 3) or (b, n, 3)
    """
    q, c, t = (as_like(v, x) for v in (q, centre, translation))
    R = quat_to_matrix(q)
    if R.ndim == 2:
        return (x - c) @ R.T + c + t - x
    rel = x[None] - c[:, None, :]
    return rel @ R.swapaxes(-1, -2) + c[:, None, :] + t[:, None, :] - x[None]
