"""What a plain block's blob needs parsed before its columns decode, parsed once per block id.

A small entry's full read decodes about 25 columns of four plain blobs. Per read, parsing
each blob's msgpack header, unpacking each string column's dictionary and building its
Arrow string array costs more than decoding the codes themselves (measured on 1O1Z, 2,302
atoms: ~110 of ~740 µs). A block id always holds the same bytes, so :class:`BlobPlan` keeps
these per block (:func:`plan_cache`, an LRU bounded by an estimate of the Python and Arrow
memory it holds); every read still decompresses and decodes every column it returns.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pyarrow as pa

from moldb._lru import ByteLRU
from moldb.storage.blob import _decompress, read_header, segment_layout

__all__ = ["PLANS_MB", "BlobPlan", "plan_cache"]

#: Memory budget of the plans kept per store handle (MB).
PLANS_MB = 32
_DICT_MAX = 4096  # dictionaries longer than this are not kept (a per-row text column)
_STR_COST = 80  # bytes per kept string: the Python str, its list slot and its Arrow copy


class BlobPlan:
    """A plain blob's parsed header, its column descriptions and its string dictionaries.

    Parameters
    ----------
    blob : bytes
        The blob (:class:`moldb.storage.blob.BlobWriter` format).

    Attributes
    ----------
    header : dict
        The msgpack header.
    base : int
        Offset of the first segment.
    kinds : dict[str, dict]
        Column name → header description, masks left out.
    dicts : dict[str, list of str]
        Decoded dictionaries of the ``str`` / ``text`` columns (those up to 4,096 strings).
    layout : tuple or None
        Where every segment lies (:func:`moldb.storage.blob.segment_layout`), for full reads.
    """

    __slots__ = ("_arrow", "base", "dicts", "header", "kinds", "layout", "nbytes")

    def __init__(self, blob: bytes | memoryview) -> None:
        self.header, self.base = read_header(blob)
        cols: list[dict[str, Any]] = self.header["cols"]
        self.kinds = {c["name"]: c for c in cols if c["kind"] != "mask"}
        self.layout = segment_layout(cols)
        self.dicts: dict[str, list[str]] = {}
        self._arrow: dict[str, pa.Array] = {}
        for col in cols:
            if "dict" in col:
                d = self._unpack(blob, col)
                if len(d) <= _DICT_MAX:
                    self.dicts[col["name"]] = d
        self.nbytes = 4 * self.base + _STR_COST * sum(len(d) for d in self.dicts.values())

    def __len__(self) -> int:  # the size ByteLRU bounds
        return self.nbytes

    def _unpack(self, blob: bytes | memoryview, col: dict[str, Any]) -> list[str]:
        off, clen, ulen = col["dict"]
        return list(msgpack.unpackb(_decompress(memoryview(blob)[self.base + off: self.base + off + clen], ulen),
                                    raw=False))

    def dictionary(self, blob: bytes | memoryview, column: str) -> list[str] | None:
        """The dictionary of string column ``column`` of ``blob`` (this plan's blob): kept, or decoded now."""
        if column in self.dicts:
            return list(self.dicts[column])
        for col in self.header["cols"]:
            if col["name"] == column and "dict" in col:
                return self._unpack(blob, col)
        return None

    def arrow_dictionary(self, column: str) -> pa.Array | None:
        """The dictionary of ``column`` as an Arrow string array (built once), None if not kept."""
        got = self._arrow.get(column)
        if got is None:
            d = self.dicts.get(column)
            if d is None:
                return None
            got = self._arrow[column] = pa.array(d, type=pa.string())
        return got


def plan_cache(backend: Any) -> ByteLRU:
    """The :class:`BlobPlan` s of plain blocks read through ``backend``, by block id."""
    cache: ByteLRU | None = backend.__dict__.get("_blob_plans")
    if cache is None:
        cache = backend.__dict__.setdefault("_blob_plans", ByteLRU(PLANS_MB << 20))
    return cache


def codes_fit(codes: np.ndarray, size: int, null: np.ndarray | None) -> bool:
    """Whether every non-null code indexes a dictionary of ``size`` strings."""
    if codes.size == 0:
        return True
    if codes.dtype.kind == "i" and int(codes.min()) < 0:
        return False
    if int(codes.max()) < size:
        return True
    return null is not None and not bool((codes[~null] >= size).any())
