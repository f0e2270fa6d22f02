"""Typed motion descriptors: normal modes, rigid bodies, neural decoders, external trajectory frames.

These are the stored forms of the render engine's deterministic displacements and external frames
(:mod:`moldb.render.model`); ``store.renderer(entry)`` evaluates them (``docs/render.md``).

Scope: ``scope`` names a grouping (or ``"atom"``: every atom row); the descriptor acts on the scope's
member atoms in **ascending atom-row order** — all members, or those of one group when ``group`` is set.
Per-atom arrays (a basis, the file atoms of external frames) are aligned with that order.

Operator venues (:class:`moldb.ir.OperatorSpec`): ``basis/nm_v1`` and ``rigid_body/quat_v1`` are
registry operators; a :class:`NeuralDecoder` carries its TorchScript body **inline** (bytes as a uint8
array, sha256 in the spec); :class:`ExternalFrames` references an **external** H5MD file by URI + sha256.
Both hashes are checked before anything is rendered. Pure data: no file is opened here.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from pydantic_core.core_schema import ValidationInfo

from moldb.errors import ValidationError
from moldb.ir.model import Composition, Descriptor, Mode, OperatorRef, Regime, SignalType
from moldb.ir.operators import OperatorSpec

__all__ = ["MOTION_OPERATORS", "ExternalFrames", "NeuralDecoder", "NormalModes", "RigidBody"]

_SHA = re.compile(r"^[0-9a-f]{64}$")

#: Specs of the non-registry venues used here (the registry ones are in ``BUILTIN_OPERATORS``).
MOTION_OPERATORS: list[OperatorSpec] = [
    OperatorSpec(name="neural_decoder/torchscript_v1", type="neural_decoder", subcase="neural_decoder",
                 composition=Composition.ADDITIVE_DISPLACEMENT, venue="inline",
                 inputs={"blob": "TorchScript bytes (uint8), sha256 in the spec", "latent": "(d,) or (b, d)"},
                 output="(n, 3) displacement (or absolute coordinates minus x_ref), Å",
                 semantics="forward(z: (b, d)) -> (b, n*3) or (b, n, 3)"),
    OperatorSpec(name="external_reference/h5md_v1", type="external_reference", subcase="external_frames",
                 composition=Composition.REPLACE, venue="external",
                 inputs={"uri": "H5MD file", "sha256": "of the whole file", "frame": "index"},
                 output="(n, 3) coordinates, Å", semantics="particles/<group>/position/value[frame][file_atoms]"),
]


def _float(v: Any, ndim: int, name: str) -> np.ndarray | None:
    if v is None:
        return None
    a: np.ndarray = np.asarray(v)
    if a.dtype.kind != "f":  # keep float32 float32 (half the bytes)
        a = a.astype(np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    return a


class _Motion(Descriptor):
    PER_GROUP: ClassVar[bool] = False  # 1-d arrays are per mode / latent, not per group (``group_table``)
    group: str | None = None  # one group of the scope grouping (None: all its members)


class NormalModes(_Motion):
    """A normal-mode / PCA basis (``basis/nm_v1``): displacement ``Σ_k coeffs[k] · basis[k]``.

    Parameters
    ----------
    basis : array_like, shape (k, n_scope, 3), float32 or float64
        Å per unit amplitude, atoms in ascending row order of the scope.
    coeffs : array_like, shape (k,)
        Amplitudes of the mean structure.
    coeff_std : array_like, shape (k,), optional
        Standard deviation of each amplitude; needed by ``policy="sample_per_step"``
        (``coeffs + coeff_std · N(0, 1)`` per draw).
    policy : {"mean", "sample_per_step"}
    """

    TYPE = "normal_modes"
    ARRAYS = ("basis", "coeffs", "coeff_std")
    composition: Composition = Composition.ADDITIVE_DISPLACEMENT
    signal_type: SignalType = SignalType.DETERMINISTIC_DISPLACEMENT
    operator: OperatorRef | None = OperatorRef(name="basis/nm_v1")
    policy: Literal["mean", "sample_per_step"] = "mean"
    basis: Any = None
    coeffs: Any = None
    coeff_std: Any = None

    @field_validator("basis")
    @classmethod
    def _basis(cls, v: Any) -> np.ndarray | None:
        a = _float(v, 3, "basis")
        if a is not None and a.shape[2] != 3:
            raise ValueError(f"basis must have shape (k, n, 3), got {a.shape}")
        return a

    @field_validator("coeffs", "coeff_std")
    @classmethod
    def _vec(cls, v: Any) -> np.ndarray | None:
        return _float(v, 1, "coeffs / coeff_std")

    @model_validator(mode="after")
    def _shapes(self) -> NormalModes:
        if self.basis is None or self.coeffs is None:
            raise ValueError("NormalModes: basis and coeffs are required")
        k = self.basis.shape[0]
        for name in ("coeffs", "coeff_std"):
            a = getattr(self, name)
            if a is not None and a.shape != (k,):
                raise ValueError(f"NormalModes: {name} has shape {a.shape}; the basis has {k} modes")
        if self.coeff_std is not None and (self.coeff_std < 0).any():
            raise ValueError("NormalModes: coeff_std must be >= 0")
        if self.policy == "sample_per_step" and self.coeff_std is None:
            raise ValueError("NormalModes: policy 'sample_per_step' needs coeff_std")
        return self


class RigidBody(_Motion):
    """A rigid-body motion (``rigid_body/quat_v1``): ``x' = R(q) (x - centre) + centre + translation``.

    Parameters
    ----------
    q : array_like, shape (4,)
        Quaternion ``(w, x, y, z)``, normalised on use.
    centre : array_like, shape (3,)
        Rotation centre (Å, in the descriptor's frame: ``reference_offset`` is added).
    translation : array_like, shape (3,), default zeros
    """

    TYPE = "rigid_body"
    ARRAYS = ("q", "centre", "translation")
    composition: Composition = Composition.ADDITIVE_DISPLACEMENT
    signal_type: SignalType = SignalType.DETERMINISTIC_DISPLACEMENT
    operator: OperatorRef | None = OperatorRef(name="rigid_body/quat_v1")
    q: Any = None
    centre: Any = None
    translation: Any = Field(default_factory=lambda: np.zeros(3))

    @model_validator(mode="after")
    def _shapes(self) -> RigidBody:
        for name, n in (("q", 4), ("centre", 3), ("translation", 3)):
            a = _float(getattr(self, name), 1, name)
            if a is None or a.shape != (n,):
                raise ValueError(f"RigidBody: {name} must have shape ({n},), got {None if a is None else a.shape}")
            setattr(self, name, a)
        if not float(self.q @ self.q) > 0:
            raise ValueError("RigidBody: q must be a non-zero quaternion")
        return self


class NeuralDecoder(_Motion):
    """A TorchScript neural decoder stored inline: latent → displacement of the scope's atoms.

    The module's contract: ``forward(z: Tensor[b, d]) -> Tensor[b, n_scope * 3]`` (or ``[b, n_scope, 3]``).
    Constructing one checks ``blob`` against ``sha256`` (computed when left empty); a stored one is read
    as is (so a tampered entry can still be listed) and checked again before it is rendered.

    Parameters
    ----------
    blob : bytes or array_like of uint8
        ``torch.jit.save`` output (:meth:`from_module` makes it).
    sha256 : str
        Hex digest of ``blob``.
    latent : array_like, shape (d,)
        Latent of the mean structure.
    latent_pool : array_like, shape (m, d), optional
        ``policy="sample_per_step"`` draws one row per sample.
    output : {"displacement", "absolute"}
        What the network emits (absolute coordinates are turned into displacements from ``x_ref``).
    """

    TYPE = "neural_decoder"
    ARRAYS = ("blob", "latent", "latent_pool")
    composition: Composition = Composition.ADDITIVE_DISPLACEMENT
    signal_type: SignalType = SignalType.DETERMINISTIC_DISPLACEMENT
    operator: OperatorRef | None = OperatorRef(name="neural_decoder/torchscript_v1")
    policy: Literal["mean", "sample_per_step"] = "mean"
    output: Literal["displacement", "absolute"] = "displacement"
    sha256: str = ""
    blob: Any = None
    latent: Any = None
    latent_pool: Any = None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> NeuralDecoder:
        """Rebuild a stored decoder without checking its hash (the renderer checks it; :meth:`verify`)."""
        kwargs.setdefault("context", {"stored": True})
        return super().model_validate(obj, **kwargs)

    @classmethod
    def from_module(cls, module: Any, latent: Any, **kwargs: Any) -> NeuralDecoder:
        """Script ``module`` (a ``torch.nn.Module``) to TorchScript and wrap it; needs torch."""
        from moldb.operators.neural import script_to_bytes

        blob, sha = script_to_bytes(module)
        return cls(blob=blob, sha256=sha, latent=latent, **kwargs)

    @field_validator("blob", mode="before")
    @classmethod
    def _blob(cls, v: Any) -> np.ndarray | None:
        if v is None:
            return None
        if isinstance(v, bytes | bytearray | memoryview):
            return np.frombuffer(bytes(v), dtype=np.uint8).copy()
        a = np.asarray(v)
        if a.dtype != np.uint8 or a.ndim != 1:
            raise ValueError(f"blob must be bytes or a 1-d uint8 array, got {a.dtype} {a.shape}")
        return a

    @field_validator("latent")
    @classmethod
    def _latent(cls, v: Any) -> np.ndarray | None:
        return _float(v, 1, "latent")

    @field_validator("latent_pool")
    @classmethod
    def _pool(cls, v: Any) -> np.ndarray | None:
        return _float(v, 2, "latent_pool")

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> NeuralDecoder:
        if self.blob is None or self.latent is None:
            raise ValueError("NeuralDecoder: blob and latent are required")
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.blob.tobytes()).hexdigest()
        if not _SHA.match(self.sha256):
            raise ValueError(f"NeuralDecoder: sha256 {self.sha256!r} is not a lowercase hex SHA-256 digest")
        if self.latent_pool is not None and self.latent_pool.shape[1] != len(self.latent):
            raise ValueError(f"NeuralDecoder: latent_pool rows have {self.latent_pool.shape[1]} values; "
                             f"latent has {len(self.latent)}")
        if self.policy == "sample_per_step" and self.latent_pool is None:
            raise ValueError("NeuralDecoder: policy 'sample_per_step' needs latent_pool")
        if not (info.context or {}).get("stored"):
            self.verify()
        return self

    def body(self) -> bytes:
        """The TorchScript bytes."""
        return bytes(np.asarray(self.blob, dtype=np.uint8).tobytes())

    def verify(self) -> None:
        """Raise :class:`moldb.ValidationError` unless ``sha256(blob) == sha256``."""
        got = hashlib.sha256(self.body()).hexdigest()
        if got != self.sha256:
            raise ValidationError(f"neural decoder {self.id or '(no id)'!r}: the TorchScript bytes hash to {got}, "
                                  f"not the declared sha256 {self.sha256}; the checkpoint was altered")


class ExternalFrames(Descriptor):
    """Frames of an external H5MD file (URI + sha256, checked on read); a chosen frame replaces its atoms.

    A discrete node of the joint state: its ``states`` are the frame keys (default: the frame indices
    as text); ``frames[i]`` is the file frame of ``states[i]``.

    Parameters
    ----------
    uri : str
        Local path or ``file://`` URI of the H5MD file (relative paths: from the working directory).
    sha256 : str
        Hex digest of the whole file.
    frames : array_like of int, shape (n_keys,), optional
        File frame per key (default ``0 .. n_keys-1``; give ``frames`` or ``states``).
    file_atoms : array_like of int, shape (n_scope,), optional
        File particle of each scope atom (ascending row order); default ``0 .. n_scope-1``.
    particles : str
        H5MD particles group (``particles/<particles>/position/value``).
    default : str, optional
        Key used when a joint state does not name this descriptor (default: the first).
    """

    TYPE = "external_frames"
    ARRAYS = ("frames", "file_atoms")
    PER_GROUP: ClassVar[bool] = False
    regime: Regime = Regime.ENSEMBLE
    mode: Mode = Mode.A
    sample_axis: str | None = "frame"
    composition: Composition = Composition.REPLACE
    signal_type: SignalType = SignalType.COORDINATE_SET
    operator: OperatorRef | None = OperatorRef(name="external_reference/h5md_v1")
    uri: str = ""
    sha256: str = ""
    format: Literal["h5md"] = "h5md"
    particles: str = "trajectory"
    default: str | None = None
    group: str | None = None
    frames: Any = None
    file_atoms: Any = None

    @field_validator("frames", "file_atoms")
    @classmethod
    def _ints(cls, v: Any) -> np.ndarray | None:
        if v is None:
            return None
        a = np.asarray(v)
        if a.ndim != 1 or (a.size and (a.dtype.kind not in "iu" or a.min() < 0)):
            raise ValueError(f"frames / file_atoms must be 1-d non-negative integers, got {a.dtype} {a.shape}")
        return a.astype(np.int64)

    @model_validator(mode="after")
    def _check(self) -> ExternalFrames:
        if not self.uri:
            raise ValueError("ExternalFrames: uri is required")
        if not _SHA.match(self.sha256):
            raise ValueError(f"ExternalFrames: sha256 {self.sha256!r} is not a lowercase hex SHA-256 digest")
        if self.frames is None and not self.states:
            raise ValueError("ExternalFrames: give frames (file frame indices) or states (frame keys)")
        if self.frames is None:
            self.frames = np.arange(len(self.states), dtype=np.int64)
        if not self.states:
            self.states = [str(int(f)) for f in self.frames]
        if len(self.states) != len(self.frames) or len(set(self.states)) != len(self.states):
            raise ValueError(f"ExternalFrames: {len(self.states)} keys for {len(self.frames)} frames (keys unique)")
        if self.default is not None and self.default not in self.states:
            raise ValueError(f"ExternalFrames: default {self.default!r} is not one of the keys {self.states[:8]}")
        return self

    @classmethod
    def for_file(cls, path: Any, **kwargs: Any) -> ExternalFrames:
        """An :class:`ExternalFrames` for a local file: ``uri`` = its absolute path, ``sha256`` computed."""
        from pathlib import Path

        p = Path(path).resolve()
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if "frames" not in kwargs and "states" not in kwargs:  # every frame of the file
            import h5py

            with h5py.File(p, "r") as f:
                n = f["particles"][kwargs.get("particles", "trajectory")]["position"]["value"].shape[0]
            kwargs["frames"] = np.arange(n, dtype=np.int64)
        return cls(uri=str(p), sha256=h.hexdigest(), **kwargs)
