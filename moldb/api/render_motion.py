"""Stored motion descriptors → render-engine descriptors (``store.renderer``'s motion stack).

:class:`moldb.ir.NormalModes` → :class:`moldb.render.BasisDescriptor` (``nm_v1``),
:class:`moldb.ir.RigidBody` → :class:`moldb.render.RigidDescriptor` (``quat_v1``),
:class:`moldb.ir.NeuralDecoder` → :class:`moldb.render.DecoderDescriptor` (TorchScript, sha256 checked),
:class:`moldb.ir.ExternalFrames` → :class:`moldb.render.ExternalReference` (an H5MD file, sha256 checked;
one discrete node whose states are the frame keys).

Each acts on its scope's member rows (ascending; one group with ``group``). :meth:`StoredMotion.restrict`
maps it onto the rows a joint state renders (altlocs and ensemble models leave rows out): a basis keeps
its rendered columns, a decoder runs on its whole scope and keeps the rendered atoms' outputs, external
frames keep the rendered atoms of the chosen frame.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa

from moldb.errors import ValidationError
from moldb.ir.model import Descriptor
from moldb.ir.motion import ExternalFrames, NeuralDecoder, NormalModes, RigidBody
from moldb.operators.neural import NeuralDecoder as _Decoder
from moldb.render import BasisDescriptor, DecoderDescriptor, ExternalReference, RigidDescriptor

__all__ = ["MOTION_TYPES", "H5MDFrames", "StoredMotion", "build_motion"]

MOTION_TYPES = frozenset({NormalModes.TYPE, RigidBody.TYPE, NeuralDecoder.TYPE, ExternalFrames.TYPE})
_FRAMES_KEPT = 4
_LENGTH = {"nm": 10.0, "Angstrom": 1.0, "angstrom": 1.0, "A": 1.0, "pm": 0.01}


@dataclass(frozen=True)
class _StoredDecoder(_Decoder):
    """A stored decoder: runs on its whole scope, keeps ``keep``'s outputs, says clearly what is missing."""

    label: str = ""
    ref: np.ndarray | None = None  # (n_scope, 3) x_ref of the scope minus the offset (absolute outputs)
    keep: np.ndarray | None = None  # scope positions rendered (None: all)

    def __call__(self, latent: Any, x_ref: Any = None, device: str = "cpu") -> Any:
        try:
            import torch
        except ImportError as exc:
            raise ValidationError(f"{self.label} is a TorchScript neural decoder: rendering it needs PyTorch "
                                  "(pip install 'moldb[render]'); leave it out with descriptors=[...]") from exc
        try:
            out = super().__call__(latent, x_ref=self.ref, device=device)
        except RuntimeError as exc:
            raise ValidationError(f"{self.label}: the decoder failed on its scope of {self.n_atoms} atoms and "
                                  f"latent size {self.latent_dim} ({str(exc).splitlines()[0]})") from exc
        if self.keep is not None:
            out = out[..., torch.as_tensor(self.keep, device=out.device), :]
        return out


