"""Store round trips on real files: values, nulls, failure paths."""

from __future__ import annotations

import gzip
from pathlib import Path

import gemmi
import numpy as np
import pyarrow.compute as pc
import pytest

import moldb
from tests.conftest import data


def _gemmi_atom_site(path: Path) -> dict[str, list[str]]:
    block = gemmi.cif.read(str(path)).sole_block()
    return block.get_mmcif_category("_atom_site.", raw=True)


def test_create_open_and_missing(tmp_path: Path) -> None:
    moldb.create(tmp_path / "s")
    with pytest.raises(moldb.StoreExistsError):
        moldb.create(tmp_path / "s")
    with pytest.raises(moldb.StoreNotFoundError, match="moldb init"):
        moldb.open(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError):  # builtin base class works too
        moldb.open(tmp_path / "nothing-here")


def test_ingest_returns_what_was_committed(store: moldb.Store) -> None:
    v = store.ingest(data("mmcif/1o1z.cif.gz"))
    assert (v.entry, v.version, v.parent, v.n_atoms, v.n_models) == ("1O1Z", 1, 0, 2302, 1)
    assert v.timestamp > 1_700_000_000_000
    assert v.summary["tls_groups"] == 1
    assert v.summary["altlocs"] == ["A", "B"]
    assert v.summary["resolution"] == pytest.approx(1.6)


@pytest.mark.parametrize("rel", ["mmcif/5eil.cif.gz", "mmcif/2axd.cif.gz", "mmcif/1o1z.cif.gz"])
def test_atoms_equal_source_values(store: moldb.Store, rel: str) -> None:
    path = data(rel)
    v = store.ingest(path)
    atoms = store.get(v.entry).atoms
    src = _gemmi_atom_site(path)
    assert atoms.num_rows == len(src["id"])
    for col in ("Cartn_x", "Cartn_y", "Cartn_z", "B_iso_or_equiv", "occupancy"):
        np.testing.assert_array_equal(atoms.column(col).to_numpy(), np.array(src[col], dtype=float))
    np.testing.assert_array_equal(atoms.column("id").to_numpy(), np.array(src["id"], dtype=int))
    names = atoms.column("label_atom_id").cast("string").to_pylist()
    assert names == [gemmi.cif.as_string(x) for x in src["label_atom_id"]]
    chains = atoms.column("auth_asym_id").cast("string").to_pylist()
    assert chains == src["auth_asym_id"]


def test_nulls_keep_dot_and_question_apart(store: moldb.Store) -> None:
    store.ingest(data("mmcif/1o1z.cif.gz"))
    s = store.get("1O1Z")
    src = _gemmi_atom_site(data("mmcif/1o1z.cif.gz"))
    seq = s.atoms.column("label_seq_id")
    assert seq.null_count == src["label_seq_id"].count(".")  # waters/ligands: '.'
    mask = s.atom_masks["label_seq_id"]
    assert set(np.unique(mask)) <= {0, 1}
    assert (mask == 1).sum() == src["label_seq_id"].count(".")
    charge = s.atom_masks["pdbx_formal_charge"]
    assert (charge == 2).sum() == src["pdbx_formal_charge"].count("?")


def test_anisotropic_adps_attached_by_atom_id(store: moldb.Store) -> None:
    store.ingest(data("mmcif/3o5r.cif.gz"))
    atoms = store.get("3O5R").atoms
    aniso = gemmi.cif.read(str(data("mmcif/3o5r.cif.gz"))).sole_block().get_mmcif_category(
        "_atom_site_anisotrop.")
    ids = atoms.column("id").to_numpy()
    first = int(aniso["id"][0])
    row = int(np.flatnonzero(ids == first)[0])
    assert atoms.column("U11")[row].as_py() == float(aniso["U[1][1]"][0])
    assert atoms.column("U23")[row].as_py() == float(aniso["U[2][3]"][0])
    assert atoms.column("U11").null_count == atoms.num_rows - len(aniso["id"])


def test_categories_are_queryable_by_name(store: moldb.Store) -> None:
    store.ingest(data("mmcif/5eil.cif.gz"))
    s = store.get("5EIL")
    block = gemmi.cif.read(str(data("mmcif/5eil.cif.gz"))).sole_block()
    tls = block.get_mmcif_category("_pdbx_refine_tls.")
    got = s.category("pdbx_refine_tls")
    assert got.num_rows == 29
    assert got.column("T[1][1]").to_pylist() == tls["T[1][1]"]
    assert s.category("_refine.").column("ls_d_res_high").to_pylist() == ["2.25"]
    with pytest.raises(KeyError, match="no category"):
        s.category("no_such_category")


def test_multi_model_with_unequal_atom_counts(store: moldb.Store) -> None:
    v = store.ingest(data("mmcif/2axd.cif.gz"))
    atoms = store.get(v.entry).atoms
    models = atoms.column("pdbx_PDB_model_num").to_numpy()
    counts = np.bincount(models)[1:]
    assert v.n_models == 12 and len(set(counts.tolist())) > 1
    assert atoms.num_rows == 15323


