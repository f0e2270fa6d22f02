"""Row chunks of large blocks: a manifest in the parent cell, one immutable cell per chunk.

A column-group block of more than ``chunk_rows`` rows is written as

* **chunk cells**: rows ``[bounds[k], bounds[k+1])`` encoded as an ordinary blob
  (:mod:`moldb.storage.blob`; delta coding restarts in each), cut into pages of
  ``page_rows`` rows, string columns as codes only. Chunk ``k`` of parent block ``P`` is
  block ``P + first + stride * k``: a commit interleaves the chunks of its new groups
  (topo 0, xyz 0, adp 0, aniso 0, topo 1, …), so the ``blocks`` array's tiles — four
  cells each — hold the same rows of every group, which is what a row subset reads.
  A chunk cell's ``group`` attribute is ``"<group>#<k>@<parent>"``: maintenance keeps and
  collects it with its parent.
* the **parent cell**: a manifest — row bounds, the SHA-256 of each chunk, the
  entry-wide string dictionaries, **zone maps** per page (min / max of every numeric
  column, the set of codes of every string column with a small dictionary; the query
  layer fetches only the chunks, and decodes only the pages, that can match) and the
  chunk layout (``first``, ``stride``). The parent's ``content_hash`` is the SHA-256 of the manifest without the
  layout, so it covers every chunk's content and unchanged groups are still shared
  between versions.

The manifest header has no ``cols`` key, so a moldb that predates chunking fails on
it loudly instead of reading an empty group (the store's ``moldb.encoding_version``
is also raised to ``"2"`` before the first chunked block is written).
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa

from moldb.storage.blob import BlobWriter, _compress, _decompress, read_header
from moldb.storage.codec import add_column, group_arrays

__all__ = ["DEFAULT_CHUNK_ROWS", "DEFAULT_PAGE_ROWS", "ChunkedGroup", "Manifest", "chunk_group", "chunk_parent",
           "encode_chunked", "parse_manifest"]

DEFAULT_CHUNK_ROWS = 65_536  # rows per chunk cell; blocks with more rows are chunked
DEFAULT_PAGE_ROWS = 8_192  # rows per independently decodable page inside a chunk (smaller frames decode slower)
_ZONE_DICT_MAX = 4096  # string columns with a larger dictionary get no code sets


def chunk_group(group: str, k: int, parent: int) -> str:
    """The ``group`` attribute of chunk ``k`` of the ``group`` block ``parent``."""
    return f"{group}#{k}@{parent}"


def chunk_parent(block: int, group: str) -> int | None:
    """The parent block of a chunk cell (None for a parent or plain block)."""
    if "#" not in group or "@" not in group:
        return None
    return int(group.rsplit("@", 1)[1])


@dataclass
class Manifest:
    """The parsed parent cell of a chunked block.

    Attributes
    ----------
    n : int
        Rows of the block.
    bounds : numpy.ndarray
        ``(k + 1,)`` row bounds of the chunks.
    zbounds : numpy.ndarray
        Row bounds of the zones — the pages of every chunk — that the zone maps describe.
    cols : dict[str, dict]
        Per column: ``kind`` (``str``/``text``/``int``/``float``) and ``dec``.
    dicts : dict[str, list[str]]
        Entry-wide dictionary of each string column (chunk codes index it).
    lo, hi : dict[str, numpy.ndarray]
        Per numeric column, the min / max of each zone over non-null rows (NaN: all null).
    sets : dict[str, list[numpy.ndarray]]
        Per string column with a small dictionary, the codes present in each zone.
    meta : dict
        The block's meta (``atom_items`` ... for ``topo``).
    first, stride : int
        Chunk ``k`` is block ``parent + first + stride * k``.
    """

    n: int
    bounds: np.ndarray
    zbounds: np.ndarray
    cols: dict[str, dict[str, Any]]
    dicts: dict[str, list[str]]
    lo: dict[str, np.ndarray]
    hi: dict[str, np.ndarray]
    sets: dict[str, list[np.ndarray]]
    meta: dict[str, Any]
    first: int = 1
    stride: int = 1
    _index: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_chunks(self) -> int:
        """Number of chunk cells."""
        return int(self.bounds.size - 1)

    def chunk_ids(self, parent: int, chunks: Any = None) -> list[int]:
        """Block ids of ``chunks`` (indices; default all) of the block ``parent``."""
        idx = range(self.n_chunks) if chunks is None else chunks
        return [int(parent) + self.first + self.stride * int(k) for k in idx]

    def zone_chunks(self, zones: np.ndarray) -> np.ndarray:
        """Chunk index of each zone index."""
        return np.searchsorted(self.bounds, self.zbounds[np.asarray(zones, dtype=np.int64)], "right") - 1

    def holds(self, column: str, codes: np.ndarray) -> np.ndarray:
        """Per zone, whether its code set of ``column`` holds any of ``codes`` (answers kept per code set)."""
        key = "#sets:" + column
        if key not in self._index:
            sets = self.sets[column]
            self._index[key] = {"chunk": np.repeat(np.arange(len(sets)), [len(x) for x in sets]),
                                "code": np.concatenate(sets) if sets else np.zeros(0, np.int64), "seen": {}}
        flat: Any = self._index[key]
        seen: dict[bytes, np.ndarray] = flat["seen"]
        got = seen.get(codes.tobytes())
        if got is None:
            got = np.zeros(self.zbounds.size - 1, dtype=bool)
            got[flat["chunk"][np.isin(flat["code"], codes)]] = True
            got.flags.writeable = False
            if len(seen) >= 256:
                seen.clear()
            seen[codes.tobytes()] = got
        return got

    def arrow_dictionary(self, column: str) -> pa.Array:
        """The dictionary of ``column`` as an Arrow string array (built once)."""
        key = "#arrow:" + column
        if key not in self._index:
            self._index[key] = pa.array(self.dicts[column], type=pa.string())
        out: pa.Array = self._index[key]
        return out

    def code(self, column: str, value: str) -> int | None:
        """Code of ``value`` in the dictionary of ``column`` (None: absent)."""
        if column not in self._index:
            self._index[column] = {s: i for i, s in enumerate(self.dicts.get(column, []))}
        return self._index[column].get(value)


def _zones(arrays: list[tuple[str, str, Any, np.ndarray | None]], bounds: np.ndarray) -> dict[str, Any]:
    lo: dict[str, list[float]] = {}
    hi: dict[str, list[float]] = {}
    sets: dict[str, list[list[int]]] = {}
    for name, kind, payload, mask in arrays:
        if kind in ("str", "text") and (kind == "text" or len(payload[1]) > _ZONE_DICT_MAX):
            continue
        vals = payload[0] if kind in ("str", "float") else payload
        ok = np.ones(vals.size, dtype=bool) if mask is None else mask == 0
        for a, b in itertools.pairwise(bounds):
            v = vals[a:b][ok[a:b]]
            if kind == "str":
                sets.setdefault(name, []).append(np.flatnonzero(np.bincount(v, minlength=1)).tolist())
            else:
                lo.setdefault(name, []).append(float(v.min()) if v.size else float("nan"))
                hi.setdefault(name, []).append(float(v.max()) if v.size else float("nan"))
    return {"lo": lo, "hi": hi, "sets": sets}


@dataclass
class ChunkedGroup:
    """One column group encoded as chunks, before block ids are known (:func:`encode_chunked`).

    Attributes
    ----------
    chunks : list of (blob, sha256, rows)
    content_hash : str
        SHA-256 of the manifest without its layout (equal content, equal hash).
    """

    chunks: list[tuple[bytes, str, int]]
    content_hash: str
    head: dict[str, Any]
    body: bytes

    def manifest(self, first: int, stride: int) -> bytes:
        """The parent cell's blob, chunk ``k`` being block ``parent + first + stride * k``."""
        head = {**self.head, "chunked": {**self.head["chunked"], "first": int(first), "stride": int(stride)}}
        header = msgpack.packb(head, use_bin_type=True)
        return struct.pack("<I", len(header)) + header + self.body