def _local_path(uri: str, label: str) -> Path:
    u = urlparse(uri)
    if u.scheme in ("", "file"):
        return Path(unquote(u.path) if u.scheme == "file" else uri)
    raise ValidationError(f"{label}: external URI {uri!r} is not a local file; only paths and file:// URIs "
                          "are read (copy the artifact locally and store its path)")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class H5MDFrames:
    """Frames of an H5MD file for one :class:`ExternalFrames` descriptor, checked against its sha256.

    The file is hashed when this is made and again whenever its size or mtime changed since; a mismatch
    raises :class:`ValidationError` before any coordinate is returned. Positions are converted to Å.
    """

    def __init__(self, d: ExternalFrames, label: str, n_scope: int) -> None:
        self.label, self.sha256, self.particles = label, d.sha256, d.particles
        self.path = _local_path(d.uri, label)
        self.keys = list(d.states)
        self.frames = np.asarray(d.frames, dtype=np.int64)
        self._stat: tuple[int, int] | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.verify()
        with self._open() as f:
            pos = self._positions(f)
            n_frames, n_particles = int(pos.shape[0]), int(pos.shape[1])
        fa = d.file_atoms
        self.file_atoms = np.arange(n_scope, dtype=np.int64) if fa is None else np.asarray(fa, dtype=np.int64)
        if len(self.file_atoms) != n_scope:
            raise ValidationError(f"{label}: {len(self.file_atoms)} file_atoms for a scope of {n_scope} atoms")
        if self.file_atoms.size and self.file_atoms.max() >= n_particles:
            raise ValidationError(f"{label}: {self.path.name} has {n_particles} particles; file_atoms needs "
                                  f"{int(self.file_atoms.max()) + 1} (give file_atoms for a scope of {n_scope})")
        if self.frames.size and self.frames.max() >= n_frames:
            raise ValidationError(f"{label}: {self.path.name} has {n_frames} frames; frame "
                                  f"{int(self.frames.max())} was asked for")

    def verify(self) -> None:
        """Hash the file; raise :class:`ValidationError` when it is missing or its sha256 differs."""
        try:
            st = self.path.stat()
            got = _sha256_file(self.path)
        except OSError as exc:
            raise ValidationError(f"{self.label}: cannot read external file {str(self.path)!r} ({exc})") from exc
        if got != self.sha256:
            raise ValidationError(f"{self.label}: external file {str(self.path)!r} has sha256 {got}, not the "
                                  f"recorded {self.sha256}; the file changed or is not the one referenced")
        self._stat = (st.st_size, st.st_mtime_ns)

    def _open(self) -> Any:
        try:
            import h5py
        except ImportError as exc:
            raise ValidationError(f"{self.label}: reading H5MD needs h5py (pip install 'moldb[md]')") from exc
        try:
            return h5py.File(self.path, "r")
        except OSError as exc:
            raise ValidationError(f"{self.label}: {str(self.path)!r} is not a readable HDF5/H5MD file ({exc})") from exc

    def _positions(self, f: Any) -> Any:
        try:
            pos = f["particles"][self.particles]["position"]["value"]
        except KeyError as exc:
            raise ValidationError(f"{self.label}: {self.path.name} has no particles/{self.particles}/position/value"
                                  " (an H5MD file)") from exc
        if pos.ndim != 3 or pos.shape[2] != 3:
            raise ValidationError(f"{self.label}: position/value has shape {pos.shape}; expected (frames, atoms, 3)")
        return pos

    def frame(self, key: str) -> np.ndarray:
        """Coordinates (n_scope, 3) float64 in Å of frame ``key``."""
        hit = self._cache.get(key)
        st = self.path.stat() if self.path.exists() else None
        if st is None or (st.st_size, st.st_mtime_ns) != self._stat:
            self._cache.clear()
            self.verify()
        if hit is not None and key in self._cache:
            self._cache.move_to_end(key)
            return hit
        with self._open() as f:
            pos = self._positions(f)
            unit = pos.attrs.get("unit", "Angstrom")
            unit = unit.decode() if isinstance(unit, bytes) else str(unit)
            if unit not in _LENGTH:
                raise ValidationError(f"{self.label}: position unit {unit!r} is not a length moldb converts")
            x = np.asarray(pos[int(self.frames[self.keys.index(key)])], dtype=np.float64)[self.file_atoms]
        x *= _LENGTH[unit]
        self._cache[key] = x
        if len(self._cache) > _FRAMES_KEPT:
            self._cache.popitem(last=False)
        return x


@dataclass
class StoredMotion:
    """One stored motion descriptor on its scope rows (entry atom-table rows, ascending)."""

    name: str
    kind: Literal["nm_v1", "quat_v1", "neural_decoder", "external_h5md"]
    rows: np.ndarray
    engine: BasisDescriptor | RigidDescriptor | DecoderDescriptor | None = None
    frames: H5MDFrames | None = None
    states: list[str] = field(default_factory=list)
    default: str = ""
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    policy: str = "mean"
    source: str = ""

    def restrict(self, lut: np.ndarray, key: str | None = None) -> Any:
        """The engine descriptor over rendered rows (``lut``: entry row → rendered index or -1); None if empty."""
        local = lut[self.rows]
        keep = local >= 0
        if not keep.any():
            return None
        atoms = local[keep]
        if self.frames is not None:
            src, k, sel = self.frames, key or self.default, np.flatnonzero(keep)
            return ExternalReference(self.name, str(src.path), src.sha256, (k,), lambda kk: src.frame(kk)[sel], k,
                                     atoms=atoms, offset=self.offset)
        e = self.engine
        if isinstance(e, BasisDescriptor):
            return replace(e, basis=e.basis[:, keep], atoms=atoms)
        if isinstance(e, DecoderDescriptor) and not keep.all():
            dec = e.decoder
            assert isinstance(dec, _StoredDecoder)
            return replace(e, decoder=replace(dec, keep=np.flatnonzero(keep)), atoms=atoms)
        return replace(e, atoms=atoms)  # type: ignore[type-var]


