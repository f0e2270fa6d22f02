"""Pydantic models of the IR: groupings, heterogeneity descriptors, provenance, operator references.

The IR has four layers over the same atoms (``docs/ir.md``): the **atoms** (one
row per ``_atom_site`` row), **groupings** (typed, versioned bipartite membership
tables group ↔ atom row), **descriptors** (what varies, at which grouping's scope,
in which regime and materialization mode, composed by which algebra) and
**operators** (the functions that turn Mode C parameters into displacements or
covariances; :mod:`moldb.ir.operators`).

Everything here is pure data: no TileDB, no I/O. A descriptor serialises to a
JSON spec (:meth:`Descriptor.spec`) plus named numpy arrays
(:meth:`Descriptor.arrays`); :func:`descriptor_from` rebuilds the typed object.
"""

from __future__ import annotations

import re
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from moldb.errors import ValidationError

__all__ = [
    "NAME_PATTERN",
    "Composition",
    "Descriptor",
    "Edge",
    "FitBlock",
    "Grouping",
    "Mode",
    "OperatorRef",
    "Provenance",
    "Regime",
    "SignalType",
    "check_name",
]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}$")


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a valid grouping / descriptor name, else raise ``ValidationError``."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValidationError(f"{what} {name!r} is not valid: use 1-128 letters, digits, '_', '.', '-' or '/', "
                         "starting with a letter or digit (e.g. 'domains/v1')")
    return name


class Regime(IntEnum):
    """Heterogeneity regime: 1 discrete states, 2 trajectory / ensemble, 3 continuous."""

    DISCRETE = 1
    ENSEMBLE = 2
    CONTINUOUS = 3


class Mode(StrEnum):
    """Materialization mode: A full coordinate sets, B sparse deltas vs x_ref, C operator parameters."""

    A = "A"
    B = "B"
    C = "C"


class Composition(StrEnum):
    """Composition algebra: how a descriptor combines with others on the same atoms."""

    NESTED_UNDER = "nested_under"
    ADDITIVE_COVARIANCE = "additive_covariance"
    ADDITIVE_DISPLACEMENT = "additive_displacement"
    REPLACE = "replace"


class SignalType(StrEnum):
    """The physical signal a descriptor describes (dispatches its composition stack)."""

    GAUSSIAN_DISORDER = "gaussian_disorder"
    CATEGORICAL_STATE = "categorical_state"
    DETERMINISTIC_DISPLACEMENT = "deterministic_displacement"
    COORDINATE_SET = "coordinate_set"
    UNKNOWN = "unknown"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class OperatorRef(_Model):
    """Reference to an operator of the registry (``parametric_gaussian/tls_v1``) by name, version, hash."""

    name: str
    version: str = "1"
    content_hash: str | None = None


class FitBlock(BaseModel):
    """How a descriptor's parameters were fitted (ECHT-style fit block; extra keys are kept)."""

    model_config = ConfigDict(extra="allow")
    software: str | None = None
    target: str | None = None
    weights: str | None = None
    regularizer: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    input_hash: str | None = None


class Provenance(BaseModel):
    """Where a grouping or descriptor came from: ``source`` (``ingest:<category>``, ``user``) and a fit block."""

    model_config = ConfigDict(extra="allow")
    source: str = "user"
    author: str = ""
    fit: FitBlock | None = None
    notes: str = ""


class Edge(_Model):
    """A scope-DAG edge from this descriptor to ``parent``.

    ``nested_under``: ``activation`` maps a parent state to the child states it activates
    (a parent state absent from the map leaves the child inactive). ``derived_from``:
    ``function`` names the function or pipeline; ``materialized`` says whether the child is
    stored as data (True) or regenerable from the parent on demand (False).
    """

    kind: Literal["nested_under", "derived_from"]
    parent: str
    activation: dict[str, list[str]] = Field(default_factory=dict)
    function: str | None = None
    materialized: bool = True


class Grouping(_Model):
    """One typed grouping of an entry's atoms (its membership is stored separately).

    Attributes
    ----------
    name : str
        ``chain``, ``residue``, ``tls``, ``domains/v1`` ...
    kind : str
        ``chain``, ``residue``, ``entity``, ``molecule_type``, ``altloc``, ``model``, ``tls``,
        ``heterogeneity_descriptor.scope``, ``user`` ...
    groups : list of str
        Group names; membership stores indices into this list.
    """

    name: str
    kind: str = "user"
    versioned: bool = True
    groups: list[str] = Field(default_factory=list)
    n_members: int = 0
    weighted: bool = False
    builtin: bool = False
    provenance: Provenance = Field(default_factory=Provenance)
    unparsed: list[dict[str, str]] = Field(default_factory=list)  # selections that could not be read

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "grouping name")


class Descriptor(_Model):
    """A heterogeneity descriptor (base class; see the typed subclasses in :mod:`moldb.ir.descriptors`).

    Array-valued parameters are the fields named in ``ARRAYS``; they are stored as a
    binary blob, everything else as JSON.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    ARRAYS: ClassVar[tuple[str, ...]] = ()
    TYPE: ClassVar[str] = "generic"

    id: str = ""
    regime: Regime = Regime.CONTINUOUS
    scope: str = "atom"
    mode: Mode = Mode.C
    sample_axis: str | None = None  # None: parametric (broadcast)
    composition: Composition = Composition.ADDITIVE_COVARIANCE
    signal_type: SignalType = SignalType.UNKNOWN
    reference_offset: list[float] | None = None
    operator: OperatorRef | None = None
    states: list[str] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)
    column_refs: dict[str, str] = Field(default_factory=dict)  # parameter -> atom column holding it
    provenance: Provenance = Field(default_factory=Provenance)
    attrs: dict[str, Any] = Field(default_factory=dict)

    @property
    def type(self) -> str:
        """Descriptor type tag (``tls``, ``iadp``, ``aadp``, ``altloc``, ``ensemble``, ``generic``)."""
        return self.TYPE

    @property
    def parametric(self) -> bool:
        """True when the descriptor has no sample axis (broadcast)."""
        return self.sample_axis is None

    def spec(self) -> dict[str, Any]:
        """JSON-able spec: every field except the arrays, plus ``type``."""
        d = self.model_dump(mode="json", exclude=set(self.ARRAYS))
        d["type"] = self.TYPE
        return d

    def arrays(self) -> dict[str, np.ndarray]:
        """The array-valued parameters by name."""
        return {k: np.asarray(getattr(self, k)) for k in self.ARRAYS if getattr(self, k) is not None}
