"""``maintain()`` keeps working after ``purge_versions`` (TileDB delete commits, TileDB issue #5771).

TileDB's commits consolidation copies a ``.del`` commit into a ``.con`` file and vacuum then
removes the ``.del``; the next commits consolidation failed with "Cannot get file size of
... .del". moldb leaves the commit files of an array with delete commits unconsolidated
(:mod:`moldb.storage.commits_guard`).
"""

from __future__ import annotations

from pathlib import Path

import tiledb

import moldb
from moldb.storage.commits_guard import has_delete_commits
from tests.conftest import data


def test_repeated_maintain_after_purges(tmp_path: Path) -> None:
    st = moldb.create(tmp_path / "s")
    st.ingest(data("mmcif/1o1z.cif.gz"))
    st.deposit(data("mmcif/1aki.cif.gz"), entry="1O1Z")
    st.deposit(data("mmcif/1o1z.cif.gz"), entry="1O1Z")
    versions = str(tmp_path / "s" / "versions")
    assert not has_delete_commits(versions, tiledb.Ctx())
    st.purge_versions("1O1Z", keep_last=1)
    assert has_delete_commits(versions, tiledb.Ctx())
    latest = st.get("1O1Z").atoms
    for _ in range(3):  # the second one used to fail
        st.maintain(orphan_grace_s=0)
        assert st.get("1O1Z").atoms.equals(latest)
    assert [h.version for h in st.history("1O1Z")] == [3]
    st.deposit(data("mmcif/1aki.cif.gz"), entry="1O1Z")
    st.purge_versions("1O1Z", keep_last=1)
    st.maintain(orphan_grace_s=0)
    st.maintain(orphan_grace_s=0)
    reopened = moldb.open(tmp_path / "s")
    assert [h.version for h in reopened.history("1O1Z")] == [4]
    assert len(reopened.get("1O1Z").atoms) == 1079


def test_guard_sees_a_delete_folded_into_a_con_file(tmp_path: Path) -> None:
    """A store already maintained by an older moldb (the .del inside a .con, the file vacuumed)."""
    uri = str(tmp_path / "a")
    dom = tiledb.Domain(tiledb.Dim("d", domain=(0, 99), tile=10, dtype="int64"))
    tiledb.Array.create(uri, tiledb.ArraySchema(domain=dom, sparse=True, attrs=[tiledb.Attr("v", dtype="int64")]))
    with tiledb.open(uri, "w", timestamp=1) as a:
        a[[1, 2, 3]] = {"v": [1, 2, 3]}
    assert not has_delete_commits(uri, tiledb.Ctx())
    with tiledb.open(uri, "d", timestamp=2) as a:
        a.query(cond="v == 2").submit()
    tiledb.consolidate(uri, config=tiledb.Config({"sm.consolidation.mode": "commits"}))
    tiledb.vacuum(uri, config=tiledb.Config({"sm.vacuum.mode": "commits"}))
    names = [p.name for p in (Path(uri) / "__commits").iterdir()]
    assert any(n.endswith(".con") for n in names) and not any(n.endswith(".del") for n in names)
    assert has_delete_commits(uri, tiledb.Ctx())
