"""TileDB array schemas of a moldb store (schema v1).

A store is a TileDB group holding store-wide arrays, never one array set per
entry, so a store of 100k entries is a handful of TileDB objects:

===============  ======  =====================================  ===========================================
array            type    dimensions                             holds
===============  ======  =====================================  ===========================================
``versions``     sparse  entry (str), version (uint32)           one cell per committed version: the block
                                                                ids of each column group, timestamp, author,
                                                                message, content hash, entry summary
``tags``         sparse  entry (str), tag (str)                 named versions
``blocks``       sparse  block (uint64)                         per block: entry, group, row count, JSON
                                                                meta (string dictionaries, decimals, nulls)
``atoms_topo``   sparse  block (uint64), row (uint64)           identifier columns (names, ids, chains ...)
``atoms_xyz``    sparse  block, row                             Cartn_x/y/z as fixed-point integers
``atoms_adp``    sparse  block, row                             occupancy, B, U11…U23 as fixed-point integers
``cif``          sparse  block, category (str), item (str),     every other category value, verbatim, with
                         row (uint64)                           its BinaryCIF-style null mask
===============  ======  =====================================  ===========================================

Blocks are immutable: a deposition writes new blocks only for the column groups
that changed and points the new version at them, so history never depends on
TileDB time travel of the bulk arrays (which would not survive consolidation of
dense data) and a B-factor-only re-deposition costs only the ``adp`` block.

Compression follows MMTF/BinaryCIF, as TileDB filters: floats are stored as
fixed-point integers (moldb scales by ``10**decimals`` per block, like MMTF's
integer encoding and BinaryCIF's FixedPoint) then Delta + BitWidthReduction +
Zstd; string columns as per-block dictionaries (BinaryCIF StringArray) whose
codes go through BitWidthReduction + Zstd; masks through RLE + Zstd.
"""

from __future__ import annotations

import numpy as np
import tiledb

from moldb.schema.columns import ANISO_COLUMNS, ATOM_COLUMNS, GROUPS, AtomColumn

__all__ = ["ARRAY_NAMES", "ATOM_ARRAYS", "create_arrays", "mask_attr"]

ATOM_ARRAYS: dict[str, str] = {g: f"atoms_{g}" for g in GROUPS}
ARRAY_NAMES = ("versions", "tags", "blocks", *ATOM_ARRAYS.values(), "cif")
UINT64_MAX_DOMAIN = np.iinfo(np.uint64).max - 10_000  # TileDB needs headroom above the domain end
TILE_CAPACITY = 20_000


def mask_attr(column: str) -> str:
    """Name of the null-kind mask attribute of ``column``."""
    return f"mask_{column}"


def _zstd(level: int = 7) -> tiledb.ZstdFilter:
    return tiledb.ZstdFilter(level=level)


def _int_filters() -> tiledb.FilterList:
    return tiledb.FilterList([tiledb.DeltaFilter(), tiledb.BitWidthReductionFilter(), _zstd()])


def _code_filters() -> tiledb.FilterList:
    return tiledb.FilterList([tiledb.BitWidthReductionFilter(), _zstd()])


def _mask_filters() -> tiledb.FilterList:
    return tiledb.FilterList([tiledb.RleFilter(), _zstd()])


def _str_filters() -> tiledb.FilterList:
    return tiledb.FilterList([_zstd(9)])


def _block_dim(ctx: tiledb.Ctx) -> tiledb.Dim:
    return tiledb.Dim(
        "block", domain=(1, UINT64_MAX_DOMAIN), tile=None, dtype=np.uint64,
        filters=tiledb.FilterList([tiledb.RleFilter(), _zstd()]), ctx=ctx,
    )


def _row_dim(ctx: tiledb.Ctx, name: str = "row") -> tiledb.Dim:
    return tiledb.Dim(
        name, domain=(0, UINT64_MAX_DOMAIN), tile=None, dtype=np.uint64,
        filters=tiledb.FilterList([tiledb.DoubleDeltaFilter(), tiledb.BitWidthReductionFilter(), _zstd()]),
        ctx=ctx,
    )


def _str_dim(name: str, ctx: tiledb.Ctx) -> tiledb.Dim:
    return tiledb.Dim(name, domain=(None, None), tile=None, dtype="ascii",
                      filters=tiledb.FilterList([tiledb.RleFilter(), _zstd()]), ctx=ctx)


