"""Queries on chunked entries: same answers as the single-blob layout, and only the chunks they need are read.

5EIL (7,327 atoms: chains A, B, C; FE at row 7221), 4GXY (GTP at rows 0-27) and 1O1Z
(altlocs, negative residue numbers) are stored in chunks of 1,000 rows, pages of 256.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import moldb
from moldb.query.plan import execute
from moldb.storage.chunks import Manifest
from moldb.storage.groups import manifest_cache
from tests.conftest import block_read_spy, data

FILES = ["mmcif/5eil.cif.gz", "mmcif/4gxy.cif.gz", "mmcif/1o1z.cif.gz"]
QUERIES = ["chain A and name CA and resid 10-50", "resname HOH", "element FE or element MG",
           "B_iso_or_equiv < 20 and type_symbol != 'H'", "within 8 of resname GTP", "within 5 of resname FE",
           "not chain A", "altloc A", "resid -5--1", "model 1 and resid 100-120", "chain B and resid 10-20",
           "box -10 -10 -10 10 10 10", "occupancy < 1", "label_seq_id > 300 or resname BP5", "resid 100000"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[moldb.Store, moldb.Store]:
    root = tmp_path_factory.mktemp("qc")
    chunked, plain = moldb.create(root / "chunked"), moldb.create(root / "plain")
    chunked._backend.chunk_rows, chunked._backend.page_rows = 1000, 256
    plain._backend.chunk_rows = 0
    for f in FILES:
        chunked.ingest(data(f))
        plain.ingest(data(f))
    yield chunked, plain
    chunked.close()
    plain.close()


@pytest.mark.parametrize("q", QUERIES)
def test_answers_equal_the_single_blob_layout(stores: tuple[moldb.Store, moldb.Store], q: str) -> None:
    chunked, plain = stores
    a, b = chunked.select(q), plain.select(q)
    ra, rb = a.rows(), b.rows()
    assert sorted(ra) == sorted(rb)
    assert all(np.array_equal(ra[e], rb[e]) for e in rb)
    assert a.to_arrow().equals(b.to_arrow())
    assert np.array_equal(a.to_numpy("xyz"), b.to_numpy("xyz"))
    if rb:
        assert pa.concat_tables(list(a.batches(100)), promote_options="permissive").equals(b.to_arrow())


@pytest.mark.parametrize("altloc", ["highest", "A"])
def test_altloc_policies_equal(stores: tuple[moldb.Store, moldb.Store], altloc: str) -> None:
    chunked, plain = stores
    a = chunked.select("resid 1-200", entries="1O1Z", altloc=altloc).rows()["1O1Z"]
    assert np.array_equal(a, plain.select("resid 1-200", entries="1O1Z", altloc=altloc).rows()["1O1Z"])


def _chunk_ids(store: moldb.Store, entry: str, group: str, chunks: Any) -> set[int]:
    parent = store._resolve(entry, None, None).blocks[group]
    man = manifest_cache(store._backend)[parent]
    return set(man.chunk_ids(parent, chunks)) if isinstance(man, Manifest) else set()  # a group without columns


def _zones(store: moldb.Store, entry: str, group: str) -> Any:
    return manifest_cache(store._backend)[store._resolve(entry, None, None).blocks[group]]


def test_row_subset_fetches_only_its_chunks(stores: tuple[moldb.Store, moldb.Store],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    chunked, _ = stores
    sel = chunked.select("chain B and resid 10-20", entries="5EIL")
    rows = sel.rows()["5EIL"]  # warm: the manifests are read once per store handle
    seen = block_read_spy(chunked, monkeypatch)
    assert np.array_equal(sel.rows()["5EIL"], rows)
    man = _zones(chunked, "5EIL", "topo")
    b = man.code("auth_asym_id", "B")
    allowed = [z for z in range(man.zbounds.size - 1) if b in man.sets["auth_asym_id"][z]
               and man.lo["auth_seq_id"][z] <= 20 and man.hi["auth_seq_id"][z] >= 10]
    want = np.unique(man.zone_chunks(np.array(allowed)))
    assert set(seen) == _chunk_ids(chunked, "5EIL", "topo", want)  # one query, only those topo chunks
    assert set(np.unique(np.searchsorted(man.bounds, rows, "right") - 1)) <= set(want.tolist())
    assert len(want) < man.n_chunks
    seen.clear()
    table = sel.to_arrow()  # output groups' chunks come with the same rows
    assert table.num_rows == rows.size
    groups = ("topo", "xyz", "adp", "aniso")
    assert set(seen) == set().union(*(_chunk_ids(chunked, "5EIL", g, want) for g in groups))


def test_zone_maps_prune_chunks(stores: tuple[moldb.Store, moldb.Store], monkeypatch: pytest.MonkeyPatch) -> None:
    chunked, _ = stores
    for q in ("resname FE", "resid 100000", "B_iso_or_equiv < -5"):
        chunked.select(q, entries="5EIL").rows()
    seen = block_read_spy(chunked, monkeypatch)
    assert chunked.select("resid 100000", entries="5EIL").rows() == {}
    assert chunked.select("B_iso_or_equiv < -5", entries="5EIL").rows() == {}
    assert seen == []  # nothing can match: no chunk read at all
    (_, rows, _), = execute(chunked, chunked.select("resname FE", entries="5EIL").plan)
    assert rows.tolist() == [7221]
    assert set(seen) == _chunk_ids(chunked, "5EIL", "topo", [7])  # the one chunk holding FE


def test_pocket_reads_only_chunks_near_the_ligand(stores: tuple[moldb.Store, moldb.Store],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    chunked, plain = stores
    sel = chunked.select("within 8 of resname GTP", entries="4GXY")
    sel.rows()
    seen = block_read_spy(chunked, monkeypatch)
    (_, rows, ctx), = execute(chunked, sel.plan)
    assert np.array_equal(rows, plain.select("within 8 of resname GTP", entries="4GXY").rows()["4GXY"])
    man = _zones(chunked, "4GXY", "xyz")
    xyz_all = _chunk_ids(chunked, "4GXY", "xyz", None)
    fetched = set(seen) & xyz_all
    holding = set(np.unique(np.searchsorted(man.bounds, ctx.known_rows, "right") - 1).tolist())
    assert fetched == _chunk_ids(chunked, "4GXY", "xyz", holding)  # the chunks of the grid's candidate rows
    assert fetched < xyz_all
    # the ligand came from the grid index's ligand table: no identifier chunk, no B-factor chunk was read
    assert not set(seen) & (_chunk_ids(chunked, "4GXY", "topo", None) | _chunk_ids(chunked, "4GXY", "adp", None))
    assert set(seen) <= xyz_all
    assert "xyz" not in ctx.blobs  # coordinates of candidate rows only, never a full decode


def test_streaming_a_chunked_entry_keeps_few_chunks(stores: tuple[moldb.Store, moldb.Store], tmp_path: Path) -> None:
    chunked, plain = stores
    got = list(chunked.select(entries="5EIL").batches(500, columns=["Cartn_x", "label_atom_id"]))
    assert [t.num_rows for t in got] == [500] * 14 + [327]
    want = plain.select(entries="5EIL").to_arrow(["Cartn_x", "label_atom_id"])
    assert pa.concat_tables(got).equals(want)
    structures = chunked.select("chain C and resid 5-9").structures()
    assert [s.atoms.num_rows for s in structures] == [len(plain.select("chain C and resid 5-9"))]
