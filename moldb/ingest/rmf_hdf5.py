"""The older RMF layout (HDF5), read with h5py into an :class:`~moldb.ingest.rmf.RMFDocument`.

Layout (RMF ``src/backend/hdf5``): ``node_name`` (N,), ``node_data`` (N, 3 + categories):
node type, first child, next sibling (children are a linked list, newest first), then
per category the row of that node in the category's storage. Values live in
``{type}_{category}_{static|dynamic}_storage`` — (rows, keys) static, (rows, keys,
frames) per frame — with key names in the matching ``…_list`` dataset. Nulls:
``DBL_MAX`` for floats, ``INT_MAX`` for ints, ``-1`` for index / node-id types, ``""``
for strings, empty lists for list types. ``data_2`` holds node pairs (bonds).

Key names are mapped to the current ones as RMF's backwards layer does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from moldb.errors import ParseError
from moldb.ingest.rmf import NODE_TYPES, Key, RMFDocument, RMFFrame, RMFNode, Values

__all__ = ["read_rmf_hdf5"]

# file type name -> moldb type name
_TYPES = {"float": "float", "int": "int", "index": "int", "node_id": "int", "string": "string", "floats": "floats",
          "ints": "ints", "indexes": "ints", "node_ids": "ints", "strings": "strings"}
_FLOAT_NULL = np.finfo(np.float64).max
_INT_NULL = 2**31 - 1

_VECTOR3 = {"coordinates": ("cartesian x", "cartesian y", "cartesian z"),
            "translation": ("reference frame cartesian x", "reference frame cartesian y",
                            "reference frame cartesian z"),
            "rgb color": ("rgb color red", "rgb color green", "rgb color blue"),
            "force": ("force cartesian x", "force cartesian y", "force cartesian z"),
            "torque": ("torque cartesian x", "torque cartesian y", "torque cartesian z")}
_VECTOR4 = {"orientation": ("orientation r", "orientation i", "orientation j", "orientation k"),
            "rotation": ("reference frame orientation r", "reference frame orientation i",
                         "reference frame orientation j", "reference frame orientation k")}
_VECTORS3 = {"coordinates list": ("cartesian xs", "cartesian ys", "cartesian zs")}


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _is_null(ftype: str, v: Any) -> bool:
    if ftype == "float":
        return bool(v >= _FLOAT_NULL or not np.isfinite(v))
    if ftype == "int":
        return bool(v == _INT_NULL)
    if ftype in ("index", "node_id"):
        return bool(v < 0)
    if ftype == "string":
        return v in (b"", "")
    return v is None or len(v) == 0


def _convert(ftype: str, v: Any) -> Any:
    if ftype == "float":
        return float(v)
    if ftype in ("int", "index", "node_id"):
        return int(v)
    if ftype == "string":
        return _text(v)
    if ftype == "strings":
        return [_text(x) for x in v]
    if ftype == "floats":
        return [float(x) for x in v]
    return [int(x) for x in v]


def _fold_vectors(values: Values, key_types: dict[Key, str]) -> None:
    """Combine component keys into vector keys (in place), as RMF's backwards layer does."""
    cats = {c for c, _ in values}
    for cat in cats:
        for maps, kind in ((_VECTOR3, "vector3"), (_VECTOR4, "vector4"), (_VECTORS3, "vector3s")):
            for name, parts in maps.items():
                comps = [values.get((cat, p)) for p in parts]
                if not any(comps):
                    continue
                nodes = set().union(*(c.keys() for c in comps if c))
                out: dict[int, Any] = {}
                for n in nodes:
                    got = [c.get(n) if c else None for c in comps]
                    if kind == "vector3s":
                        seqs = [g or [] for g in got]
                        m = max(len(s) for s in seqs)
                        out[n] = [tuple(s[i] if i < len(s) else 0.0 for s in seqs) for i in range(m)]
                    else:
                        out[n] = tuple(0.0 if g is None else g for g in got)
                values[(cat, name)] = out
                key_types[(cat, name)] = kind
                for p in parts:
                    values.pop((cat, p), None)
                    key_types.pop((cat, p), None)


def read_rmf_hdf5(path: str | Path) -> RMFDocument:
    """Read an RMF file of the HDF5 layout.

    Raises
    ------
    ParseError
        h5py is missing, or the file is not a readable RMF HDF5 file (named in the message).
    """
    p = Path(path)
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ParseError(str(p), "reading HDF5-layout RMF files needs h5py: pip install 'moldb[rmf]'") from exc
    try:
        with h5py.File(p, "r") as f:
            return _read(p, f)
    except ParseError:
        raise
    except (OSError, KeyError, ValueError, IndexError, TypeError) as exc:
        raise ParseError(str(p), f"truncated or corrupt RMF (HDF5) file ({type(exc).__name__}: {exc})") from exc