def _attr(col: AtomColumn, ctx: tiledb.Ctx) -> list[tiledb.Attr]:
    if col.kind == "str":
        attrs = [tiledb.Attr(col.name, dtype=np.int32, filters=_code_filters(), ctx=ctx)]
    else:
        attrs = [tiledb.Attr(col.name, dtype=np.int64, filters=_int_filters(), ctx=ctx)]
    attrs.append(tiledb.Attr(mask_attr(col.name), dtype=np.uint8, filters=_mask_filters(), ctx=ctx))
    return attrs


def _atoms_schema(group: str, ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    attrs: list[tiledb.Attr] = []
    for col in ATOM_COLUMNS + ANISO_COLUMNS:
        if col.group == group:
            attrs.extend(_attr(col, ctx))
    return tiledb.ArraySchema(
        domain=tiledb.Domain(_block_dim(ctx), _row_dim(ctx), ctx=ctx), attrs=attrs, sparse=True,
        capacity=TILE_CAPACITY, cell_order="row-major", tile_order="row-major", ctx=ctx,
    )


def _utf8(name: str, ctx: tiledb.Ctx, nullable: bool = False) -> tiledb.Attr:
    return tiledb.Attr(name, dtype=str, var=True, nullable=nullable, filters=_str_filters(), ctx=ctx)


def _versions_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    ver = tiledb.Dim("version", domain=(1, 2**31), tile=None, dtype=np.uint32,
                     filters=tiledb.FilterList([_zstd()]), ctx=ctx)
    attrs = [
        tiledb.Attr("ts", dtype=np.uint64, ctx=ctx),
        _utf8("blocks", ctx), _utf8("author", ctx), _utf8("message", ctx), _utf8("content_hash", ctx),
        tiledb.Attr("parent", dtype=np.uint32, ctx=ctx),
        _utf8("source", ctx), _utf8("summary", ctx),
        _utf8("title", ctx), _utf8("method", ctx),
        tiledb.Attr("resolution", dtype=np.float64, ctx=ctx),  # NaN where unknown
        tiledb.Attr("n_atoms", dtype=np.uint64, ctx=ctx),
        tiledb.Attr("n_models", dtype=np.uint32, ctx=ctx),
    ]
    return tiledb.ArraySchema(domain=tiledb.Domain(_str_dim("entry", ctx), ver, ctx=ctx), attrs=attrs,
                              sparse=True, capacity=10_000, ctx=ctx)


def _tags_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    attrs = [tiledb.Attr("version", dtype=np.uint32, ctx=ctx), _utf8("author", ctx)]
    return tiledb.ArraySchema(domain=tiledb.Domain(_str_dim("entry", ctx), _str_dim("tag", ctx), ctx=ctx),
                              attrs=attrs, sparse=True, ctx=ctx)


def _blocks_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    attrs = [_utf8("entry", ctx), _utf8("group", ctx), tiledb.Attr("n_rows", dtype=np.uint64, ctx=ctx),
             _utf8("meta", ctx), _utf8("content_hash", ctx)]
    return tiledb.ArraySchema(domain=tiledb.Domain(_block_dim(ctx), ctx=ctx), attrs=attrs, sparse=True,
                              capacity=10_000, ctx=ctx)


def _cif_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    dom = tiledb.Domain(_block_dim(ctx), _str_dim("category", ctx), _str_dim("item", ctx), _row_dim(ctx),
                        ctx=ctx)
    attrs = [_utf8("value", ctx, nullable=True),
             tiledb.Attr("mask", dtype=np.uint8, filters=_mask_filters(), ctx=ctx)]
    return tiledb.ArraySchema(domain=dom, attrs=attrs, sparse=True, capacity=TILE_CAPACITY, ctx=ctx)


def array_schema(name: str, ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    """The TileDB schema of array ``name`` (one of :data:`ARRAY_NAMES`)."""
    for group, arr in ATOM_ARRAYS.items():
        if name == arr:
            return _atoms_schema(group, ctx)
    builders = {"versions": _versions_schema, "tags": _tags_schema, "blocks": _blocks_schema,
                "cif": _cif_schema}
    return builders[name](ctx)


def create_arrays(base_uri: str, ctx: tiledb.Ctx) -> dict[str, str]:
    """Create every array of schema v1 under ``base_uri``; return name → URI."""
    uris = {}
    for name in ARRAY_NAMES:
        uri = f"{base_uri.rstrip('/')}/{name}"
        tiledb.Array.create(uri, array_schema(name, ctx), ctx=ctx)
        uris[name] = uri
    return uris
