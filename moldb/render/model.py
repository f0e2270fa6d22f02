"""Descriptors the render engine composes: plain arrays, no store.

Discrete-nesting stack (ordered, applied first, builds the mean for a joint state):
:class:`DiscreteDescriptor` (Mode B deltas add, Mode A coordinate sets replace) and
:class:`ExternalReference` (a frame of an external artifact replaces its atoms).

Continuous stack (ordered): :class:`GaussianDescriptor` (``tls_v1`` / ``iadp_v1`` / ``aadp_v1``;
covariances summed into ``U_total``) and the deterministic displacements :class:`BasisDescriptor`,
:class:`RigidDescriptor`, :class:`DecoderDescriptor` (added to the mean, in list order).

Every descriptor has ``offset`` (3,): the constant translation taking its own reference frame to
``x_ref``'s (``p_xref = p_descriptor + offset``). It is applied to absolute quantities (replacing
coordinate sets, TLS origins, rotation centres, absolute decoder outputs); pure displacements
(deltas, basis vectors) are translation-invariant and are not changed by it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from moldb.errors import ValidationError
from moldb.operators.neural import NeuralDecoder

__all__ = [
    "BasisDescriptor",
    "DecoderDescriptor",
    "DiscreteDescriptor",
    "DiscreteState",
    "ExternalReference",
    "GaussianDescriptor",
    "Policy",
    "RenderModel",
    "RigidDescriptor",
]

Policy = Literal["mean", "sample_per_step"]
_ZERO3 = np.zeros(3)


def _offset() -> np.ndarray:
    return _ZERO3.copy()


def _atoms(atoms: Any, n: int, what: str) -> np.ndarray:
    a = np.arange(n, dtype=np.int64) if atoms is None else np.asarray(atoms, dtype=np.int64)
    if a.ndim != 1 or (a.size and (a.min() < 0 or a.max() >= n)) or np.unique(a).size != a.size:
        raise ValidationError(f"{what}: atom indices must be unique and within 0..{n - 1}")
    return a


@dataclass(frozen=True)
class DiscreteState:
    """One state of a discrete descriptor.

    Parameters
    ----------
    atoms : ndarray, shape (k,), int
        Atoms the state touches (indices into ``x_ref``).
    xyz : ndarray, shape (k, 3), float
        Mode B: displacements (``mode="delta"``); Mode A: coordinates (``mode="replace"``).
    mode : {"delta", "replace"}
    """

    atoms: np.ndarray
    xyz: np.ndarray
    mode: Literal["delta", "replace"] = "delta"


@dataclass(frozen=True)
class DiscreteDescriptor:
    """A discrete (Regime 1) descriptor at one scope.

    ``parent`` names an earlier descriptor it is ``nested_under``; ``allowed[parent_state]`` lists
    the legal states given that parent state (an empty tuple: inactive under it). ``default`` is
    used when a joint state does not name this descriptor.
    """

    name: str
    states: Mapping[str, DiscreteState]
    default: str
    parent: str | None = None
    allowed: Mapping[str, tuple[str, ...]] | None = None
    offset: np.ndarray = field(default_factory=_offset)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.states)


@dataclass(frozen=True)
class ExternalReference:
    """Frames of an external artifact (H5MD by URI + sha256); the chosen frame replaces its atoms.

    ``load(key)`` returns ``(len(atoms), 3)`` coordinates (the store's reader, which checks the
    artifact hash, is passed in; the engine never opens files).
    """

    name: str
    uri: str
    sha256: str
    keys: tuple[str, ...]
    load: Callable[[str], np.ndarray]
    default: str
    atoms: np.ndarray | None = None
    parent: str | None = None
    allowed: Mapping[str, tuple[str, ...]] | None = None
    offset: np.ndarray = field(default_factory=_offset)


@dataclass(frozen=True)
class GaussianDescriptor:
    """A parametric Gaussian: ``operator`` in ``{"tls_v1", "iadp_v1", "aadp_v1"}``.

    ``params``: tls_v1 ``T, L, S`` (G, 3, 3) in Å², rad², Å·rad, ``origin`` (G, 3), ``group``
    (len(atoms),) and optional ``amplitude`` (G,); iadp_v1 ``B`` (len(atoms),); aadp_v1 ``U6``
    (len(atoms), 6). ``policy="mean"`` leaves it out of the draws (its mean displacement is 0).
    """

    name: str
    operator: Literal["tls_v1", "iadp_v1", "aadp_v1"]
    params: Mapping[str, np.ndarray]
    atoms: np.ndarray | None = None
    policy: Policy = "sample_per_step"
    offset: np.ndarray = field(default_factory=_offset)


@dataclass(frozen=True)
class BasisDescriptor:
    """``nm_v1``: displacement ``coeffs · basis`` on ``atoms``; ``sample_per_step`` draws
    ``coeffs + coeff_std * N(0, 1)`` per sample."""

    name: str
    basis: np.ndarray
    coeffs: np.ndarray
    atoms: np.ndarray | None = None
    policy: Policy = "mean"
    coeff_std: np.ndarray | None = None
    offset: np.ndarray = field(default_factory=_offset)


@dataclass(frozen=True)
class RigidDescriptor:
    """``quat_v1``: rotate ``atoms`` about ``centre`` by ``q`` (w, x, y, z) and translate."""

    name: str
    q: np.ndarray
    centre: np.ndarray
    translation: np.ndarray
    atoms: np.ndarray | None = None
    policy: Policy = "mean"
    offset: np.ndarray = field(default_factory=_offset)


@dataclass(frozen=True)
class DecoderDescriptor:
    """A neural decoder at ``latent``; ``sample_per_step`` picks a row of ``latent_pool`` per sample."""

    name: str
    decoder: NeuralDecoder
    latent: np.ndarray
    atoms: np.ndarray | None = None
    policy: Policy = "mean"
    latent_pool: np.ndarray | None = None
    offset: np.ndarray = field(default_factory=_offset)


Discrete = DiscreteDescriptor | ExternalReference
Continuous = GaussianDescriptor | BasisDescriptor | RigidDescriptor | DecoderDescriptor


@dataclass(frozen=True)
class RenderModel:
    """``x_ref`` (n, 3) float64 plus the ordered discrete and continuous descriptors."""

    x_ref: np.ndarray
    discrete: tuple[Discrete, ...] = ()
    continuous: tuple[Continuous, ...] = ()

    def __post_init__(self) -> None:
        x = np.asarray(self.x_ref, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValidationError(f"x_ref must have shape (n, 3), not {x.shape}")
        object.__setattr__(self, "x_ref", x)
        names = [d.name for d in (*self.discrete, *self.continuous)]
        if len(set(names)) != len(names):
            raise ValidationError(f"descriptor names must be unique: {names}")
        seen: set[str] = set()
        for d in self.discrete:
            if d.parent is not None and d.parent not in seen:
                raise ValidationError(f"{d.name} is nested under {d.parent!r}, which must come earlier in the list")
            seen.add(d.name)
            if isinstance(d, DiscreteDescriptor):
                for key, st in d.states.items():
                    a = _atoms(st.atoms, len(x), f"{d.name}[{key}]")
                    if np.shape(st.xyz) != (a.size, 3):
                        raise ValidationError(f"{d.name}[{key}]: xyz must have shape ({a.size}, 3)")
        for c in self.continuous:
            if c.policy not in ("mean", "sample_per_step"):
                raise ValidationError(f"{c.name}: policy must be 'mean' or 'sample_per_step', not {c.policy!r}")

    @property
    def n_atoms(self) -> int:
        return int(self.x_ref.shape[0])

    def atoms_of(self, d: Discrete | Continuous) -> np.ndarray:
        """Atom indices a descriptor acts on (all atoms when it declares none)."""
        return _atoms(getattr(d, "atoms", None), self.n_atoms, d.name)
