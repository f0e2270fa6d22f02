"""``maintain()`` on stores whose ``blocks`` cells are larger than TileDB's consolidation copy buffers.

With chunking off (``MOLDB_CHUNK_ROWS=0``, the single-blob layout) a large entry's group is one
cell: BIG8's coordinates are a 10.3 MB cell, and consolidation of a small array gets ~10.6 MB of
copy buffers (a sixth of a 64 MB budget). TileDB then stopped with "Consolidation read 0 cells,
no progress can be made" and left an uncommitted fragment behind (moldb.storage.consolidate).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiledb

import moldb
from moldb.storage import consolidate, maintenance
from tests.conftest import data


def _uncommitted(store: moldb.Store) -> list[str]:
    """Fragment directories of ``blocks`` that TileDB does not list (no commit)."""
    root = Path(store.uri) / "blocks"
    committed = {f.uri.rstrip("/").rsplit("/", 1)[-1] for f in tiledb.array_fragments(str(root))}
    return sorted(p.name for p in (root / "__fragments").iterdir() if p.name not in committed)


def _spy_budgets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    budgets: list[int] = []
    real = tiledb.consolidate

    def spy(uri: str, config: Any = None, ctx: Any = None, **kw: Any) -> Any:
        if config is not None and config["sm.consolidation.mode"] == "fragments" and uri.endswith("blocks"):
            budgets.append(int(config["sm.mem.total_budget"]))
        return real(uri, config=config, ctx=ctx, **kw)

    monkeypatch.setattr(consolidate.tiledb, "consolidate", spy)
    return budgets


def test_maintain_copies_a_cell_of_12_mb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLDB_CHUNK_ROWS", "0")
    st = moldb.create(tmp_path / "s")
    assert st._backend.chunk_rows == 0
    v = st.ingest(data("mmcif/1o1z.cif.gz"))
    atoms = st.get(v.entry).atoms
    big = np.random.default_rng(7).integers(0, 256, 12 << 20, dtype=np.uint8).tobytes()  # incompressible
    backend = st._backend
    with backend.writing() as ts:  # a block no version references yet: young, so maintain keeps (copies) it
        backend.write_blocks(ts, "BIG", [(7, "xyz", 1, hashlib.sha256(big).hexdigest(), big)])
    budgets = _spy_budgets(monkeypatch)
    report = st.maintain()
    assert report["arrays"]["blocks"]["fragments_after"] == 1 < report["arrays"]["blocks"]["fragments_before"]
    assert [o["block"] for o in report["orphans"]["young"]] == [7]
    assert len(budgets) == 2 and budgets[1] == consolidate.GROWTH * budgets[0]  # the first try had no room
    assert _uncommitted(st) == []  # the fragment the failed try began was removed
    st.close()
    st = moldb.open(tmp_path / "s")
    assert st._backend.read_blocks([7])[7]["data"] == big
    assert st.get(v.entry).atoms.equals(atoms)


def test_maintain_a_large_unchunked_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4V5A in the single-blob layout (its coordinates: one 1.3 MB cell), at a 16th of the real budget
    — the proportions of BIG8's 10.3 MB cell against the 64 MB floor."""
    monkeypatch.setenv("MOLDB_CHUNK_ROWS", "0")
    st = moldb.create(tmp_path / "s")
    big = st.ingest(data("mmtf/4V5A.mmtf"))
    small = st.ingest(data("mmcif/1o1z.cif.gz"))
    rec = st._resolve(big.entry, None, None)
    cell = len(st._backend.read_blocks([rec.blocks["xyz"]])[rec.blocks["xyz"]]["data"])
    assert cell > 1 << 20
    before = {e: st.get(e).atoms for e in (big.entry, small.entry)}
    rows = st.select("within 8 of (resname ZN and chain AD)", entries=big.entry).rows()
    monkeypatch.setattr(maintenance, "consolidation_budget", lambda nbytes: 4 << 20)
    budgets = _spy_budgets(monkeypatch)
    report = st.maintain(orphan_grace_s=0)
    assert budgets[0] == 4 << 20 and budgets[-1] > budgets[0]
    assert report["arrays"]["blocks"]["fragments_after"] == 1
    assert _uncommitted(st) == []
    st.close()
    st = moldb.open(tmp_path / "s")
    assert all(st.get(e).atoms.equals(t) for e, t in before.items())
    after = st.select("within 8 of (resname ZN and chain AD)", entries=big.entry).rows()
    assert np.array_equal(after[big.entry], rows[big.entry])
