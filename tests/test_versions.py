"""Re-deposition basics: versions, shared unchanged blocks, as_of, tags, crash safety."""

from __future__ import annotations

import time
from pathlib import Path

import gemmi
import numpy as np
import pytest

import moldb
from tests._crash import crash_before_commit
from tests.conftest import data


def _bfactor_refit(src: Path, dst: Path, delta: float) -> None:
    """Write a copy of ``src`` whose B-factors differ by ``delta`` (a 'TLS re-fit')."""
    doc = gemmi.cif.read(str(src))
    block = doc.sole_block()
    col = block.find_values("_atom_site.B_iso_or_equiv")
    for i in range(len(col)):
        col[i] = f"{float(col[i]) + delta:.2f}"
    doc.write_file(str(dst))


def test_deposit_adds_versions_and_shares_unchanged_blocks(store: moldb.Store, tmp_path: Path) -> None:
    v1 = store.ingest(data("mmcif/5eil.cif.gz"))
    refit = tmp_path / "5eil_refit.cif"
    _bfactor_refit(data("mmcif/5eil.cif.gz"), refit, 1.5)
    size1 = sum(store.disk_usage().values())
    v2 = store.deposit(refit, entry="5EIL", message="TLS re-fit", author="ana")
    assert (v2.version, v2.parent, v2.author, v2.message) == (2, 1, "ana", "TLS re-fit")
    assert v2.timestamp > v1.timestamp and v2.content_hash != v1.content_hash
    assert v2.blocks["xyz"] == v1.blocks["xyz"] and v2.blocks["topo"] == v1.blocks["topo"]
    assert v2.blocks["adp"] != v1.blocks["adp"]
    growth = sum(store.disk_usage().values()) - size1
    assert growth < 0.5 * size1  # only the ADP block (and the versions cell) were written
    b1 = store.get("5EIL", version=1).atoms.column("B_iso_or_equiv").to_numpy()
    b2 = store.get("5EIL").atoms.column("B_iso_or_equiv").to_numpy()
    np.testing.assert_allclose(b2 - b1, 1.5, atol=1e-9)
    assert [h.version for h in store.history("5EIL")] == [1, 2]


def test_as_of_and_tags(store: moldb.Store, tmp_path: Path) -> None:
    v1 = store.ingest(data("mmcif/1o1z.cif.gz"))
    time.sleep(0.01)
    refit = tmp_path / "1o1z_refit.cif"
    _bfactor_refit(data("mmcif/1o1z.cif.gz"), refit, 2.0)
    v2 = store.deposit(refit, entry="1O1Z")
    assert store.get("1O1Z", as_of=v1.timestamp).version.version == 1
    assert store.get("1O1Z", as_of=v2.timestamp).version.version == 2
    with pytest.raises(moldb.EntryNotFoundError, match="at that time"):
        store.get("1O1Z", as_of=v1.timestamp - 1)
    store.tag("1O1Z", 1, "submitted")
    assert store.get("1O1Z", version="submitted").version.version == 1
    assert store.tags("1O1Z") == {"submitted": 1}
    with pytest.raises(moldb.EntryNotFoundError, match="no tag"):
        store.get("1O1Z", version="nope")
    old = moldb.open(store.uri, as_of=v1.timestamp)
    assert old.get("1O1Z").version.version == 1
    assert old.entries().column("version").to_pylist() == [1]
    with pytest.raises(moldb.ValidationError, match="read-only"):
        old.ingest(data("mmcif/5eil.cif.gz"))


def test_identical_redeposit_shares_every_block(store: moldb.Store) -> None:
    v1 = store.ingest(data("mmcif/1o1z.cif.gz"))
    v2 = store.deposit(data("mmcif/1o1z.cif.gz"), entry="1O1Z")
    assert v2.blocks == v1.blocks and v2.content_hash == v1.content_hash and v2.version == 2


def test_killed_ingest_leaves_no_partial_version(tmp_path: Path) -> None:
    uri = tmp_path / "s"
    st = moldb.create(uri)
    st.ingest(data("mmcif/1o1z.cif.gz"))
    # A child that dies (SIGKILL) after writing atom blocks but before the versions cell lands.
    crash_before_commit(uri, data("mmcif/5eil.cif.gz"), call="ingest", entry=None)
    st2 = moldb.open(uri)
    assert st2.entries().column("entry").to_pylist() == ["1O1Z"]
    assert "5EIL" not in st2
    assert st2.get("1O1Z").atoms.num_rows == 2302
    v = st2.ingest(data("mmcif/5eil.cif.gz"))  # the next ingest succeeds; the lock died with the child
    assert v.version == 1 and st2.get("5EIL").atoms.num_rows == 7327


def test_a_reader_finds_versions_another_handle_commits(store: moldb.Store, tmp_path: Path) -> None:
    reader = moldb.open(store.uri)
    store.ingest(data("mmcif/1o1z.cif.gz"))
    assert reader.get("1O1Z").version.version == 1  # its entry → rows map is rebuilt after the commit
    refit = tmp_path / "1o1z_refit.cif"
    _bfactor_refit(data("mmcif/1o1z.cif.gz"), refit, 2.0)
    store.deposit(refit, entry="1O1Z")
    store.ingest(data("mmcif/5eil.cif.gz"))
    assert reader.get("1O1Z").version.version == 2 and reader.get("5EIL").version.version == 1
    assert reader.get("1o1z", version=1).version.version == 1 and reader.get("1O1Z", version="2").version.parent == 1
    b1 = reader.get("1O1Z", version=1).atoms.column("B_iso_or_equiv").to_numpy()
    np.testing.assert_allclose(reader.get("1O1Z").atoms.column("B_iso_or_equiv").to_numpy() - b1, 2.0, atol=1e-9)
    with pytest.raises(moldb.EntryNotFoundError, match="has no version 3; it has versions 1, 2"):
        reader.get("1O1Z", version=3)
    with pytest.raises(moldb.EntryNotFoundError, match="entry 4ZXB is not in the store"):
        reader.get("4ZXB")