def scope_rows(d: Descriptor, memberships: Mapping[str, pa.Table], n_rows: int, label: str) -> np.ndarray:
    """Atom rows of ``d``'s scope (one group with ``d.group``), ascending and unique."""
    group = getattr(d, "group", None)
    if d.scope == "atom":
        if group is not None:
            raise ValidationError(f"{label}: group={group!r} needs a grouping scope, not 'atom'")
        return np.arange(n_rows, dtype=np.int64)
    m = memberships.get(d.scope)
    if m is None:
        raise ValidationError(f"{label}: scope {d.scope!r} is not a grouping of the entry version "
                              f"(groupings read: {sorted(memberships)})")
    rows = np.asarray(m.column("row").to_numpy(), dtype=np.int64)
    if group is not None:
        col = m.column("group").combine_chunks()
        names = [str(v) for v in col.dictionary.to_pylist()] if pa.types.is_dictionary(col.type) else []
        if group not in names:
            raise ValidationError(f"{label}: grouping {d.scope!r} has no group {group!r} (groups: {names[:10]})")
        rows = rows[np.asarray(m.column("group_index").to_numpy()) == names.index(group)]
    return np.unique(rows)


def build_motion(d: Descriptor, where: str, x_ref: np.ndarray, memberships: Mapping[str, pa.Table]) -> StoredMotion:
    """Check one stored motion descriptor (hashes, shapes against its scope) and wrap it for the renderer.

    Raises
    ------
    ValidationError
        A sha256 mismatch (decoder bytes, external file), a missing file, shapes that do not fit the scope.
    """
    label = f"{where}: descriptor {d.id!r}"
    rows = scope_rows(d, memberships, len(x_ref), label)
    offset = np.asarray(d.reference_offset if d.reference_offset is not None else np.zeros(3), dtype=np.float64)
    if offset.shape != (3,):
        raise ValidationError(f"{label}: reference_offset must have 3 components")
    n, source = len(rows), str(d.provenance.source)
    if isinstance(d, ExternalFrames):
        src = H5MDFrames(d, label, n)
        return StoredMotion(d.id, "external_h5md", rows, frames=src, states=list(d.states),
                            default=d.default or d.states[0], offset=offset, source=source)
    if isinstance(d, NormalModes):
        if d.basis.shape[1] != n:
            raise ValidationError(f"{label}: basis covers {d.basis.shape[1]} atoms; scope {d.scope!r}"
                                  f"{f' group {d.group!r}' if d.group else ''} has {n}")
        e: Any = BasisDescriptor(d.id, d.basis, d.coeffs, policy=d.policy, coeff_std=d.coeff_std, offset=offset)
        return StoredMotion(d.id, "nm_v1", rows, e, offset=offset, policy=d.policy, source=source)
    if isinstance(d, RigidBody):
        e = RigidDescriptor(d.id, d.q, d.centre, d.translation, offset=offset)
        return StoredMotion(d.id, "quat_v1", rows, e, offset=offset, source=source)
    if isinstance(d, NeuralDecoder):
        got = hashlib.sha256(d.body()).hexdigest()
        if got != d.sha256:
            raise ValidationError(f"{label}: the stored TorchScript bytes hash to {got}, not the recorded sha256 "
                                  f"{d.sha256}; the decoder was altered and is not rendered")
        dec = _StoredDecoder(d.body(), d.sha256, n, len(d.latent), d.output, label=label,
                             ref=x_ref[rows] - offset)
        e = DecoderDescriptor(d.id, dec, d.latent, policy=d.policy, latent_pool=d.latent_pool, offset=offset)
        return StoredMotion(d.id, "neural_decoder", rows, e, offset=offset, policy=d.policy, source=source)
    raise ValidationError(f"{label}: type {d.TYPE!r} is not a motion descriptor")
