"""The query engine's fast read path: low-level cell reads, one-call page decoding, scope arithmetic.

Each piece is checked against the straightforward form it replaced: TileDB-Py's ``multi_index``,
a decode per frame, a materialised row map, a loop over grid cells.
"""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiledb

import moldb
from moldb.query.candidates import candidates
from moldb.query.context import EntryContext
from moldb.query.nodes import Entry, Plan
from moldb.query.spatial import _grid, _pack, point_ranges
from moldb.storage import cells
from moldb.storage.blob import BlobWriter, _running, read_blob_columns
from moldb.storage.blob_pages import read_into, read_pages
from moldb.storage.groups import header_cache, open_groups
from tests import cif_edits as ce
from tests.conftest import data


def _write(st: moldb.Store, blobs: dict[int, bytes]) -> None:
    backend = st._backend
    with backend.writing() as ts:
        backend.write_blocks(ts, "X", [(b, "xyz", 1, hashlib.sha256(v).hexdigest(), v) for b, v in blobs.items()])


def test_read_cells_equals_multi_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = moldb.create(tmp_path / "s")
    rng = np.random.default_rng(5)
    blobs = {int(b): rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()
             for b, n in zip(rng.choice(10**9, 40, replace=False) + 16, rng.integers(0, 300_000, 40), strict=True)}
    blobs[7] = b""  # an empty cell
    blobs[9] = rng.integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()  # larger than the first buffer below
    _write(st, blobs)
    arr = st._backend.reader("blocks", refresh=True)
    ids = [*sorted(blobs), 10**12]  # and an id without a cell
    ref = arr.query(attrs=["data"], order="U").multi_index[[(b, b) for b in ids]]
    want = {int(b): bytes(d) for b, d in zip(ref["block"], ref["data"], strict=True)}
    monkeypatch.setattr(cells, "START_BYTES", 1 << 16)  # forces incomplete submissions and buffer growth
    monkeypatch.setattr(cells._LOCAL, "data", None, raising=False)
    for serial in (1, 10**6):  # one TileDB thread, and the store's thread pools
        monkeypatch.setattr(cells, "SERIAL_CELLS", serial)
        got = cells.read_cells(arr, ids)
        assert dict(zip(got["block"], got["data"], strict=True)) == want == {b: blobs[b] for b in sorted(blobs)}
    assert st._backend.read_blocks(ids) == {b: {"data": v} for b, v in blobs.items()}


def test_paged_reads_decode_every_frame_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    n = 3000
    w = BlobWriter(n, 256)
    ints = np.cumsum(rng.integers(-40_000, 40_000, n))  # int16 packing with overflow runs
    w.add_ints("i", "int", ints)
    w.add_floats("f", np.round(rng.normal(0, 50, n), 2), 2)
    w.add_strings("s", rng.integers(0, 3000, n), None)
    w.add_mask("s", (rng.integers(0, 5, n) == 0).astype(np.uint8))
    blob = w.finish()
    whole, masks, _, _ = read_blob_columns(blob)
    import moldb.storage.blob_pages as bp

    calls: list[int] = []
    real = bp._decompress
    monkeypatch.setattr(bp, "_decompress", lambda buf, size: (calls.append(size), real(buf, size))[1])
    pages = [0, 1, 2, 5, 9, 10, 11]
    got, m, _ = read_pages(blob, ["i", "f", "s"], pages)
    rows = np.concatenate([np.arange(256 * p, min(256 * (p + 1), n)) for p in pages])
    assert len(calls) == 1
    assert np.array_equal(got["i"], whole["i"][rows]) and np.array_equal(got["f"], whole["f"][rows])
    assert np.array_equal(got["s"][0], whole["s"][0][rows]) and np.array_equal(m["s"], masks["s"][rows])
    out = {"i": np.empty(n, np.int64), "f": np.empty(n), "s": np.empty(n, np.int32)}
    into: dict[str, np.ndarray] = {}
    read_into(blob, ["i", "f", "s"], out, into, 0, n)
    assert len(calls) == 2
    assert np.array_equal(out["i"], whole["i"]) and np.array_equal(out["f"], whole["f"])
    assert np.array_equal(out["s"], whole["s"][0]) and np.array_equal(into["s"], masks["s"])


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_running_sums_equal_numpy(dtype: type) -> None:
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype)
    packed = rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), 70_000).astype(dtype)
    assert np.array_equal(_running(packed, False), np.cumsum(packed.astype(np.int64)))


class _Zoned(EntryContext):
    """A context over fixed zone bounds (no store needed)."""

    zb = np.r_[np.arange(0, 10_000, 700), 10_000]

    @property
    def bounds(self) -> np.ndarray:
        return self.zb


