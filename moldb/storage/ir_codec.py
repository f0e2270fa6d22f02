"""Lossless compact encoding of float parameter arrays (TLS tensors, origins, per-atom B ...).

:func:`moldb.storage.ir_store.pack_arrays` hands every float32 / float64 array here. The
encoding is the atom columns' (:mod:`moldb.storage.blob`) plus two tensor reductions, and
every step is checked against the decoder, so what reads back is bit-identical:

=================  =============================================================================
step               what
=================  =============================================================================
component-major    an ``(n, k...)`` array is stored as ``(k, n)``: one contiguous run per
                   component (all T11, then all T12 ...), which compresses better
``sym``            ``(n, 3, 3)`` arrays equal to their transpose bit for bit keep the 6 unique
                   components (11 12 13 22 23 33)
fixed point        values ``v`` with ``(rint(v / s * 10**d) / 10**d) * s == v`` bit for bit, for a
                   unit scale ``s`` in (1, π/180, (π/180)²) and ``d`` ≤ 6 decimals, are stored as
                   the integers (MMTF / BinaryCIF FixedPoint). ``s`` recognises values printed in
                   degrees and converted to radians the way ``moldb.ir.builtin`` converts mmCIF
                   TLS (L deg² → rad², S deg·Å → rad·Å). Up to 1/8 of the values may fail (NaN,
                   ±inf, -0.0, extra digits): they are stored as exceptions (position + raw bits)
``ftrace0``        a non-symmetric ``(n, 3, 3)`` whose 33 component is −(11 + 22) bit for bit in
                   floating point for every row drops it (TLS S with tr S = 0 computed in floats)
``trace0``         the same in the fixed-point integers (tr S = 0 in the printed digits)
delta, narrowing   fixed-point integers are delta-coded when that compresses smaller, then
                   narrowed to the smallest int type, byte-shuffled and zstd-compressed
=================  =============================================================================

Anything else (no common scale, too many exceptions) is stored as its raw float bytes,
component-major, byte-shuffled and zstd-compressed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["FLOAT_LEVEL", "FLOAT_LEVEL_MAX", "MAX_DECIMALS", "SCALES", "decode_float", "encode_float", "narrow",
           "shuffle", "unshuffle", "unzstd", "zstd"]

MAX_DECIMALS = 6
#: Unit scales tried for fixed point: none, degrees → radians, degrees² → radians² (as ``moldb.ir.builtin``).
SCALES = (1.0, math.pi / 180.0, (math.pi / 180.0) ** 2)
_ZSTD = pa.Codec("zstd", compression_level=9)
#: zstd level of float parameter segments up to ``FLOAT_LEVEL_MAX`` raw bytes (rare writes: ~6 ms per 50 kB).
FLOAT_LEVEL, FLOAT_LEVEL_MAX = 19, 1 << 18
_CODECS: dict[int, pa.Codec] = {}
_SYM = (0, 1, 2, 4, 5, 8)  # flat indices of 11 12 13 22 23 33
_LIMIT = 2.0**53  # integers of the fixed-point form stay exact in float64
_MAX_ROWS = 16  # component rows narrowed / delta-coded one by one; more are packed as one row


def zstd(raw: bytes, level: int | None = None) -> bytes:
    """zstd-compress (level 9, or ``level``)."""
    if not raw:
        return b""
    if level is not None and level not in _CODECS:
        _CODECS[level] = pa.Codec("zstd", compression_level=level)
    codec = _ZSTD if level is None else _CODECS[level]
    return bytes(codec.compress(raw, asbytes=True))


def unzstd(comp: bytes, size: int) -> bytes:
    """Inverse of :func:`zstd` (``size``: the raw size)."""
    return bytes(_ZSTD.decompress(comp, decompressed_size=size, asbytes=True)) if size else b""


def narrow(d: np.ndarray) -> np.ndarray:
    """``d`` as the smallest signed integer type that holds it."""
    if d.size == 0:
        return d.astype(np.int8)
    lo, hi = int(d.min()), int(d.max())
    for t in (np.int8, np.int16, np.int32):
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return d.astype(t)
    return d.astype(np.int64)


def shuffle(a: np.ndarray) -> bytes:
    """Byte-shuffle: all first bytes, then all second bytes ..."""
    a = np.ascontiguousarray(a)
    if a.dtype.itemsize == 1:
        return a.tobytes()
    return np.ascontiguousarray(a.view(np.uint8).reshape(-1, a.dtype.itemsize).T).tobytes()


def unshuffle(raw: bytes, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`shuffle`."""
    b = np.frombuffer(raw, dtype=np.uint8)
    if dtype.itemsize == 1:
        return b.view(dtype).copy()
    return np.ascontiguousarray(b.reshape(dtype.itemsize, -1).T).view(dtype).ravel()


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint64 if a.dtype.itemsize == 8 else np.uint32)


