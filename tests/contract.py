"""The store contract: one test class every moldb backend must pass.

Modelled on zarr-python v3's store tests: a backend's test module subclasses
:class:`StoreContract` and provides a ``contract_store`` fixture that yields a
fresh, empty, writable store (a local :class:`moldb.Store`, a store on a
loopback S3-compatible server, or a :func:`moldb.connect` remote client).
Every test here runs unchanged against each of them, so "same interface" is
checked, not claimed.

Test modules using it: ``tests/test_contract_local.py`` and the S3 and
remote-service modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gemmi
import numpy as np
import pyarrow as pa
import pytest

import moldb
from tests.cif_edits import edit, shift_b
from tests.conftest import data

#: 1O1Z (PDB): 2,302 atom-site rows, 1 model, one TLS group, 96 altloc rows.
ENTRY = "1O1Z"
SRC = "mmcif/1o1z.cif.gz"


def _gemmi_atoms(path: Path) -> tuple[int, np.ndarray]:
    """Atom count and coordinates of every atom of ``path`` read independently with gemmi."""
    st = gemmi.read_structure(str(path))
    xyz = [a.pos.tolist() for m in st for ch in m for r in ch for a in r]
    return len(xyz), np.asarray(xyz)


class StoreContract:
    """Behaviour every store (local, S3, remote) must have.

    Subclasses provide a ``contract_store`` fixture: a fresh, empty store.
    """

    # -- empty store ------------------------------------------------------------------------------
    def test_empty_store_lists_nothing(self, contract_store: Any) -> None:
        assert len(contract_store) == 0
        assert contract_store.entries().num_rows == 0
        assert ENTRY not in contract_store

    def test_missing_entry_is_a_clear_error(self, contract_store: Any) -> None:
        with pytest.raises(moldb.EntryNotFoundError, match="1ABC") as exc:
            contract_store.get("1ABC")
        assert isinstance(exc.value, KeyError)
        with pytest.raises(moldb.EntryNotFoundError):
            contract_store.history("1ABC")

    # -- ingest and read ------------------------------------------------------------------------------
    def test_ingest_then_get_returns_the_file_values(self, contract_store: Any) -> None:
        src = data(SRC)
        v = contract_store.ingest(src)
        assert (v.entry, v.version, v.parent) == (ENTRY, 1, 0)
        assert v.n_atoms == 2302 and v.n_models == 1
        assert ENTRY in contract_store and len(contract_store) == 1
        s = contract_store.get(ENTRY)
        assert s.version.version == 1 and s.version.content_hash == v.content_hash
        atoms = s.atoms
        assert isinstance(atoms, pa.Table) and atoms.num_rows == 2302
        n, xyz = _gemmi_atoms(src)
        got = np.column_stack([atoms.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
        assert n == atoms.num_rows
        np.testing.assert_allclose(np.sort(got, axis=0), np.sort(xyz, axis=0), atol=5e-4)
        # nulls stay nulls: 1O1Z has no insertion codes ('?') and altlocs only on 96 rows ('.')
        assert atoms.column("label_alt_id").null_count == 2302 - 96

    def test_get_columns_subset(self, contract_store: Any) -> None:
        contract_store.ingest(data(SRC))
        s = contract_store.get(ENTRY, columns=["label_atom_id", "B_iso_or_equiv"])
        assert set(s.atoms.column_names) >= {"label_atom_id", "B_iso_or_equiv"}
        assert "Cartn_x" not in s.atoms.column_names

    def test_duplicate_ingest_is_refused_and_store_unchanged(self, contract_store: Any) -> None:
        v = contract_store.ingest(data(SRC))
        with pytest.raises(moldb.DuplicateEntryError, match=ENTRY):
            contract_store.ingest(data(SRC))
        assert [h.version for h in contract_store.history(ENTRY)] == [1]
        assert contract_store.get(ENTRY).version.content_hash == v.content_hash

    def test_garbage_upload_is_a_parse_error_and_writes_nothing(self, contract_store: Any, tmp_path: Path) -> None:
        bad = tmp_path / "broken.cif"
        bad.write_text("data_X\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1\n")  # odd number of values
        with pytest.raises(moldb.MoldbError, match=r"broken\.cif"):
            contract_store.ingest(bad)
        assert len(contract_store) == 0

    # -- versions ----------------------------------------------------------------------------------
    def test_deposit_history_as_of_and_diff(self, contract_store: Any, tmp_path: Path) -> None:
        v1 = contract_store.ingest(data(SRC))
        v2_src = edit(data(SRC), tmp_path / "1o1z_v2.cif", shift_b(1.5))
        v2 = contract_store.deposit(v2_src, entry=ENTRY, message="re-refined B")
        assert (v2.version, v2.parent) == (2, 1) and v2.timestamp > v1.timestamp
        hist = contract_store.history(ENTRY)
        assert [h.version for h in hist] == [1, 2]
        assert hist[1].message == "re-refined B"
        b1 = contract_store.get(ENTRY, version=1).atoms.column("B_iso_or_equiv").to_numpy()
        b2 = contract_store.get(ENTRY).atoms.column("B_iso_or_equiv").to_numpy()
        np.testing.assert_allclose(b2 - b1, 1.5, atol=1e-6)
        assert contract_store.get(ENTRY, as_of=v1.timestamp).version.version == 1
        d = contract_store.diff(ENTRY, 1, 2).as_dict()
        assert "B_iso_or_equiv" in str(d)

    def test_tags_name_versions(self, contract_store: Any) -> None:
        contract_store.ingest(data(SRC))
        contract_store.tag(ENTRY, 1, "published")
        assert contract_store.tags(ENTRY) == {"published": 1}
        assert contract_store.get(ENTRY, version="published").version.version == 1
        with pytest.raises(moldb.EntryNotFoundError, match="nope"):
            contract_store.get(ENTRY, version="nope")

    # -- queries ------------------------------------------------------------------------------------
    def test_select_returns_arrow_rows(self, contract_store: Any) -> None:
        contract_store.ingest(data(SRC))
        atoms = contract_store.get(ENTRY).atoms
        expected = int(np.sum(np.asarray(atoms.column("label_atom_id").to_pylist(), dtype=object) == "CA"))
        t = contract_store.select("name CA", entries=ENTRY).to_arrow()
        assert isinstance(t, pa.Table) and t.num_rows == expected > 0
        assert set(t.column("label_atom_id").to_pylist()) == {"CA"}

    def test_select_follows_new_versions(self, contract_store: Any, tmp_path: Path) -> None:
        contract_store.ingest(data(SRC))
        b1 = contract_store.select("name CA", entries=ENTRY).to_arrow().column("B_iso_or_equiv").to_numpy()
        again = contract_store.select("name CA", entries=ENTRY).to_arrow().column("B_iso_or_equiv").to_numpy()
        np.testing.assert_array_equal(b1, again)
        contract_store.deposit(edit(data(SRC), tmp_path / "v2.cif", shift_b(2.0)), entry=ENTRY)
        b2 = contract_store.select("name CA", entries=ENTRY).to_arrow().column("B_iso_or_equiv").to_numpy()
        np.testing.assert_allclose(b2 - b1, 2.0, atol=1e-6)  # a cached result never outlives its version

    def test_bad_selection_is_a_clear_error(self, contract_store: Any) -> None:
        contract_store.ingest(data(SRC))
        with pytest.raises(moldb.MoldbError, match="frobnicate"):
            contract_store.select("frobnicate 3", entries=ENTRY).to_arrow()

    def test_entries_table_has_one_row_per_entry(self, contract_store: Any) -> None:
        contract_store.ingest(data(SRC))
        contract_store.ingest(data("mmcif/3o5r.cif.gz"))
        t = contract_store.entries()
        assert sorted(t.column("entry").to_pylist()) == ["1O1Z", "3O5R"]
        assert {"entry", "version", "title", "n_atoms"} <= set(t.column_names)

    # -- export -------------------------------------------------------------------------------------
    def test_export_reads_back_in_gemmi(self, contract_store: Any, tmp_path: Path) -> None:
        contract_store.ingest(data(SRC))
        out = contract_store.export(ENTRY, tmp_path / "out.cif")
        n, _ = _gemmi_atoms(Path(out))
        assert n == 2302