def encode_chunked(
    group: str,
    table: pa.Table,
    masks: dict[str, np.ndarray],
    decimals: dict[str, int],
    text: dict[str, tuple[pa.Array, np.ndarray | None]] | None,
    meta: dict[str, Any] | None,
    chunk_rows: int,
    page_rows: int,
) -> ChunkedGroup:
    """Encode one column group as chunk blobs and the content of its manifest."""
    n = table.num_rows
    arrays = group_arrays(group, table, masks, decimals, text)
    bounds = np.r_[np.arange(0, n, chunk_rows), n].astype(np.int64)
    # zones: the pages of every chunk (a page never straddles two chunks)
    zbounds = np.r_[np.concatenate([np.arange(a, b, page_rows) for a, b in itertools.pairwise(bounds.tolist())]),
                    n].astype(np.int64)
    chunks = []
    for a, b in itertools.pairwise(bounds.tolist()):
        w = BlobWriter(b - a, page_rows)
        for name, kind, payload, mask in arrays:
            add_column(w, name, kind, payload, mask, slice(a, b), dictionary=False)
        blob = w.finish()
        chunks.append((blob, hashlib.sha256(blob).hexdigest(), b - a))
    cols = {name: {"kind": kind, **({"dec": payload[1]} if kind == "float" else {})}
            for name, kind, payload, _ in arrays}
    body = {"dicts": {name: payload[1] for name, kind, payload, _ in arrays if kind in ("str", "text")},
            "zones": _zones(arrays, zbounds)}
    raw = msgpack.packb(body, use_bin_type=True)
    comp = _compress(raw)
    head = {"v": 2, "n": n, "chunked": {"bounds": bounds.tolist(), "zbounds": zbounds.tolist(),
                                        "hashes": [c[1] for c in chunks],
                                        "cols": cols, "body": [0, len(comp), len(raw)]},
            "meta": meta or {}}
    digest = hashlib.sha256(msgpack.packb(head, use_bin_type=True) + comp).hexdigest()
    return ChunkedGroup(chunks, digest, head, comp)


def parse_manifest(blob: bytes) -> Manifest | None:
    """The manifest of a parent cell, or None if ``blob`` is an ordinary (unchunked) block."""
    header, base = read_header(blob)
    info = header.get("chunked")
    if info is None:
        return None
    off, clen, ulen = info["body"]
    body = msgpack.unpackb(_decompress(memoryview(blob)[base + off: base + off + clen], ulen), raw=False)
    zones = body["zones"]
    return Manifest(
        n=int(header["n"]), bounds=np.asarray(info["bounds"], dtype=np.int64),
        zbounds=np.asarray(info["zbounds"], dtype=np.int64), cols=info["cols"],
        dicts=body["dicts"], lo={k: np.asarray(v, dtype=np.float64) for k, v in zones["lo"].items()},
        hi={k: np.asarray(v, dtype=np.float64) for k, v in zones["hi"].items()},
        sets={k: [np.asarray(c, dtype=np.int64) for c in v] for k, v in zones["sets"].items()},
        meta=dict(header.get("meta", {})), first=int(info["first"]), stride=int(info["stride"]))