def _fixed(v: np.ndarray, scale: float, dec: int) -> np.ndarray:
    """Candidate integers of ``v`` at (``scale``, ``dec``); 0 where ``v`` cannot be one."""
    with np.errstate(all="ignore"):
        x = v.astype(np.float64) / scale * 10.0**dec
        ok = np.isfinite(x) & (np.abs(x) < _LIMIT)
        return np.where(ok, np.rint(np.where(ok, x, 0.0)), 0.0).astype(np.int64)


def _unfixed(n: np.ndarray, scale: float, dec: int, dtype: np.dtype) -> np.ndarray:
    """Decoder of the fixed-point form: exact decimal division, then the unit scale."""
    return ((n / 10.0**dec) * scale).astype(dtype)


def _best_fixed(m: np.ndarray) -> tuple[float, int, np.ndarray, np.ndarray] | None:
    """(scale, decimals, integers, exception positions) of the cheapest fixed-point form, or None.

    Cost estimate per candidate: the exceptions' raw bytes plus ``log2(10**d / s) / 8`` bytes
    per value (the digits the integers carry), so a long tail of decimals never wins over a
    few exceptions. None when more than 1/8 of the values would be exceptions.
    """
    flat = m.ravel()
    best: tuple[float, int, int, int] | None = None
    for si, s in enumerate(SCALES):
        for d in range(MAX_DECIMALS + 1):
            bad = int(np.count_nonzero(_bits(_unfixed(_fixed(flat, s, d), s, d, flat.dtype)) != _bits(flat)))
            if bad <= flat.size // 8:
                cost = bad * (flat.dtype.itemsize + 2) + flat.size * math.log2(10.0**d / s) / 8
                if best is None or (cost, d, si) < best[:3]:
                    best = (cost, d, si, bad)
            if bad == 0:
                break
    if best is None:
        return None
    s, d = SCALES[best[2]], best[1]
    n = _fixed(flat, s, d)
    exc = np.flatnonzero(_bits(_unfixed(n, s, d, flat.dtype)) != _bits(flat))
    n[exc] = 0
    return s, d, n.reshape(m.shape), exc


