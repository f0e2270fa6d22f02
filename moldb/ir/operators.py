"""Operator specs and the built-in, registry-referenced operators.

An operator declares its interface (inputs, output, frame, atom ordering), its
Mode C subcase, its composition tag, and where its body lives (``venue``):
``registry`` (spec-defined, referenced by content hash), ``inline`` (bytes in the
store, hashed) or ``external`` (URI + sha256, verified on read). The content hash
is the SHA-256 of the canonical JSON spec (plus the body bytes for inline ones).

Third-party operators register through the ``moldb.operators`` entry-point group:
each entry point loads to a callable returning a list of :class:`OperatorSpec`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from moldb.ir.model import Composition

__all__ = ["BUILTIN_OPERATORS", "ENTRY_POINT_GROUP", "OperatorSpec", "available_operators", "builtin_operator"]

ENTRY_POINT_GROUP = "moldb.operators"


class OperatorSpec(BaseModel):
    """The declared interface of one operator."""

    model_config = ConfigDict(extra="forbid")
    name: str
    version: str = "1"
    type: Literal["parametric_gaussian", "basis", "rigid_body", "neural_decoder", "external_reference",
                  "identity"]
    subcase: str = ""
    composition: Composition
    inputs: dict[str, str] = Field(default_factory=dict)
    output: str = ""
    frame: str = "x_ref"
    atom_ordering: str = "group member order (ascending atom row)"
    semantics: str = ""
    venue: Literal["registry", "inline", "external"] = "registry"
    uri: str | None = None
    sha256: str | None = None  # external artifact

    def content_hash(self, body: bytes | None = None) -> str:
        """SHA-256 of the canonical spec JSON (and the inline body, if any)."""
        h = hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode())
        if body:
            h.update(body)
        return h.hexdigest()


def _pg(name: str, inputs: dict[str, str], semantics: str, subcase: str) -> OperatorSpec:
    return OperatorSpec(name=name, type="parametric_gaussian", subcase=subcase,
                        composition=Composition.ADDITIVE_COVARIANCE, inputs=inputs,
                        output="(n, 3, 3) per-atom covariance, Å²", semantics=semantics)


BUILTIN_OPERATORS: list[OperatorSpec] = [
    _pg("parametric_gaussian/tls_v1",
        {"T": "(3, 3) Å²", "L": "(3, 3) rad²", "S": "(3, 3) rad·Å", "origin": "(3,) Å", "x_ref": "(n, 3) Å"},
        "U(r) = T + A L A^T + A S + S^T A^T with A the skew matrix of r - origin", "tls"),
    _pg("parametric_gaussian/iadp_v1", {"B": "(n,) Å²", "x_ref": "(n, 3) Å"}, "U = B / (8 pi^2) I3", "iadp"),
    _pg("parametric_gaussian/aadp_v1", {"U": "(n, 6) Å² as U11 U22 U33 U12 U13 U23", "x_ref": "(n, 3) Å"},
        "U = symmetric 3x3 from the six components", "aadp"),
    OperatorSpec(name="basis/nm_v1", type="basis", subcase="normal_modes",
                 composition=Composition.ADDITIVE_DISPLACEMENT,
                 inputs={"basis": "(k, n, 3) Å", "coeffs": "(k,)"}, output="(n, 3) displacement, Å",
                 semantics="sum_k coeffs[k] * basis[k]"),
    OperatorSpec(name="rigid_body/quat_v1", type="rigid_body", subcase="rigid_body",
                 composition=Composition.ADDITIVE_DISPLACEMENT,
                 inputs={"q": "(4,) unit quaternion w x y z", "t": "(3,) Å", "center": "(3,) Å",
                         "x_ref": "(n, 3) Å"},
                 output="(n, 3) displacement, Å", semantics="R(q) (x - center) + center + t - x"),
    OperatorSpec(name="identity", type="identity", subcase="identity", composition=Composition.REPLACE,
                 inputs={"x_ref": "(n, 3) Å"}, output="(n, 3) zero displacement", semantics="no-op"),
]


def builtin_operator(name: str) -> OperatorSpec:
    """The built-in operator called ``name``."""
    for op in BUILTIN_OPERATORS:
        if op.name == name:
            return op
    raise KeyError(f"no built-in operator {name!r}; built-ins: {[o.name for o in BUILTIN_OPERATORS]}")


def available_operators() -> list[OperatorSpec]:
    """Built-in operators plus those registered through the ``moldb.operators`` entry points."""
    from importlib.metadata import entry_points

    out = list(BUILTIN_OPERATORS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        got: Any = ep.load()
        specs = got() if callable(got) else got
        out.extend(s if isinstance(s, OperatorSpec) else OperatorSpec(**s) for s in specs)
    return out