def test_scope_arithmetic_equals_the_materialised_row_map() -> None:
    ctx = _Zoned(None, "E", {}, 10_000, {})
    bounds = ctx.zb
    ctx.restrict(np.array([1, 2, 5, 13]))
    want = np.concatenate([np.arange(bounds[z], bounds[z + 1]) for z in (1, 2, 5, 13)])
    assert ctx.n == want.size and np.array_equal(ctx.rows, want)
    mask = np.random.default_rng(0).random(ctx.n) < 0.3
    assert np.array_equal(ctx.global_rows(mask), want[mask])
    probe = np.sort(np.random.default_rng(1).choice(10_000, 3000, replace=False))
    pos, ok = ctx.local(probe)
    assert np.array_equal(ok, np.isin(probe, want)) and np.array_equal(want[pos[ok]], probe[ok])


def test_point_ranges_cover_exactly_the_cells_of_every_cube() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        pts = rng.normal(0, rng.uniform(1, 100), (int(rng.integers(1, 12)), 3))
        r = float(rng.uniform(0, 20))
        lo, hi = _grid(pts - r), _grid(pts + r)
        want = {int(_pack(np.array([x]), np.array([y]), np.array([z]))[0])
                for a, b in zip(lo, hi, strict=True) for x in range(a[0], b[0] + 1)
                for y in range(a[1], b[1] + 1) for z in range(a[2], b[2] + 1)}
        ranges = point_ranges(pts, r)
        assert all(k1 < k2 for (_, k1), (k2, _) in itertools.pairwise(ranges))  # sorted, disjoint
        got = {k for k0, k1 in ranges for k in range(k0, k1 + 1)}
        assert got == want


def test_candidates_by_entry_respect_as_of(tmp_path: Path) -> None:
    st = moldb.create(tmp_path / "s")
    v1 = st.ingest(data("mmcif/1o1z.cif.gz"))
    st.ingest(data("mmcif/4gxy.cif.gz"))
    v2 = st.deposit(ce.edit(data("mmcif/1o1z.cif.gz"), tmp_path / "b.cif", ce.shift_b(1.0)), entry="1O1Z")
    plan = Plan(Entry(("1O1Z", "NOPE")))
    assert [(c.entry, c.version) for c in candidates(st, plan)] == [("1O1Z", v2.version)]
    old = moldb.open(tmp_path / "s", as_of=v1.timestamp)
    assert [(c.entry, c.version) for c in candidates(old, plan)] == [("1O1Z", v1.version)]
    assert [c.entry for c in candidates(st, Plan(Entry(("4GXY",))))] == ["4GXY"]


def test_chunk_headers_are_parsed_once_per_store(tmp_path: Path) -> None:
    st = moldb.create(tmp_path / "s")
    st._backend.chunk_rows, st._backend.page_rows = 1000, 256
    v = st.ingest(data("mmcif/5eil.cif.gz"))
    sel = st.select("chain B and resid 10-20")
    first = sel.to_arrow()
    cache = header_cache(st._backend)
    held = dict(cache)
    assert held and sel.to_arrow().equals(first)
    src = open_groups(st._backend, [v.blocks], ["topo"])[0]["topo"]
    assert all(cache[b] is held[b] for b in held)  # reused, not parsed again
    assert src.manifest is not None


def test_allocator_tuning_can_be_switched_off() -> None:
    code = "import moldb.storage.engine as e; e.context(); from moldb.storage import allocator; print(allocator._DONE)"
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"MOLDB_MALLOC_TUNING": "0", "PATH": ""})
    assert off.stdout.strip() == "[False]"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PATH": ""})
    import platform

    assert on.stdout.strip() == ("[True]" if platform.libc_ver()[0] == "glibc" else "[False]")


def test_low_level_reads_serve_a_chunked_selection_bit_identically(tmp_path: Path) -> None:
    chunked, plain = moldb.create(tmp_path / "c"), moldb.create(tmp_path / "p")
    chunked._backend.chunk_rows, chunked._backend.page_rows = 1000, 256
    plain._backend.chunk_rows = 0
    for st in (chunked, plain):
        st.ingest(data("mmcif/5eil.cif.gz"))
    for q in ("chain A and resid 10-60", "within 6 of (chain B and resid 30)", "resname HOH"):
        a, b = chunked.select(q), plain.select(q)
        assert a.to_arrow().equals(b.to_arrow())
        assert np.array_equal(a.to_numpy("xyz"), b.to_numpy("xyz"))
    with tiledb.open(str(tmp_path / "c" / "blocks")) as arr:
        assert len(arr.query(attrs=["n_rows"])[:]["block"]) > 5  # the chunk cells were there to read
