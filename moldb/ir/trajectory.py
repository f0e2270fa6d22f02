"""Regime 2 descriptors on the ``frame`` sample axis: stored trajectories and per-frame data.

Pure data (pydantic + numpy). A :class:`TrajectoryDescriptor` says where an entry's frames
live in the store's ``frames`` array (trajectory id, atom parts, fixed-point decimals) and
carries the per-frame arrays that share the axis (``time``, ``step``, ``box``);
:class:`FrameLabels` attaches one label per frame (cluster ids, states, flags) with its
``derived_from`` provenance; :class:`FrameObservable` holds one per-frame observable of the
source (H5MD ``/observables``: energies, λ ...) and :class:`Connectivity` the particle tuples
of H5MD ``/connectivity`` (bonds, angles, dihedrals; time-dependent ones per run of samples).
Importing this module registers the four types with :func:`moldb.ir.descriptors.descriptor_from`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator

from moldb.ir.descriptors import DESCRIPTOR_TYPES
from moldb.ir.model import Composition, Descriptor, Mode, OperatorRef, Regime, SignalType

__all__ = [
    "PART_NAMES",
    "STEP_MAX",
    "STEP_MIN",
    "Connectivity",
    "FrameLabels",
    "FrameObservable",
    "TrajectoryDescriptor",
]

#: atom parts of a frame (one ``frames`` cell each): a selection reads only the parts it touches
PART_NAMES = ("trace", "backbone", "sidechain", "other", "water")


class TrajectoryDescriptor(Descriptor):
    """Frames of a trajectory or ensemble (Regime 2, Mode A, sample axis ``frame``).

    Attributes
    ----------
    traj_id : int
        Key of the trajectory in the ``frames`` array.
    n_frames, n_atoms : int
    decimals : int or None
        Fixed-point decimals of the positions in Å (2 for XTC's 0.001 nm); None: float32.
    fields : list of str
        ``position`` and, when stored, ``velocity`` (Å/ps) and ``force`` (kJ/(mol·Å)).
    time : numpy.ndarray, shape (n_frames,), float64
        Time of each frame (ps).
    step : numpy.ndarray, shape (n_frames,), int64
        Integration step of each frame.
    box : numpy.ndarray, shape (n_frames, 3, 3), float32, optional
        Box edge vectors (Å, rows a, b, c, as H5MD ``box/edges``).
    part : numpy.ndarray, shape (n_atoms,), uint8
        Atom part (index into :data:`PART_NAMES`) of each trajectory atom.
    atom_rows : numpy.ndarray, shape (n_atoms,), int64, optional
        Row of ``store.get(entry).atoms`` of each trajectory atom (absent: rows 0 … n_atoms-1).
    """

    TYPE = "trajectory"
    ARRAYS = ("time", "step", "box", "part", "atom_rows")
    regime: Regime = Regime.ENSEMBLE
    scope: str = "atom"
    mode: Mode = Mode.A
    sample_axis: str | None = "frame"
    composition: Composition = Composition.REPLACE
    signal_type: SignalType = SignalType.COORDINATE_SET
    operator: OperatorRef | None = None
    traj_id: int = 0
    n_frames: int = 0
    n_atoms: int = 0
    decimals: int | None = None
    fields: list[str] = Field(default_factory=lambda: ["position"])
    part_names: list[str] = Field(default_factory=lambda: list(PART_NAMES))
    max_cell: int = 0
    units: dict[str, str] = Field(default_factory=dict)
    source: dict[str, Any] = Field(default_factory=dict)
    time: Any = None
    step: Any = None
    box: Any = None
    part: Any = None
    atom_rows: Any = None


class FrameLabels(Descriptor):
    """One label per frame of an entry's trajectory (e.g. cluster ids), on the ``frame`` axis.

    Parameters
    ----------
    name : str
        Label name used in :meth:`moldb.Store.frames_where` (``"cluster == 3"``).
    labels : array_like, shape (n_frames,)
        Integers, floats, booleans or strings (strings are stored as codes + ``categories``).
    derived_from : str
        What the labels were computed from (``"frame"``: the frames' coordinates; or a
        function / pipeline name); recorded with a ``derived_from`` edge to the trajectory.
    """

    TYPE = "frame_labels"
    ARRAYS = ("labels",)
    regime: Regime = Regime.ENSEMBLE
    scope: str = "atom"
    mode: Mode = Mode.A
    sample_axis: str | None = "frame"
    composition: Composition = Composition.REPLACE
    signal_type: SignalType = SignalType.CATEGORICAL_STATE
    name: str = ""
    derived_from: str = "frame"
    categories: list[str] | None = None
    labels: Any = None

    def __init__(
        self, name: str | None = None, labels: Any = None, derived_from: str | None = None, **data: Any
    ) -> None:
        if name is not None:
            data["name"] = name
        if labels is not None:
            data["labels"] = labels
        if derived_from is not None:
            data["derived_from"] = derived_from
        if not data.get("id") and data.get("name"):
            data["id"] = f"frame_labels/{data['name']}"
        super().__init__(**data)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: Any) -> np.ndarray | None:
        if v is None:
            return None
        a = np.asarray(v)
        if a.ndim != 1:
            raise ValueError(f"frame labels must be one value per frame (1-d), got shape {a.shape}")
        return a

    def model_post_init(self, __context: Any) -> None:
        a = self.labels
        if a is not None and a.dtype.kind in "USO":  # strings: codes + categories
            cats = sorted({str(x) for x in a.tolist()})
            lut = {c: i for i, c in enumerate(cats)}
            self.categories = cats
            self.labels = np.array([lut[str(x)] for x in a.tolist()], dtype=np.int32)

    def values(self) -> np.ndarray:
        """The labels (strings restored from ``categories``)."""
        a = np.asarray(self.labels)
        if self.categories is not None:
            return np.asarray(self.categories, dtype=object)[a.astype(np.int64)]
        return a


class FrameObservable(Descriptor):
    """One observable per frame (H5MD ``/observables`` element: energy, temperature, λ ...), on the ``frame`` axis.

    Attributes
    ----------
    name : str
        Name used in :meth:`moldb.Store.frames_where` (``"energy < 1.5"``) and on export
        (``observables/<name>``).
    values : numpy.ndarray, shape (n_frames, ...)
        The value at each frame (NaN where the source has no sample at that frame's step).
    unit : str
        Unit as the source gives it (values are not converted).
    path : str
        Where the source file had it (``observables/atoms/energy``).
    n_samples, n_matched : int
        Samples in the source; frames that got one (matched by ``step``, else by index).
    """

    TYPE = "frame_observable"
    ARRAYS = ("values",)
    regime: Regime = Regime.ENSEMBLE
    scope: str = "atom"
    mode: Mode = Mode.A
    sample_axis: str | None = "frame"
    composition: Composition = Composition.REPLACE
    signal_type: SignalType = SignalType.UNKNOWN
    name: str = ""
    unit: str = ""
    path: str = ""
    n_samples: int = 0
    n_matched: int = 0
    values: Any = None

    def model_post_init(self, __context: Any) -> None:
        if not self.id and self.name:
            self.id = f"observables/{self.name}"

    @field_validator("values")
    @classmethod
    def _values(cls, v: Any) -> np.ndarray | None:
        if v is None:
            return None
        a = np.asarray(v)
        if a.ndim < 1 or a.dtype.kind not in "biuf":
            raise ValueError(f"observable values must be numeric with a frame axis, got {a.dtype} {a.shape}")
        return a


#: ``step_lo`` / ``step_hi`` of a tuple that holds at every step (time-independent element)
STEP_MIN, STEP_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


class Connectivity(Descriptor):
    """Particle tuples of the trajectory's topology (H5MD ``/connectivity``): bonds, angles, dihedrals.

    Indices are trajectory particle indices (0 … n_atoms-1, the rows of
    :meth:`moldb.api.trajectory.Trajectory.frame`), not atom rows of the entry. One row per
    tuple; a time-dependent element has one row per run of consecutive samples holding the
    tuple, in effect for the frames whose step is in ``[step_lo, step_hi)``.

    Attributes
    ----------
    elements : list of str
        Names of the connectivity elements (``bonds``, ``angles`` ...), in source order.
    arity : list of int
        Particles per tuple of each element (2 pairs, 3 triples, 4 quadruples); empty: all 2
        (descriptors stored before tuples were kept).
    time_dependent : list of str
        Elements whose tuples change over the trajectory.
    atom_1, atom_2 : numpy.ndarray, shape (n,), int64
        The first two particles of each tuple.
    atom_3, atom_4 : numpy.ndarray, shape (n,), int64, optional
        Third and fourth particles (-1 where the tuple is shorter); absent when every element
        holds pairs.
    element : numpy.ndarray, shape (n,), int16
        Index into ``elements`` of each tuple.
    order : numpy.ndarray, shape (n,), float32, optional
        Bond order of each pair (ZnH5MD ``bond_orders``), NaN where unknown.
    step_lo, step_hi : numpy.ndarray, shape (n,), int64, optional
        Steps from which / until which (exclusive) the tuple holds (:data:`STEP_MIN` /
        :data:`STEP_MAX` for time-independent elements); absent when nothing is time-dependent.
    """

    TYPE = "connectivity"
    ARRAYS = ("atom_1", "atom_2", "atom_3", "atom_4", "element", "order", "step_lo", "step_hi")
    regime: Regime = Regime.ENSEMBLE
    scope: str = "atom"
    mode: Mode = Mode.A
    sample_axis: str | None = None
    composition: Composition = Composition.REPLACE
    signal_type: SignalType = SignalType.UNKNOWN
    elements: list[str] = Field(default_factory=list)
    arity: list[int] = Field(default_factory=list)
    time_dependent: list[str] = Field(default_factory=list)
    atom_1: Any = None
    atom_2: Any = None
    atom_3: Any = None
    atom_4: Any = None
    element: Any = None
    order: Any = None
    step_lo: Any = None
    step_hi: Any = None

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            self.id = "connectivity"

    def arities(self) -> list[int]:
        """Particles per tuple of each element (2 for descriptors stored without ``arity``)."""
        return list(self.arity) if self.arity else [2] * len(self.elements)

    def _index(self, name: str) -> int:
        if name not in self.elements:
            raise KeyError(f"no connectivity element {name!r}; elements: {self.elements}")
        return self.elements.index(name)

    def tuples(self, name: str) -> np.ndarray:
        """(n, arity) int64 particle tuples of element ``name`` (every run, for a time-dependent one)."""
        k = self._index(name)
        cols = [self.atom_1, self.atom_2, self.atom_3, self.atom_4][: self.arities()[k]]
        a = np.stack([np.asarray(c, np.int64) for c in cols], axis=1).reshape(-1, len(cols))
        return a[np.asarray(self.element, np.int64) == k]

    def pairs(self, name: str | None = None) -> np.ndarray:
        """(n, 2) int64 particle pairs: of every pair element, or of element ``name`` only.

        Raises
        ------
        KeyError
            No element ``name``.
        ValueError
            Element ``name`` holds triples or quadruples (use :meth:`tuples`).
        """
        a = np.stack([np.asarray(self.atom_1, np.int64), np.asarray(self.atom_2, np.int64)], axis=1).reshape(-1, 2)
        el = np.asarray(self.element, np.int64)
        if name is None:
            return a[np.isin(el, [k for k, n in enumerate(self.arities()) if n == 2])]
        k = self._index(name)
        if self.arities()[k] != 2:
            raise ValueError(
                f"connectivity element {name!r} holds tuples of {self.arities()[k]} particles, not "
                f"pairs; use .tuples({name!r})"
            )
        return a[el == k]

    def at_step(self, step: int) -> Connectivity:
        """The tuples in effect at ``step`` (time-independent ones and the runs covering it), as a copy."""
        if self.step_lo is None or self.step_hi is None:
            return self.model_copy(deep=True)
        keep = (np.asarray(self.step_lo, np.int64) <= step) & (step < np.asarray(self.step_hi, np.int64))
        upd = {k: None if getattr(self, k) is None else np.asarray(getattr(self, k))[keep] for k in self.ARRAYS}
        upd.update(step_lo=None, step_hi=None)
        return self.model_copy(update=upd, deep=True)


DESCRIPTOR_TYPES[TrajectoryDescriptor.TYPE] = TrajectoryDescriptor
DESCRIPTOR_TYPES[FrameLabels.TYPE] = FrameLabels
DESCRIPTOR_TYPES[FrameObservable.TYPE] = FrameObservable
DESCRIPTOR_TYPES[Connectivity.TYPE] = Connectivity
