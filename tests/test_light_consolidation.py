"""Automatic light consolidation bounds fragment counts and keeps every version exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiledb

import moldb
import moldb.storage.backend as backend_mod
from tests.conftest import data


def test_fragments_bounded_and_history_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_mod, "CONSOLIDATE_EVERY", 4)
    st = moldb.create(tmp_path / "s")
    versions = []
    for i in range(9):
        versions.append(st.deposit(data("mmcif/5zmz.cif.gz"), entry="5ZMZ", message=f"v{i + 1}"))
        st.ingest(data("mmcif/1pga.cif.gz"), entry=f"P{i}")
    uri = str(tmp_path / "s" / "versions")
    frags = tiledb.array_fragments(uri)  # the live fragments; consolidated ones are listed in to_vacuum
    assert len(frags.to_vacuum) >= 16  # 18 commits, consolidated every 4
    assert len(frags) <= 4
    fresh = moldb.open(tmp_path / "s")
    assert [h.version for h in fresh.history("5ZMZ")] == list(range(1, 10))
    for v in versions:
        assert fresh.get("5ZMZ", as_of=v.timestamp).version.version == v.version
        assert fresh.get("5ZMZ", version=v.version).version.message == v.message
    assert fresh.entries().num_rows == 10
