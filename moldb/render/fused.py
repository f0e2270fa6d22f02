"""Fused evaluation of ``U_total``: every parametric Gaussian of a model in one pass.

:func:`covariance_plan` looks only at the model's *structure* (which atoms belong to which group of
which descriptor, and ``x_ref``) and is built once per model and set of descriptors:

* the distinct combinations of TLS groups over all TLS descriptors (for ECHT's nested levels, one
  per finest group), and each atom's combination;
* ``x_ref`` minus a centre, component-major.

:func:`fused_covariance` then turns the *parameters* into ``U_total``: every TLS group re-expressed
about the centre (:func:`~moldb.operators.adp_poly.tls_at_centre`), the 21 shifted parameters summed
once per combination, gathered per atom, and ``tls_v1`` evaluated once per atom
(:func:`~moldb.operators.adp_poly.tls_u6_rows`), plus the isotropic and anisotropic ADPs. The result
equals the sum of the per-descriptor contributions of :meth:`Renderer.contribution` to float64
rounding; both paths are tested against each other.

On the numpy backend the three steps run as one compiled kernel when numba is installed
(:mod:`moldb.operators.adp_kernel`: ~0.5 ms instead of ~4 ms for the 22.8k-atom, five-level spike
stack on one core); ``MOLDB_NUMBA=0`` or no numba selects the array expressions, which are also the
torch (CPU and CUDA) code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moldb.errors import ValidationError
from moldb.operators import adp_kernel
from moldb.operators._xp import as_index, is_torch
from moldb.operators.adp import B_TO_U
from moldb.operators.adp_poly import N_PARAMS, tls_at_centre, tls_u6_rows
from moldb.render.model import GaussianDescriptor, RenderModel

__all__ = ["CovariancePlan", "covariance_plan", "fused_covariance"]

_SYM9 = np.array([0, 3, 4, 3, 1, 5, 4, 5, 2])
"""Columns of U6 (11 22 33 12 13 23) that fill a row-major 3x3 matrix."""

_CHUNK = 4096
"""Atoms per numpy step: ~100 temporaries of this length stay in cache and in the malloc heap."""
_GROUP_CHUNK = 1024
"""TLS groups per numpy step of the origin shift (measured best on the 2-core CI machines)."""


@dataclass(frozen=True)
class CovariancePlan:
    """The structure-only half of ``U_total`` for one model and one list of descriptors.

    Attributes
    ----------
    descriptors : tuple of GaussianDescriptor
    centre : ndarray, shape (3,)
        Shared TLS centre (the centroid of ``x_ref``).
    r : ndarray, shape (3, n_atoms), float64
        ``(x_ref - centre)ᵀ``.
    combo : ndarray, shape (n_atoms,), int64
        Each atom's combination of TLS groups (row of ``combos``).
    combos : ndarray, shape (n_combos, n_tls), int64
        Row in the concatenated groups of all TLS descriptors (descriptor order), per TLS
        descriptor; the total group count (a zero row) for "in no group".
    tls : tuple of int
        Positions in ``descriptors`` of the TLS descriptors (columns of ``combos``).
    atoms : tuple of (ndarray or None)
        Atoms of each descriptor, None for all atoms.
    r_rows : ndarray, shape (n_atoms, 3), float64, optional
        ``x_ref - centre`` atom-major, filled by the compiled path on first use.
    """

    descriptors: tuple[GaussianDescriptor, ...]
    centre: np.ndarray
    r: np.ndarray
    combo: np.ndarray
    combos: np.ndarray
    tls: tuple[int, ...]
    atoms: tuple[np.ndarray | None, ...]
    r_rows: np.ndarray | None = None


def covariance_plan(model: RenderModel, descriptors: Sequence[GaussianDescriptor]) -> CovariancePlan:
    """Build (or fetch from the model's cache) the plan for ``descriptors`` of ``model``."""
    key = tuple(d.name for d in descriptors)
    cache: dict[tuple[str, ...], CovariancePlan] = model.__dict__.setdefault("_covariance_plans", {})
    plan = cache.get(key)
    if plan is not None and all(a is b for a, b in zip(plan.descriptors, descriptors, strict=True)):
        return plan
    n = model.n_atoms
    tls = tuple(i for i, d in enumerate(descriptors) if d.operator == "tls_v1")
    cols = []
    for i in tls:
        d = descriptors[i]
        n_groups = len(d.params["T"]) if np.ndim(d.params["T"]) == 3 else 1
        atoms = model.atoms_of(d)
        group = d.params.get("group")
        g = np.zeros(len(atoms), np.int64) if group is None else np.asarray(group, np.int64)
        if g.shape != atoms.shape:
            raise ValidationError(f"{d.name}: 'group' has {g.size} entries for {atoms.size} atoms")
        if g.size and int(g.max()) >= n_groups:
            raise ValidationError(f"{d.name}: group index {int(g.max())} out of range for {n_groups} groups")
        full = np.full(n, n_groups, np.int64)
        full[atoms] = np.where(g >= 0, g, n_groups)
        cols.append((full, n_groups + 1))
    if cols:
        radix = [r for _, r in cols]
        if float(np.prod(np.asarray(radix, dtype=np.float64))) < 2.0**62:
            key_arr = np.zeros(n, np.int64)
            for full, r in cols:
                key_arr = key_arr * r + full
            ukeys, combo = np.unique(key_arr, return_inverse=True)
            combos = np.empty((len(ukeys), len(cols)), np.int64)
            for j in range(len(cols) - 1, -1, -1):
                combos[:, j] = ukeys % radix[j]
                ukeys = ukeys // radix[j]
        else:
            combos, combo = np.unique(np.stack([f for f, _ in cols], 1), axis=0, return_inverse=True)
        n_total = sum(r - 1 for r in radix)
        offsets = np.cumsum([0, *(r - 1 for r in radix[:-1])])
        none = combos == (np.asarray(radix) - 1)
        combos = np.where(none, n_total, combos + offsets)
    else:
        combo, combos = np.zeros(n, np.int64), np.zeros((1, 0), np.int64)
    scoped = []
    for d in descriptors:
        a = model.atoms_of(d)
        scoped.append(None if a.size == n and bool((a == np.arange(n)).all()) else a)
    centre = model.x_ref.mean(0) if n else np.zeros(3)
    plan = CovariancePlan(tuple(descriptors), centre, np.ascontiguousarray((model.x_ref - centre).T),
                          np.asarray(combo, np.int64).ravel(), combos, tls, tuple(scoped))
    cache[key] = plan
    return plan


def fused_covariance(plan: CovariancePlan, model: RenderModel, arr: Any, r: Any = None) -> Any:
    """``U_total`` (n_atoms, 3, 3) of the plan's descriptors.

    Parameters
    ----------
    plan : CovariancePlan
    model : RenderModel
    arr : callable
        Converts a numpy array to the backend's array type, dtype and device.
    r : array, optional
        ``arr(plan.r)``, when the caller keeps it between calls.
    """
    r = arr(plan.r) if r is None else r
    n = model.n_atoms
    if not is_torch(r) and adp_kernel.available():
        return _compiled(plan, model, r.dtype)
    if plan.tls:
        tls = [plan.descriptors[i] for i in plan.tls]
        T9, L9, S9 = (arr(_cat([d.params[k] for d in tls], 9)) for k in ("T", "L", "S"))
        o3 = arr(_cat([np.asarray(d.params["origin"], np.float64) + d.offset - plan.centre for d in tls], 3))
        amps = [d.params.get("amplitude") for d in tls]
        amp = None
        if any(a is not None for a in amps):
            amp = arr(np.concatenate([np.ones(T.shape[1]) if a is None else np.asarray(a, np.float64).ravel()
                                      for T, a in zip((_cat([d.params["T"]], 9) for d in tls), amps, strict=True)]))
        G = T9.shape[1]
        if is_torch(r):
            P = tls_at_centre(T9, L9, S9, o3, amp)                       # (21, G)
        else:  # numpy: in cache-sized chunks, so temporaries are reused, not mapped afresh
            P = np.empty((N_PARAMS, G), dtype=r.dtype)
            for s in range(0, G, _GROUP_CHUNK):
                e = min(G, s + _GROUP_CHUNK)
                P[:, s:e] = tls_at_centre(T9[:, s:e], L9[:, s:e], S9[:, s:e], o3[:, s:e],
                                          None if amp is None else amp[s:e])
        PT = _pad_zero_row(_contiguous(P.T))                            # (G + 1, 21), row gathers
        cols = as_index(plan.combos, r)
        Pc = PT[cols[:, 0]]
        for j in range(1, len(tls)):
            Pc += PT[cols[:, j]]
        combo = as_index(plan.combo, r)
        if is_torch(r):
            U6 = tls_u6_rows(Pc[combo].T.contiguous(), r)                # (6, n)
        else:
            U6 = np.empty((6, n), dtype=r.dtype)
            for s in range(0, n, _CHUNK):
                e = min(n, s + _CHUNK)
                U6[:, s:e] = tls_u6_rows(np.ascontiguousarray(Pc[combo[s:e]].T), r[:, s:e])
    else:
        U6 = _zeros((6, n), r)
    for d, atoms in zip(plan.descriptors, plan.atoms, strict=True):
        if d.operator == "tls_v1":
            continue
        idx = slice(None) if atoms is None else as_index(atoms, r)
        if d.operator == "iadp_v1":
            U6[0:3, idx] += arr(np.asarray(d.params["B"], dtype=np.float64) * B_TO_U)[None, :]
        elif d.operator == "aadp_v1":
            U6[:, idx] += arr(np.asarray(d.params["U6"], dtype=np.float64).T)
        else:
            raise ValidationError(f"{d.name}: unknown parametric-Gaussian operator {d.operator!r}")
    if is_torch(U6):
        return U6[as_index(_SYM9, r)].T.reshape(n, 3, 3).contiguous()
    U = np.empty((n, 9), dtype=U6.dtype)
    for s in range(0, n, _CHUNK):
        U[s:s + _CHUNK] = U6[_SYM9, s:s + _CHUNK].T
    return U.reshape(n, 3, 3)


def _compiled(plan: CovariancePlan, model: RenderModel, dtype: np.dtype) -> np.ndarray:
    """The numpy path through the compiled one-pass kernel (:mod:`moldb.operators.adp_kernel`)."""
    n = model.n_atoms
    tls = [plan.descriptors[i] for i in plan.tls]
    rows = [_rows(d.params["T"], 9) for d in tls]
    T9 = np.concatenate(rows) if rows else np.zeros((0, 9))
    L9, S9 = ((np.concatenate([_rows(d.params[k], 9) for d in tls]) if tls else np.zeros((0, 9))) for k in "LS")
    o3 = (np.concatenate([_rows(np.asarray(d.params["origin"], np.float64) + d.offset - plan.centre, 3)
                          for d in tls]) if tls else np.zeros((0, 3)))
    amp = np.concatenate([np.ones(len(t)) if d.params.get("amplitude") is None
                          else np.asarray(d.params["amplitude"], np.float64).ravel()
                          for d, t in zip(tls, rows, strict=True)]) if tls else np.zeros(0)
    iso, u6 = np.zeros(0), np.zeros((0, 6))
    for d, atoms in zip(plan.descriptors, plan.atoms, strict=True):
        if d.operator == "tls_v1":
            continue
        if d.operator == "iadp_v1":
            b = np.asarray(d.params["B"], dtype=np.float64) * B_TO_U
            if atoms is None and not iso.size:
                iso = np.ascontiguousarray(b)
            else:
                iso = iso if iso.size else np.zeros(n)
                iso[slice(None) if atoms is None else atoms] += b
        elif d.operator == "aadp_v1":
            u6 = u6 if u6.size else np.zeros((n, 6))
            u6[slice(None) if atoms is None else atoms] += np.asarray(d.params["U6"], dtype=np.float64)
        else:
            raise ValidationError(f"{d.name}: unknown parametric-Gaussian operator {d.operator!r}")
    r_rows = plan.r_rows
    if r_rows is None:
        r_rows = np.ascontiguousarray(plan.r.T)
        object.__setattr__(plan, "r_rows", r_rows)
    return adp_kernel.fused_u(T9, L9, S9, o3, amp, plan.combos, plan.combo, r_rows, iso, u6, dtype)


def _rows(a: Any, width: int) -> np.ndarray:
    """Per-group values as contiguous float64 rows (G, width)."""
    return np.ascontiguousarray(np.asarray(a, np.float64).reshape(-1, width))


def _cat(parts: list[Any], width: int) -> np.ndarray:
    """Concatenate per-group arrays into one component-major (width, G) array."""
    return np.concatenate([np.asarray(p, np.float64).reshape(-1, width).T for p in parts], axis=1)


def _contiguous(a: Any) -> Any:
    return a.contiguous() if is_torch(a) else np.ascontiguousarray(a)


def _pad_zero_row(P: Any) -> Any:
    if is_torch(P):
        import torch

        return torch.cat([P, torch.zeros((1, P.shape[1]), dtype=P.dtype, device=P.device)])
    return np.concatenate([P, np.zeros((1, P.shape[1]), dtype=P.dtype)])


def _zeros(shape: tuple[int, ...], like: Any) -> Any:
    if is_torch(like):
        import torch

        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return np.zeros(shape, dtype=like.dtype)