@pytest.mark.parametrize("rel", ["bcif/5eil.bcif", "mmtf/1AA6.mmtf", "pdb/1o1z.pdb.gz"])
def test_other_formats_ingest(store: moldb.Store, rel: str) -> None:
    v = store.ingest(data(rel))
    s = store.get(v.entry)
    assert s.atoms.num_rows == v.n_atoms > 0
    assert np.isfinite(s.atoms.column("Cartn_x").to_numpy()).all()


def test_bcif_and_mmcif_twins_agree(tmp_path: Path) -> None:
    st = moldb.create(tmp_path / "s")
    a = st.get(st.ingest(data("mmcif/5eil.cif.gz")).entry).atoms
    b = st.get(st.ingest(data("bcif/5eil.bcif"), entry="5EIL_BCIF").entry).atoms
    for col in ("Cartn_x", "B_iso_or_equiv", "U11", "label_seq_id"):
        np.testing.assert_array_equal(a.column(col).to_numpy(zero_copy_only=False),
                                      b.column(col).to_numpy(zero_copy_only=False))
    assert pc.all(pc.equal(a.column("label_atom_id").cast("string"),
                           b.column("label_atom_id").cast("string"))).as_py()


def test_duplicate_entry_is_refused_and_store_unchanged(store: moldb.Store) -> None:
    store.ingest(data("mmcif/1o1z.cif.gz"))
    with pytest.raises(moldb.DuplicateEntryError, match="deposit"):
        store.ingest(data("bcif/1o1z.bcif"))
    assert store.history("1O1Z")[-1].version == 1
    assert store.get("1O1Z").version.source["format"] == "mmcif"


def test_bad_inputs_leave_store_intact(store: moldb.Store, tmp_path: Path) -> None:
    store.ingest(data("mmcif/1o1z.cif.gz"))
    before = store.disk_usage()
    garbage = tmp_path / "garbage.cif"
    garbage.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(moldb.UnsupportedFormatError, match=r"garbage\.cif"):
        store.ingest(garbage)
    raw = gzip.decompress(data("mmcif/5eil.cif.gz").read_bytes())
    truncated = tmp_path / "5eil_truncated.cif"
    truncated.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(moldb.ParseError, match="5eil_truncated"):
        store.ingest(truncated)
    bad_gz = tmp_path / "broken.cif.gz"
    bad_gz.write_bytes(data("mmcif/5eil.cif.gz").read_bytes()[:5000])
    with pytest.raises(moldb.ParseError, match=r"broken\.cif\.gz"):
        store.ingest(bad_gz)
    empty = tmp_path / "empty.pdb"
    empty.write_text("")
    with pytest.raises(moldb.ParseError, match="empty"):
        store.ingest(empty)
    with pytest.raises(moldb.ValidationError, match="entry id"):
        store.ingest(data("mmcif/5eil.cif.gz"), entry="../../etc")
    assert store.disk_usage() == before
    assert store.entries().column("entry").to_pylist() == ["1O1Z"]


def test_missing_entry_and_version(store: moldb.Store) -> None:
    with pytest.raises(moldb.EntryNotFoundError, match="moldb ls"):
        store.get("9ZZZ")
    with pytest.raises(KeyError):
        store.get("9ZZZ")
    store.ingest(data("mmcif/1o1z.cif.gz"))
    with pytest.raises(moldb.EntryNotFoundError, match="no version 7"):
        store.get("1O1Z", version=7)


def test_entries_table(store: moldb.Store) -> None:
    store.ingest(data("mmcif/1o1z.cif.gz"))
    store.ingest(data("bcif/1l2y.bcif"))
    tab = store.entries().to_pylist()
    by = {r["entry"]: r for r in tab}
    assert by["1L2Y"]["n_models"] == 38 and by["1L2Y"]["resolution"] is None
    assert by["1O1Z"]["method"] == "X-RAY DIFFRACTION" and by["1O1Z"]["n_atoms"] == 2302
    assert len(store) == 2 and "1o1z" in store


def test_structure_converts_to_gemmi_biotite_and_files(store: moldb.Store, tmp_path: Path) -> None:
    import biotite.structure.io.pdbx as pdbx

    store.ingest(data("mmcif/1o1z.cif.gz"))
    s = store.get("1O1Z")
    st = s.to_gemmi()
    assert st[0].count_atom_sites() == 2302 and st.cell.a == pytest.approx(132.41)
    arr = s.to_biotite(model=1)  # biotite's default keeps the first altloc only
    alt = s.atoms.column("label_alt_id").cast("string").to_pylist()
    assert arr.array_length() == 2302 - sum(a not in (None, "A") for a in alt) == 2254
    out = s.write(tmp_path / "x.bcif")
    back = pdbx.get_structure(pdbx.BinaryCIFFile.read(out), model=1, altloc="all")
    np.testing.assert_array_equal(back.coord[:, 0], s.atoms.column("Cartn_x").to_numpy().astype(np.float32))
