"""TileDB array schemas of a moldb store (schema v1).

A store is a TileDB group holding three store-wide arrays, never one array set
per entry, so a store of 100k entries is still eight TileDB arrays:

===============  ======  =============================  ======================================================
array            type    dimensions                     holds
===============  ======  =============================  ======================================================
``versions``     sparse  entry (str), version (uint32)  one cell per committed version: block id of each
                                                        column group, timestamp, author, message, content
                                                        hash, entry summary
``tags``         sparse  entry (str), tag (str)         named versions
``blocks``       sparse  block (uint64)                 one cell per immutable block: entry, group, rows,
                                                        content hash and the column blob
``components``   sparse  comp_id (str)                  chemical-component templates, stored once per
                                                        component (MMTF's group types): atom names,
                                                        elements, intra-residue bonds with orders
``spatial``      sparse  block                          16 Å grid of each xyz block: row runs per cell and
                                                        the ligand atoms (``docs/query.md``)
``groupings``    sparse  entry, version, grouping       typed partitions of atoms, one compressed cell each
                                                        (``docs/ir.md``)
``descriptors``  sparse  entry, version, descriptor     heterogeneity descriptors: JSON spec + parameters
``operators``    sparse  name, version                  operator specs referenced by descriptors
``frames``       dense   traj, frame, part              trajectory frames: one fixed-point + zstd cell per
                                                        (frame, atom part / field) (``docs/trajectories.md``)
===============  ======  =============================  ======================================================

A block holds one column group of one version: ``topo`` (identifiers), ``xyz``
(coordinates), ``adp`` (occupancy, B, U) or ``cif`` (every other category).
Blocks are immutable: a deposition writes new blocks only for the groups that
changed and points the new version at them, so history never depends on TileDB
time travel of bulk data, and a B-factor-only re-deposition writes one ``adp``
block. Inside a block each column is encoded as BinaryCIF/MMTF do (fixed point,
delta, dictionary, integer narrowing) and zstd-compressed on its own
(:mod:`moldb.storage.blob`); ``docs/architecture.md`` gives the measurements that
chose one cell per block over one TileDB attribute per column.
"""

from __future__ import annotations

import numpy as np
import tiledb

__all__ = ["ARRAY_NAMES", "array_schema", "create_arrays"]

ARRAY_NAMES = ("versions", "tags", "blocks", "components", "spatial", "groupings", "descriptors", "operators",
               "frames")
UINT64_MAX_DOMAIN = np.iinfo(np.uint64).max - 10_000  # TileDB needs headroom above the domain end
BLOCKS_CAPACITY = 4  # a tile holds few blobs, so reading one block touches little else


def _zstd(level: int = 7) -> tiledb.ZstdFilter:
    return tiledb.ZstdFilter(level=level)


def _str_filters() -> tiledb.FilterList:
    return tiledb.FilterList([_zstd(9)])


def _str_dim(name: str, ctx: tiledb.Ctx) -> tiledb.Dim:
    return tiledb.Dim(name, domain=(None, None), tile=None, dtype="ascii",
                      filters=tiledb.FilterList([tiledb.RleFilter(), _zstd()]), ctx=ctx)


def _utf8(name: str, ctx: tiledb.Ctx) -> tiledb.Attr:
    return tiledb.Attr(name, dtype=str, var=True, filters=_str_filters(), ctx=ctx)


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
    block = tiledb.Dim("block", domain=(1, UINT64_MAX_DOMAIN), tile=None, dtype=np.uint64,
                       filters=tiledb.FilterList([_zstd()]), ctx=ctx)
    attrs = [_utf8("entry", ctx), _utf8("group", ctx), tiledb.Attr("n_rows", dtype=np.uint64, ctx=ctx),
             _utf8("content_hash", ctx),
             # already compressed column by column: no TileDB filter (blobs carry their own SHA-256
             # as the block's content_hash, which `moldb` can verify)
             # "blob" (not char): TileDB keeps no per-tile min/max for it, which for char data would
             # copy every blob into the fragment metadata (measured: 2x the store size)
             tiledb.Attr("data", dtype="blob", var=True, ctx=ctx)]
    return tiledb.ArraySchema(domain=tiledb.Domain(block, ctx=ctx), attrs=attrs, sparse=True,
                              capacity=BLOCKS_CAPACITY, ctx=ctx)


def _components_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    attrs = [_utf8("atom_names", ctx), _utf8("elements", ctx),
             tiledb.Attr("bonds", dtype="blob", var=True, filters=tiledb.FilterList([_zstd()]), ctx=ctx),
             _utf8("source", ctx)]
    return tiledb.ArraySchema(domain=tiledb.Domain(_str_dim("comp_id", ctx), ctx=ctx), attrs=attrs,
                              sparse=True, capacity=1000, ctx=ctx)


SPATIAL_CAPACITY = 64  # grid cells per tile: a pocket query touches a few tiles of one block


