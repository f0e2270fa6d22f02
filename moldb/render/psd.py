"""Sampling factors for per-atom covariances, and the non-positive-definite policy.

Individual contributions (a TLS group fitted without a positivity constraint, a BUSTER T with a
negative diagonal) may be indefinite; only the **sum** ``U_total`` is checked. Each atom's
``U_total = V diag(w) Vᵀ`` is eigendecomposed (batched ``eigh``) and the draw factor is
``F = V diag(sqrt(max(w, 0)))`` so ``F Fᵀ`` is ``U_total`` with negative eigenvalues clipped to 0.

Policies:

* ``"clip"`` (default): clip, and report in :class:`PSDReport` the atoms whose smallest eigenvalue
  is below ``-atol`` (numerical noise above ``-atol`` is clipped silently).
* ``"strict"``: raise :class:`NonPSDCovarianceError` naming the atoms instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from moldb.errors import ValidationError
from moldb.operators._xp import is_torch

__all__ = ["DEFAULT_ATOL", "NonPSDCovarianceError", "PSDReport", "draw_factor"]

DEFAULT_ATOL = 1e-10
"""Å²: eigenvalues above ``-DEFAULT_ATOL`` are rounding noise, not a non-PSD fit."""


class NonPSDCovarianceError(ValidationError):
    """``U_total`` of some atoms has a negative eigenvalue and the policy is ``"strict"``."""


@dataclass(frozen=True)
class PSDReport:
    """What the PSD policy did.

    Attributes
    ----------
    policy : str
    n_clipped : int
        Atoms with an eigenvalue below ``-atol`` (clipped to 0).
    atoms : ndarray, shape (n_clipped,), int64
    min_eigenvalue : float
        Smallest eigenvalue over all atoms before clipping (Å²).
    """

    policy: str
    n_clipped: int
    atoms: np.ndarray
    min_eigenvalue: float


def draw_factor(
    U: Any, policy: Literal["clip", "strict"] = "clip", atol: float = DEFAULT_ATOL
) -> tuple[Any, PSDReport]:
    """Factor ``F`` (n, 3, 3) with ``F Fᵀ = clip(U)``, for numpy or torch ``U`` (n, 3, 3).

    Raises
    ------
    NonPSDCovarianceError
        ``policy == "strict"`` and some atom has an eigenvalue below ``-atol``.
    """
    if policy not in ("clip", "strict"):
        raise ValidationError(f"PSD policy must be 'clip' or 'strict', not {policy!r}")
    if is_torch(U):
        import torch

        w, V = torch.linalg.eigh(U)
        wmin = w[:, 0].detach().cpu().numpy() if len(w) else np.zeros(0)
        F = V * torch.sqrt(torch.clamp(w, min=0.0))[:, None, :]
    else:
        w, V = np.linalg.eigh(U)
        wmin = w[:, 0] if len(w) else np.zeros(0)
        F = V * np.sqrt(np.maximum(w, 0.0))[:, None, :]
    bad = np.flatnonzero(wmin < -atol)
    report = PSDReport(policy, int(bad.size), bad.astype(np.int64), float(wmin.min()) if wmin.size else 0.0)
    if policy == "strict" and bad.size:
        raise NonPSDCovarianceError(
            f"U_total is not positive semi-definite for {bad.size} atoms (first: {bad[:5].tolist()}, smallest "
            f"eigenvalue {report.min_eigenvalue:.3g} Å²); use psd='clip' to clip negative eigenvalues to 0"
        )
    return F, report