def _read(p: Path, f: Any) -> RMFDocument:
    for need in ("node_data", "node_name"):
        if need not in f:
            raise ParseError(str(p), f"HDF5 file without {need!r}: not an RMF file")
    names = [_text(x) for x in f["node_name"][...]]
    nd = np.asarray(f["node_data"][...], dtype=np.int64)
    cats = [_text(x) for x in f["category_names_1"][...]] if "category_names_1" in f else []
    n = len(names)
    nodes = [RMFNode(i, names[i], NODE_TYPES.get(int(nd[i, 0]), f"unknown{int(nd[i, 0])}")) for i in range(n)]
    for i in range(n):
        chain, c, guard = [], int(nd[i, 1]), 0
        while 0 <= c < n and guard <= n:
            chain.append(c)
            c, guard = int(nd[c, 2]), guard + 1
        nodes[i].children = chain[::-1]
        for c in chain:
            nodes[c].parents.append(i)
    key_types: dict[Key, str] = {}
    static: Values = {}
    n_frames = 0
    dynamic: list[tuple[Key, str, int, Any, np.ndarray]] = []
    for ci, cat in enumerate(cats):
        col = 3 + ci
        if col >= nd.shape[1]:
            continue
        rows = nd[:, col]
        have = np.flatnonzero(rows >= 0)
        for ftype, kind in _TYPES.items():
            for per_frame in (False, True):
                sfx = "dynamic" if per_frame else "static"
                lst, sto = f"{ftype}_{cat}_{sfx}_list", f"{ftype}_{cat}_{sfx}_storage"
                if lst not in f or sto not in f or f[lst].shape[0] == 0:
                    continue
                keys = [_text(k) for k in f[lst][...]]
                data = f[sto][...]
                for ki, kname in enumerate(keys):
                    key = (cat, kname)
                    key_types[key] = kind
                    if per_frame:
                        n_frames = max(n_frames, data.shape[2])
                        dynamic.append((key, ftype, ki, data, have))
                        continue
                    dest = static.setdefault(key, {})
                    for node in have:
                        r = int(rows[node])
                        if r < data.shape[0] and ki < data.shape[1] and not _is_null(ftype, data[r, ki]):
                            dest[int(node)] = _convert(ftype, data[r, ki])
    if "frame_name" in f:
        frame_names = [_text(x) for x in f["frame_name"][...]]
        n_frames = max(n_frames, len(frame_names))
    else:
        frame_names = []
    frames = [RMFFrame(i, frame_names[i] if i < len(frame_names) else "", "frame", [i - 1] if i else [])
              for i in range(n_frames)]
    for key, ftype, ki, data, have in dynamic:
        col = 3 + cats.index(key[0])
        for node in have:
            r = int(nd[node, col])
            if r >= data.shape[0] or ki >= data.shape[1]:
                continue
            for fi in range(min(data.shape[2], n_frames)):
                v = data[r, ki, fi]
                if not _is_null(ftype, v):
                    frames[fi].values.setdefault(key, {})[int(node)] = _convert(ftype, v)
    _fold_vectors(static, key_types)
    for fr in frames:
        _fold_vectors(fr.values, dict(key_types))
    for fr in frames:
        for k in fr.values:
            key_types.setdefault(k, "vector3" if k[1] in _VECTOR3 else "vector4" if k[1] in _VECTOR4 else "vector3s")
    for k in list(key_types):
        if k[1] in {p for parts in (*_VECTOR3.values(), *_VECTOR4.values(), *_VECTORS3.values()) for p in parts}:
            key_types.pop(k)
    doc = RMFDocument(str(p), "hdf5", nodes, key_types, static, frames)
    if "data_2" in f:  # node pair sets: bonds
        pairs = np.asarray(f["data_2"][...], dtype=np.int64)
        doc.bonds = [(int(a), int(b)) for a, b in pairs[:, 1:3] if 0 <= a < n and 0 <= b < n]
    _alias_features(doc)
    for rnode in doc.nodes:  # as in RMF's backwards layer: alias nodes are links, not children
        rnode.children = [c for c in rnode.children if doc.nodes[c].type != "alias"]
    return doc


def _alias_features(doc: RMFDocument) -> None:
    """Old layout: a feature's particles are its ALIAS children (RMF's ``load_restraints``)."""
    aliased = doc.static.get(("alias", "aliased"), {})
    if not aliased:
        return
    rep: dict[int, Any] = {}
    for node in doc.nodes:
        if node.type == "feature":
            val = [int(aliased[c]) for c in node.children if doc.nodes[c].type == "alias" and c in aliased]
            if val:
                rep[node.id] = val
    if rep:
        doc.static[("feature", "representation")] = rep
        doc.key_types[("feature", "representation")] = "ints"
