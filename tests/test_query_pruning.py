"""Residue-name and element predicates prune entries from the versions index before any block is read."""

from __future__ import annotations

import pytest

import moldb
from tests.conftest import block_read_spy, data


def test_residue_and_element_predicates_read_only_matching_entries(store: moldb.Store,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = store.ingest(data("mmcif/1o1z.cif.gz"))  # no FK5, has NA
    v2 = store.ingest(data("mmcif/3o5r.cif.gz"))  # FK5 ligand
    assert "FK5" in v2.summary["residues"] and "FK5" not in v1.summary["residues"]
    seen = block_read_spy(store, monkeypatch)
    sel = store.select(where="label_comp_id == 'FK5'")
    assert sel.entries() == ["3O5R"]
    assert not seen  # one residue-name test: the version summaries answer entries(), no block is read
    assert sorted(sel.rows()) == ["3O5R"] and seen and not set(seen) & set(v1.blocks.values())  # never 1O1Z's
    seen.clear()
    assert store.select(residues="FK5").entries() == ["3O5R"]
    assert not set(seen) & set(v1.blocks.values())
    seen.clear()
    n = len(store.select(where="type_symbol == 'NA' and B_iso_or_equiv < 100"))
    assert n == sum(1 for e in store.get("1O1Z").atoms.column("type_symbol").to_pylist() if e == "NA") > 0
    assert not set(seen) & set(v2.blocks.values())
