"""TileDB I/O of the IR arrays: ``groupings``, ``descriptors`` and ``operators``.

``groupings`` and ``descriptors`` are sparse, store-wide, keyed by (entry, version,
name). A cell is written at the timestamp of the commit that created it: the
ingest hook writes the built-in ones at the version's own commit timestamp
(inside the commit, before its commit point), ``Store.add_grouping`` /
``add_descriptor`` later ones at a fresh timestamp. A cell is valid for version
``v`` when its timestamp is at or after ``v``'s commit timestamp, so rows left by
a commit that crashed before its commit point (same version number, earlier
timestamp) are never read; ``as_of`` hides cells written after the pinned time.

Binary payloads (membership, group names, descriptor arrays) are packed with
:func:`pack_arrays`: integer arrays delta-coded and narrowed, float arrays as
fixed point and reduced tensors where that is lossless (:mod:`moldb.storage.ir_codec`),
every array byte-shuffled and zstd-compressed on its own.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from moldb.errors import StorageError
from moldb.storage import engine, ir_codec
from moldb.storage.backend import Backend
from moldb.storage.ir_codec import narrow, shuffle, unshuffle

__all__ = ["IR_ARRAYS", "describe_packed", "has_ir", "pack_arrays", "read_cell", "read_cells", "read_operator_cells",
           "unpack_arrays", "write_ir_cells", "write_operator_cells"]

IR_ARRAYS = ("groupings", "descriptors", "operators")
_KEY = {"groupings": "grouping", "descriptors": "descriptor"}
_TAG = {"groupings": "kind", "descriptors": "type"}


def has_ir(backend: Backend) -> bool:
    """Whether the store has the IR arrays (stores created before them do not; ``moldb migrate``)."""
    cached = backend.__dict__.get("_ir_present")
    if cached is None:
        cached = all(engine.object_type(backend.array_uri(n), backend.ctx) == "array" for n in IR_ARRAYS)
        backend.__dict__["_ir_present"] = cached
    return bool(cached)


def pack_arrays(arrays: dict[str, np.ndarray], strings: dict[str, list[str]] | None = None) -> bytes:
    """Pack named numpy arrays (and string lists) into one compressed buffer.

    Integer and boolean arrays are delta-coded and narrowed (kind ``delta``); float32 /
    float64 arrays go through :func:`moldb.storage.ir_codec.encode_float` (kinds ``fixed``
    and ``float``, header rows with an 8th item of encoding parameters); anything else is
    stored raw. Every segment is byte-shuffled and zstd-compressed on its own. Cells
    written before ``fixed`` / ``float`` existed (7-item rows, float arrays ``raw``) still read.
    """
    header: list[list[Any]] = []
    segs: list[bytes] = []
    for name, arr in arrays.items():
        a = np.asarray(arr)
        kind = "raw"
        if a.dtype.kind in "iub" and a.size:
            body = narrow(np.diff(a.ravel().astype(np.int64, copy=False), prepend=np.int64(0)))
            kind = "delta"
        elif a.dtype in (np.float32, np.float64):
            kind, raw, extra = ir_codec.encode_float(a)
            comp = ir_codec.zstd(raw, ir_codec.FLOAT_LEVEL if len(raw) <= ir_codec.FLOAT_LEVEL_MAX else None)
            header.append([name, a.dtype.str, list(a.shape), kind, "|u1", len(comp), len(raw), extra])
            segs.append(comp)
            continue
        else:
            body = a.ravel()
        raw = shuffle(body)
        comp = ir_codec.zstd(raw)
        row: list[Any] = [name, a.dtype.str, list(a.shape), kind, body.dtype.str, len(comp), len(raw)]
        header.append(row)
        segs.append(comp)
    for name, vals in (strings or {}).items():
        raw = "\n".join(vals).encode()
        comp = ir_codec.zstd(raw)
        header.append([name, "str", [len(vals)], "str", "", len(comp), len(raw)])
        segs.append(comp)
    head = msgpack.packb(header)
    return struct.pack("<I", len(head)) + head + b"".join(segs)


def unpack_arrays(buf: bytes) -> dict[str, Any]:
    """Inverse of :func:`pack_arrays` (string lists come back as lists).

    Raises
    ------
    moldb.errors.StorageError
        When ``buf`` is not a packed cell (truncated or damaged).
    """
    if not buf:
        return {}
    try:
        return _unpack(buf)
    except (struct.error, ValueError, TypeError, KeyError, IndexError, OSError,
            msgpack.exceptions.ExtraData) as exc:
        raise StorageError(f"corrupt IR cell ({type(exc).__name__}: {exc}); the store's files were damaged") \
            from exc


def _unpack(buf: bytes) -> dict[str, Any]:
    (n,) = struct.unpack_from("<I", buf)
    header = msgpack.unpackb(bytes(buf[4:4 + n]))
    pos = 4 + n
    if pos + sum(int(row[5]) for row in header) != len(buf):
        raise ValueError(f"{len(buf)} bytes, the header describes {pos + sum(int(row[5]) for row in header)}")
    out: dict[str, Any] = {}
    for row in header:
        name, dtype, shape, kind, body_dtype, csize, rsize = row[:7]
        seg = bytes(buf[pos:pos + csize])
        pos += csize
        raw = ir_codec.unzstd(seg, rsize)
        if kind == "str":
            out[name] = raw.decode().split("\n") if shape[0] else []
            continue
        if kind in ("fixed", "float"):
            out[name] = ir_codec.decode_float(kind, raw, np.dtype(dtype), list(shape), row[7])
            continue
        body = unshuffle(raw, np.dtype(body_dtype)) if rsize else np.zeros(0, np.dtype(body_dtype))
        if kind == "delta":
            body = np.cumsum(body.astype(np.int64))
        out[name] = body.astype(np.dtype(dtype)).reshape(shape)
    return out


def describe_packed(buf: bytes) -> list[dict[str, Any]]:
    """What :func:`pack_arrays` stored, per array: name, dtype, shape, kind, compressed / raw bytes, encoding."""
    if not buf:
        return []
    (n,) = struct.unpack_from("<I", buf)
    out = []
    for row in msgpack.unpackb(bytes(buf[4:4 + n])):
        extra = row[7] if len(row) > 7 else {}
        out.append({"name": row[0], "dtype": row[1], "shape": list(row[2]), "kind": row[3], "bytes": row[5],
                    "raw_bytes": row[6], "encoding": {k: v for k, v in extra.items() if k != "exc"},
                    "exceptions": extra["exc"][2] if "exc" in extra else 0})
    return out


def write_ir_cells(backend: Backend, name: str, ts: int, entry: str, version: int,
                   rows: Sequence[tuple[str, str, dict[str, Any], bytes]]) -> None:
    """Write ``(key, kind/type, spec, data)`` cells of ``groupings`` / ``descriptors`` in one fragment."""
    if not rows:
        return
    n = len(rows)
    backend.write_cells(
        name, ts, [np.array([entry] * n, dtype=object), np.full(n, version, dtype=np.uint32),
                   np.array([r[0] for r in rows], dtype=object)],
        {"ts": np.full(n, ts, dtype=np.uint64), _TAG[name]: np.array([r[1] for r in rows], dtype=object),
         "spec": np.array([json.dumps(r[2]) for r in rows], dtype=object),
         "data": np.array([r[3] for r in rows], dtype=object)})


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def read_cells(backend: Backend, name: str, entry: str) -> list[dict[str, Any]]:
    """Every cell of ``name`` for ``entry`` (all versions), without the binary data: fresh read."""
    if not has_ir(backend):
        return []
    arr = backend.reader(name, refresh=True)
    with engine.mapped(arr.uri, f"reading {name}"):
        res = arr.query(attrs=["ts", _TAG[name], "spec"], order="U").multi_index[entry:entry, :, :]
    key = _KEY[name]
    return [{"version": int(res["version"][i]), "name": _s(res[key][i]), "ts": int(res["ts"][i]),
             "tag": _s(res[_TAG[name]][i]), "spec": json.loads(res["spec"][i])} for i in range(len(res["ts"]))]


def read_cell(backend: Backend, name: str, entry: str, version: int, key: str) -> bytes:
    """The binary data of one cell (latest write wins)."""
    arr = backend.reader(name, refresh=True)
    with engine.mapped(arr.uri, f"reading {name}"):
        res = arr.query(attrs=["data"], order="U").multi_index[entry:entry, version:version, key:key]
    return bytes(res["data"][-1]) if len(res["data"]) else b""


def write_operator_cells(backend: Backend, ts: int,
                         rows: Sequence[tuple[str, str, str, str, str, dict[str, Any], bytes]]) -> None:
    """Register operators ``(name, version, type, content hash, venue, spec, body)``."""
    if not rows:
        return
    backend.write_cells(
        "operators", ts, [np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows], dtype=object)],
        {"ts": np.full(len(rows), ts, dtype=np.uint64),
         **{k: np.array([r[i] for r in rows], dtype=object) for i, k in
            ((2, "type"), (3, "content_hash"), (4, "venue"))},
         "spec": np.array([json.dumps(r[5]) for r in rows], dtype=object),
         "body": np.array([r[6] for r in rows], dtype=object)})


def read_operator_cells(backend: Backend, with_body: bool = False) -> list[dict[str, Any]]:
    """Every registered operator (fresh read)."""
    if not has_ir(backend):
        return []
    arr = backend.reader("operators", refresh=True)
    attrs = ["ts", "type", "content_hash", "venue", "spec"] + (["body"] if with_body else [])
    with engine.mapped(arr.uri, "reading operators"):
        res = arr.query(attrs=attrs, order="U")[:]
    out = []
    for i in range(len(res["ts"])):
        d = {"name": _s(res["name"][i]), "version": _s(res["version"][i]), "type": _s(res["type"][i]),
             "content_hash": _s(res["content_hash"][i]), "venue": _s(res["venue"][i]), "ts": int(res["ts"][i]),
             "spec": json.loads(res["spec"][i])}
        if with_body:
            d["body"] = bytes(res["body"][i])
        out.append(d)
    return out