def _components(a: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The component-major matrix of ``a`` and the reductions applied."""
    extra: dict[str, Any] = {}
    if a.ndim == 3 and a.shape[1:] == (3, 3) and len(a):
        flat = a.reshape(len(a), 9)
        if np.array_equal(_bits(flat), _bits(a.transpose(0, 2, 1).reshape(len(a), 9))):
            extra["sym"] = True
            return np.ascontiguousarray(flat[:, _SYM].T), extra
        return np.ascontiguousarray(flat.T), extra
    if a.ndim >= 2 and len(a):
        return np.ascontiguousarray(a.reshape(len(a), -1).T), extra
    return a.reshape(1, -1), extra


def _expand(m: np.ndarray, dtype: np.dtype, shape: list[int], extra: dict[str, Any]) -> np.ndarray:
    if extra.get("sym"):
        full = np.empty((9, m.shape[1]), dtype=dtype)
        for src, (i, j) in enumerate(((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))):
            full[3 * i + j] = full[3 * j + i] = m[src]
        m = full
    return np.ascontiguousarray(m.T).reshape(shape) if len(shape) >= 2 else m.reshape(shape)


def _trace0(m: np.ndarray) -> bool:
    """Whether row 8 (33) of a 9-row matrix equals −(11 + 22) bit for bit."""
    if m.shape[0] != 9 or m.shape[1] == 0:
        return False
    with np.errstate(all="ignore"):
        return bool(np.array_equal(_bits(m[8]), _bits(-(m[0] + m[4])))) if m.dtype.kind == "f" else \
            bool(np.array_equal(m[8], -(m[0] + m[4])))


def _pack_rows(ints: np.ndarray) -> tuple[bytes, list[list[Any]], int]:
    """Byte-shuffled rows of a (k, n) integer matrix, each narrowed and delta-coded on its own when smaller.

    Returns the bytes, ``[dtype, delta]`` per row and the row length. More than ``_MAX_ROWS``
    rows are packed as one.
    """
    rows = ints if ints.shape[0] <= _MAX_ROWS else ints.reshape(1, -1)
    parts: list[bytes] = []
    spec: list[list[Any]] = []
    for r in rows:
        plain, delta = narrow(r), narrow(np.diff(r, prepend=np.int64(0)))
        cands = [(plain, False), (delta, True)]
        if plain.itemsize == delta.itemsize:
            cands.sort(key=lambda c: len(zstd(shuffle(c[0]))))
        else:
            cands.sort(key=lambda c: c[0].itemsize)
        body, is_delta = cands[0]
        parts.append(shuffle(body))
        spec.append([body.dtype.str, is_delta])
    return b"".join(parts), spec, rows.shape[1]


def _unpack_rows(raw: bytes, spec: list[list[Any]], n: int) -> np.ndarray:
    out, pos = [], 0
    for dtype, is_delta in spec:
        dt = np.dtype(dtype)
        r = unshuffle(raw[pos:pos + n * dt.itemsize], dt).astype(np.int64)
        pos += n * dt.itemsize
        out.append(np.cumsum(r) if is_delta else r)
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def encode_float(a: np.ndarray) -> tuple[str, bytes, dict[str, Any]]:
    """Encode a float32 / float64 array: (kind ``"fixed"`` or ``"float"``, raw bytes to compress, header extra)."""
    m, extra = _components(a)
    tensor = a.ndim == 3 and a.shape[1:] == (3, 3) and not extra.get("sym")
    if tensor and _trace0(m):  # 33 = -(11 + 22) in floating point
        extra["ftrace0"] = True
        m = m[:8]
    fx = _best_fixed(m) if m.size else None
    if fx is None:
        return "float", shuffle(m.ravel()), extra
    body = fx[2]
    extra.update(scale=fx[0], dec=fx[1])
    if fx[3].size:
        gaps = narrow(np.diff(fx[3], prepend=np.int64(0)))
        extra["exc"] = [zstd(shuffle(gaps)), gaps.dtype.str, len(fx[3]), zstd(shuffle(m.ravel()[fx[3]]))]
    if tensor and not extra.get("ftrace0") and _trace0(body):  # 33 = -(11 + 22) in the printed digits
        extra["trace0"] = True
        body = body[:8]
    raw, extra["rows"], extra["len"] = _pack_rows(body)
    return "fixed", raw, extra


def decode_float(kind: str, raw: bytes, dtype: np.dtype, shape: list[int], extra: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_float`."""
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    n = shape[0] if len(shape) >= 2 else -1
    if kind == "fixed":
        ints = _unpack_rows(raw, extra["rows"], int(extra["len"]))
        rows = ints.reshape(-1, n) if n > 0 else ints.reshape(1, -1)
        if extra.get("trace0"):
            rows = np.vstack([rows, -(rows[0] + rows[4])[None]])
        m = _unfixed(rows, float(extra["scale"]), int(extra["dec"]), dtype)
        if "exc" in extra:
            idx_c, idx_dtype, k, val_c = extra["exc"]
            it = np.dtype(idx_dtype)
            idx = np.cumsum(unshuffle(unzstd(idx_c, k * it.itemsize), it).astype(np.int64))
            m.reshape(-1)[idx] = unshuffle(unzstd(val_c, k * dtype.itemsize), dtype)
    else:
        body = unshuffle(raw, dtype)
        m = body.reshape(-1, n) if n > 0 else body.reshape(1, -1)
    if extra.get("ftrace0"):
        with np.errstate(all="ignore"):
            m = np.vstack([m, -(m[0] + m[4])[None]])
    return _expand(m, dtype, shape, extra)
