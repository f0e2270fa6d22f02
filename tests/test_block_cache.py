"""The process-wide block cache: byte-bounded LRU, never stale (blocks are immutable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import moldb
from moldb._lru import ByteLRU
from moldb.storage.block_cache import shared_cache
from tests.cif_edits import edit, shift_b
from tests.conftest import data


def test_lru_is_bounded_in_bytes() -> None:
    c = ByteLRU(1000)
    c.put(("s", 1), b"a" * 200)
    c.put(("s", 2), b"b" * 200)
    assert c.get(("s", 1)) == b"a" * 200  # 1 is now most recent
    for k in range(3, 7):
        c.put(("s", k), b"c" * 200)
    assert c.nbytes <= 1000 and c.get(("s", 2)) is None and c.get(("s", 1)) is not None
    c.put(("s", 99), b"x" * 251)  # over a quarter of the capacity: not cached
    assert c.get(("s", 99)) is None
    off = ByteLRU(0)
    off.put(("s", 1), b"a")
    assert off.get(("s", 1)) is None


def test_repeated_reads_hit_the_cache_and_new_versions_read_fresh(store: moldb.Store, tmp_path: Path) -> None:
    src = data("mmcif/1o1z.cif.gz")
    store.ingest(src)
    a1 = store.get("1O1Z").atoms
    hits = shared_cache.hits
    a2 = store.get("1O1Z").atoms
    assert shared_cache.hits > hits and a1.equals(a2)
    store.deposit(edit(src, tmp_path / "b.cif", shift_b(2.0)), entry="1O1Z")
    b1 = store.get("1O1Z", version=1).atoms.column("B_iso_or_equiv").to_numpy()
    b2 = store.get("1O1Z").atoms.column("B_iso_or_equiv").to_numpy()
    np.testing.assert_allclose(b2 - b1, 2.0, atol=1e-6)


def test_a_store_recreated_at_the_same_path_never_sees_old_blobs(tmp_path: Path) -> None:
    import shutil

    uri = tmp_path / "s"
    s = moldb.create(uri)
    s.ingest(data("mmcif/1o1z.cif.gz"), entry="X1")
    s.get("X1")
    s.close()
    shutil.rmtree(uri)
    s = moldb.create(uri)
    s.ingest(data("mmcif/3o5r.cif.gz"), entry="X1")
    assert s.get("X1").atoms.num_rows == 1470
