"""Versions written at fixed timestamps 1, 10, 20 (as TileDB-SOMA's tests do) read back by time."""

from __future__ import annotations

from pathlib import Path

import pytest

import moldb
from tests.cif_edits import edit, shift_b
from tests.conftest import data


def test_versions_at_fixed_timestamps_survive_maintenance(tmp_path: Path) -> None:
    st = moldb.create(tmp_path / "s")
    st._backend.fixed_timestamps = iter([1, 10, 20, 30])  # 30: maintain() commits under the lock too
    files = [data("mmcif/1o1z.cif.gz")]
    for k, delta in ((1, 1.0), (2, 2.0)):
        out = tmp_path / f"v{k}.cif"
        edit(data("mmcif/1o1z.cif.gz"), out, shift_b(delta))
        files.append(out)
    ledger = {}
    for f in files:
        v = st.deposit(f, entry="1O1Z")
        ledger[v.timestamp] = st.get("1O1Z", version=v.version).atoms
    assert [h.timestamp for h in st.history("1O1Z")] == [1, 10, 20]
    for when, expect in [(1, 1), (5, 1), (10, 2), (19, 2), (20, 3), (10**13, 3)]:
        assert st.get("1O1Z", as_of=when).version.version == expect
    with pytest.raises(moldb.EntryNotFoundError):
        st.get("1O1Z", as_of=0)
    st.maintain()
    fresh = moldb.open(tmp_path / "s")
    for ts, atoms in ledger.items():
        assert fresh.get("1O1Z", as_of=ts).atoms.equals(atoms)
        assert moldb.open(tmp_path / "s", as_of=ts).get("1O1Z").atoms.equals(atoms)
    st._backend.fixed_timestamps = iter([15])
    with pytest.raises(ValueError, match="not after"):
        st.deposit(files[0], entry="1O1Z")
