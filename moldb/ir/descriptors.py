"""Typed heterogeneity descriptors: TLS, isotropic / anisotropic ADPs, altloc states, ensembles.

Units: TLS ``T`` in Å², ``L`` in rad², ``S`` in rad·Å (mmCIF's ``_pdbx_refine_tls``
gives L in deg² and S in deg·Å; :func:`moldb.ir.builtin.tls_descriptor` converts),
origin in Å. ADPs in Å² (B) and Å² (U).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from moldb.ir.model import Composition, Descriptor, Mode, OperatorRef, Regime, SignalType

__all__ = [
    "DESCRIPTOR_TYPES",
    "TLS",
    "AltlocStates",
    "AnisotropicADP",
    "Ensemble",
    "GenericDescriptor",
    "IsotropicADP",
    "descriptor_from",
]


def _arr(v: Any, dtype: type, ndim_tail: tuple[int, ...], name: str) -> np.ndarray | None:
    if v is None:
        return None
    a: np.ndarray = np.asarray(v)
    if a.dtype.kind != "f":  # keep float32 parameters float32 (half the bytes); cast anything else
        a = a.astype(dtype)
    if ndim_tail and a.shape[1:] != ndim_tail:
        raise ValueError(f"{name}: expected shape (n, {', '.join(map(str, ndim_tail))}), got {a.shape}")
    return a


class GenericDescriptor(Descriptor):
    """A descriptor of a type moldb has no class for; arrays in ``params``."""

    TYPE = "generic"
    params: dict[str, Any] = Field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.params.items()}

    def spec(self) -> dict[str, Any]:
        d = self.model_dump(mode="json", exclude={"params"})
        d["type"] = self.attrs.get("type", self.TYPE)
        return d


class TLS(Descriptor):
    """TLS tensors per group of the ``scope`` grouping (Regime 3, Mode C, additive covariance).

    Parameters
    ----------
    groups : list of str
        Group names of the scope grouping, one per tensor set.
    T, L, S : array_like, shape (n, 3, 3)
        Translation (Å²), libration (rad²), screw (rad·Å) tensors.
    origin : array_like, shape (n, 3)
        TLS origin (Å).
    b_includes_tls : bool or None
        Whether the atoms' deposited B already include the TLS contribution (None: unknown).
    """

    TYPE = "tls"
    ARRAYS = ("T", "L", "S", "origin")
    regime: Regime = Regime.CONTINUOUS
    scope: str = "tls"
    mode: Mode = Mode.C
    composition: Composition = Composition.ADDITIVE_COVARIANCE
    signal_type: SignalType = SignalType.GAUSSIAN_DISORDER
    operator: OperatorRef | None = OperatorRef(name="parametric_gaussian/tls_v1")
    groups: list[str] = Field(default_factory=list)
    T: Any = None
    L: Any = None
    S: Any = None
    origin: Any = None
    b_includes_tls: bool | None = None

    @field_validator("T", "L", "S")
    @classmethod
    def _tensor(cls, v: Any) -> np.ndarray | None:
        return _arr(v, np.float64, (3, 3), "TLS tensor")

    @field_validator("origin")
    @classmethod
    def _origin(cls, v: Any) -> np.ndarray | None:
        return _arr(v, np.float64, (3,), "origin")

    @model_validator(mode="after")
    def _shapes(self) -> TLS:
        n = len(self.groups)
        for k in self.ARRAYS:
            a = getattr(self, k)
            if a is None:
                raise ValueError(f"TLS: {k} is required")
            if len(a) != n:
                raise ValueError(f"TLS: {k} has {len(a)} rows for {n} groups")
        return self


class IsotropicADP(Descriptor):
    """Isotropic B per atom (``iadp_v1``); ``B`` None means it is read from the atoms' ``B_iso_or_equiv``."""

    TYPE = "iadp"
    ARRAYS = ("B",)
    scope: str = "atom"
    signal_type: SignalType = SignalType.GAUSSIAN_DISORDER
    operator: OperatorRef | None = OperatorRef(name="parametric_gaussian/iadp_v1")
    B: Any = None

    @field_validator("B")
    @classmethod
    def _b(cls, v: Any) -> np.ndarray | None:
        return _arr(v, np.float64, (), "B")


class AnisotropicADP(Descriptor):
    """Anisotropic U per atom (``aadp_v1``): ``U`` (n, 6) as U11 U22 U33 U12 U13 U23, or atom columns."""

    TYPE = "aadp"
    ARRAYS = ("U",)
    scope: str = "atom"
    signal_type: SignalType = SignalType.GAUSSIAN_DISORDER
    operator: OperatorRef | None = OperatorRef(name="parametric_gaussian/aadp_v1")
    U: Any = None

    @field_validator("U")
    @classmethod
    def _u(cls, v: Any) -> np.ndarray | None:
        return _arr(v, np.float64, (6,), "U")


class AltlocStates(Descriptor):
    """Discrete alternate conformations (Regime 1, Mode B) at residue scope.

    ``states`` are the altloc ids; ``rows`` the atom rows carrying an altloc,
    ``state`` the index into ``states`` of each, ``occupancy`` their occupancies,
    ``group`` the index of each row's group in the scope grouping.
    """

    TYPE = "altloc"
    ARRAYS = ("rows", "state", "occupancy", "group")
    regime: Regime = Regime.DISCRETE
    scope: str = "residue"
    mode: Mode = Mode.B
    composition: Composition = Composition.REPLACE
    signal_type: SignalType = SignalType.CATEGORICAL_STATE
    operator: OperatorRef | None = None
    rows: Any = None
    state: Any = None
    occupancy: Any = None
    group: Any = None


class Ensemble(Descriptor):
    """A Regime 2 ensemble (NMR models, trajectory frames) on a named sample axis, Mode A."""

    TYPE = "ensemble"
    regime: Regime = Regime.ENSEMBLE
    scope: str = "model"
    mode: Mode = Mode.A
    sample_axis: str | None = "model"
    composition: Composition = Composition.REPLACE
    signal_type: SignalType = SignalType.COORDINATE_SET
    operator: OperatorRef | None = None


DESCRIPTOR_TYPES: dict[str, type[Descriptor]] = {
    c.TYPE: c for c in (TLS, IsotropicADP, AnisotropicADP, AltlocStates, Ensemble, GenericDescriptor)
}
from moldb.ir.motion import ExternalFrames, NeuralDecoder, NormalModes, RigidBody  # noqa: E402 (motion types)

DESCRIPTOR_TYPES.update({c.TYPE: c for c in (NormalModes, RigidBody, NeuralDecoder, ExternalFrames)})


def descriptor_from(spec: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> Descriptor:
    """Rebuild a typed descriptor from its stored spec and arrays."""
    spec = dict(spec)
    kind = spec.pop("type", "generic")
    cls = DESCRIPTOR_TYPES.get(kind, GenericDescriptor)
    arrays = dict(arrays or {})
    if cls is GenericDescriptor:
        spec.setdefault("attrs", {})["type"] = kind
        return GenericDescriptor.model_validate({**spec, "params": arrays})
    return cls.model_validate({**spec, **arrays})
