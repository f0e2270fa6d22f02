"""Tiny array-namespace shim so one operator body serves numpy and torch.

Operator bodies only use elementwise arithmetic, indexing and the helpers here, so the same
source runs on ``numpy.ndarray`` (float64 reference path) and ``torch.Tensor`` (CPU or CUDA).
torch is never imported at module import time: a tensor is recognised by its type's module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any  # numpy.ndarray or torch.Tensor


def is_torch(a: Array) -> bool:
    """True when ``a`` is a ``torch.Tensor`` (checked without importing torch)."""
    return type(a).__module__.startswith("torch")


def stack(parts: list[Array], axis: int) -> Array:
    """``np.stack`` / ``torch.stack`` on a list of same-typed arrays."""
    if is_torch(parts[0]):
        import torch

        return torch.stack(parts, dim=axis)
    return np.stack(parts, axis=axis)


def as_like(value: Any, like: Array) -> Array:
    """Convert ``value`` to the array type, dtype and device of ``like``."""
    if is_torch(like):
        import torch

        if isinstance(value, torch.Tensor):
            return value.to(device=like.device, dtype=like.dtype)
        return torch.as_tensor(np.asarray(value), dtype=like.dtype, device=like.device)
    return np.asarray(value, dtype=like.dtype)


def as_index(value: Any, like: Array) -> Array:
    """Integer index array on the device of ``like``."""
    if is_torch(like):
        import torch

        if isinstance(value, torch.Tensor):
            return value.to(device=like.device, dtype=torch.int64)
        return torch.as_tensor(np.asarray(value, dtype=np.int64), device=like.device)
    return np.asarray(value, dtype=np.int64)


def zeros(shape: tuple[int, ...], like: Array) -> Array:
    """Zeros of ``shape`` with the type/dtype/device of ``like``."""
    if is_torch(like):
        import torch

        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return np.zeros(shape, dtype=like.dtype)


def sym3(c: list[Array]) -> Array:
    """Assemble symmetric 3×3 matrices from six components (11, 22, 33, 12, 13, 23).

    Parameters
    ----------
    c : list of 6 arrays, each shape (...,)

    Returns
    -------
    array, shape (..., 3, 3)
    """
    u11, u22, u33, u12, u13, u23 = c
    rows = [stack([u11, u12, u13], -1), stack([u12, u22, u23], -1), stack([u13, u23, u33], -1)]
    return stack(rows, -2)
