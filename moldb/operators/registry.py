"""The operator registry: spec-defined operators pinned by name, version and content hash.

A deposition refers to a registry operator as ``name`` + ``version`` + ``sha256``; the hash is
over the source text of the implementation (every function in ``impl``, in name order), so a
consumer can re-implement against the spec and check it still pins the same body, and a silent
change of an operator's body changes its hash (a test pins the current hashes' stability).
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from moldb.errors import ValidationError
from moldb.operators import adp, motion, neural

__all__ = ["OPERATORS", "Operator", "get", "register"]

Kind = Literal["parametric_gaussian", "basis", "rigid_body", "neural_decoder", "external_reference"]
Composition = Literal["additive_covariance", "additive_displacement", "sequential_transform", "replace"]


@dataclass(frozen=True)
class Operator:
    """One registry entry.

    Attributes
    ----------
    name : str
        ``kind/name``, e.g. ``"parametric_gaussian/tls_v1"``.
    version : int
    kind : str
        Mode C subcase the operator satisfies.
    composition : str
        Composition algebra it is evaluated under.
    venues : tuple of str
        Devices it runs on (``"cpu"``, ``"cuda"``).
    impl : dict of str to callable
        Implementation functions; ``impl["main"]`` is the entry point.
    """

    name: str
    version: int
    kind: Kind
    composition: Composition
    venues: tuple[str, ...]
    impl: dict[str, Callable[..., Any]]

    @property
    def sha256(self) -> str:
        """Content hash of the implementation source (plus name and version)."""
        h = hashlib.sha256(f"{self.name}\n{self.version}\n".encode())
        for key in sorted(self.impl):
            h.update(key.encode() + b"\n" + inspect.getsource(self.impl[key]).encode())
        return h.hexdigest()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.impl["main"](*args, **kwargs)


OPERATORS: dict[str, Operator] = {}


def register(op: Operator) -> Operator:
    """Add ``op``; a different operator already registered under the same name is an error."""
    old = OPERATORS.get(op.name)
    if old is not None and old.sha256 != op.sha256:
        raise ValidationError(f"operator {op.name} is already registered with another body; bump its version")
    OPERATORS[op.name] = op
    return op


def get(name: str, sha256: str | None = None) -> Operator:
    """Look up an operator by name (``"tls_v1"`` or ``"parametric_gaussian/tls_v1"``), checking its hash."""
    full = name if "/" in name else next((k for k in OPERATORS if k.endswith("/" + name)), name)
    op = OPERATORS.get(full)
    if op is None:
        raise ValidationError(f"no operator {name!r} in the registry; known: {sorted(OPERATORS)}")
    if sha256 is not None and op.sha256 != sha256:
        raise ValidationError(f"operator {full} has content hash {op.sha256}, the deposition pins {sha256}")
    return op


_BOTH = ("cpu", "cuda")
for _op in (
    Operator("parametric_gaussian/tls_v1", 1, "parametric_gaussian", "additive_covariance", _BOTH,
             {"main": adp.tls_v1, "sym3": adp.sym3}),
    Operator("parametric_gaussian/iadp_v1", 1, "parametric_gaussian", "additive_covariance", _BOTH,
             {"main": adp.iadp_v1, "sym3": adp.sym3}),
    Operator("parametric_gaussian/aadp_v1", 1, "parametric_gaussian", "additive_covariance", _BOTH,
             {"main": adp.aadp_v1, "sym3": adp.sym3}),
    Operator("basis/nm_v1", 1, "basis", "additive_displacement", _BOTH, {"main": motion.nm_v1}),
    Operator("rigid_body/quat_v1", 1, "rigid_body", "sequential_transform", _BOTH,
             {"main": motion.quat_v1, "quat_to_matrix": motion.quat_to_matrix}),
    Operator("neural_decoder/torchscript_v1", 1, "neural_decoder", "additive_displacement", _BOTH,
             {"main": neural.NeuralDecoder}),
):
    register(_op)