def _spatial_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    """Coarse spatial grid per ``xyz`` block (written by :mod:`moldb.query.spatial` at ingest).

    One cell per ``xyz`` block: a blob of row runs per grid cell plus the ligand atoms,
    and a JSON header (grid bounds, decimals).
    """
    block = tiledb.Dim("block", domain=(1, UINT64_MAX_DOMAIN), tile=None, dtype=np.uint64,
                       filters=tiledb.FilterList([_zstd()]), ctx=ctx)
    attrs = [tiledb.Attr("index", dtype="blob", var=True, ctx=ctx), _utf8("meta", ctx)]
    return tiledb.ArraySchema(domain=tiledb.Domain(block, ctx=ctx), attrs=attrs, sparse=True,
                              capacity=BLOCKS_CAPACITY, ctx=ctx)


def _ir_schema(ctx: tiledb.Ctx, key: str, extra: list[tiledb.Attr]) -> tiledb.ArraySchema:
    """(entry, version, ``key``) → ts, spec JSON, binary data (:mod:`moldb.storage.ir_store`)."""
    ver = tiledb.Dim("version", domain=(1, 2**31), tile=None, dtype=np.uint32,
                     filters=tiledb.FilterList([_zstd()]), ctx=ctx)
    attrs = [tiledb.Attr("ts", dtype=np.uint64, ctx=ctx), *extra, _utf8("spec", ctx),
             tiledb.Attr("data", dtype="blob", var=True, ctx=ctx)]  # already zstd-compressed per array
    return tiledb.ArraySchema(domain=tiledb.Domain(_str_dim("entry", ctx), ver, _str_dim(key, ctx), ctx=ctx),
                              attrs=attrs, sparse=True, capacity=64, ctx=ctx)


def _groupings_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    """IR groupings: one cell per (entry, version, grouping) holding its membership block."""
    return _ir_schema(ctx, "grouping", [_utf8("kind", ctx)])


def _descriptors_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    """IR heterogeneity descriptors: (entry, version, descriptor id) → spec JSON + parameter arrays."""
    return _ir_schema(ctx, "descriptor", [_utf8("type", ctx)])


def _operators_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    """Operator registry: (name, version) → type, content hash, venue, spec JSON, inline body."""
    attrs = [tiledb.Attr("ts", dtype=np.uint64, ctx=ctx), _utf8("type", ctx), _utf8("content_hash", ctx),
             _utf8("venue", ctx), _utf8("spec", ctx), tiledb.Attr("body", dtype="blob", var=True, ctx=ctx)]
    return tiledb.ArraySchema(domain=tiledb.Domain(_str_dim("name", ctx), _str_dim("version", ctx), ctx=ctx),
                              attrs=attrs, sparse=True, capacity=1000, ctx=ctx)


FRAMES_DOMAIN = (2**40 - 1, 2**32 - 1, 255)  # trajectory id, frame, part (see moldb.storage.frames)


def _frames_schema(ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    """Trajectory frames: dense (traj, frame, part) → one compressed cell (:mod:`moldb.storage.frames`).

    Every dimension has tile extent 1, so one cell is one tile: reading one frame (or one
    atom part of one frame) reads exactly its bytes. Trajectory ids are random, so dense
    consolidation (amplification 1.0) never merges two trajectories' fragments.
    """
    dims = [tiledb.Dim(n, domain=(0, hi), tile=1, dtype=np.uint64, ctx=ctx)
            for n, hi in zip(("traj", "frame", "part"), FRAMES_DOMAIN, strict=True)]
    attrs = [tiledb.Attr("data", dtype="blob", var=True, ctx=ctx)]  # already fixed-point + zstd per cell
    return tiledb.ArraySchema(domain=tiledb.Domain(*dims, ctx=ctx), attrs=attrs, sparse=False,
                              cell_order="row-major", tile_order="row-major", ctx=ctx)


def array_schema(name: str, ctx: tiledb.Ctx) -> tiledb.ArraySchema:
    """The TileDB schema of array ``name`` (one of :data:`ARRAY_NAMES`)."""
    builders = {"versions": _versions_schema, "tags": _tags_schema, "blocks": _blocks_schema,
                "components": _components_schema,
                "spatial": _spatial_schema,
                "groupings": _groupings_schema, "descriptors": _descriptors_schema,
                "operators": _operators_schema, "frames": _frames_schema}
    return builders[name](ctx)


def create_arrays(base_uri: str, ctx: tiledb.Ctx) -> dict[str, str]:
    """Create every array of schema v1 under ``base_uri``; return name → URI."""
    uris = {}
    for name in ARRAY_NAMES:
        uri = f"{base_uri.rstrip('/')}/{name}"
        tiledb.Array.create(uri, array_schema(name, ctx), ctx=ctx)
        uris[name] = uri
    return uris
