"""Round trips through the exporters of :mod:`moldb.export` on real files.

mmCIF sources must come back category for category, item for item and value for
value (compared after ``gemmi.cif.as_string``; ``.`` and ``?`` compared as raw
tokens). BinaryCIF and PDB sources, which are not text, are compared with their
decoded (biotite) or converted (gemmi) form.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import biotite.structure.io.pdbx as pdbx
import gemmi
import numpy as np
import pyarrow as pa
import pytest

from moldb.errors import ValidationError
from moldb.export import (
    to_biotite,
    to_cif_document,
    to_gemmi,
    write,
    write_bcif,
    write_mmcif,
    write_pdb,
)
from moldb.export.cif import column_tokens, format_fixed
from moldb.ingest.formats import read_file
from moldb.schema.parsed import ParsedEntry

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

MMCIF_SOURCES = [
    "mmcif/1o1z.cif.gz",
    "mmcif/5eil.cif.gz",
    "mmcif/3o5r.cif.gz",
    "mmcif/1gya.cif.gz",
    "mmcif/2axd.cif.gz",
    "mmcif/1xnr.cif.gz",
    "mmcif/4zxb.cif.gz",
    "mmcif/7gsa.cif.gz",
    "mmcif/edge_altloc_biotite.cif",
    "modelcif/AF-O78126-F1-model_v4.cif.gz",
    "ihm/PDBDEV_00000004.cif.gz",
    "mmcif/3dg1_final.cif.gz",  # text field whose value starts with a newline
]
BCIF_SOURCES = ["bcif/5eil.bcif", "bcif/1crr.bcif"]
PDB_SOURCES = ["pdb/5eil.pdb.gz"]
NULLS = {".": 1, "?": 2}


def data(rel: str) -> Path:
    p = DATA / rel
    if not p.exists():
        pytest.fail(f"shared corpus file missing: {p}")
    return p


_CACHE: dict[str, ParsedEntry] = {}


def entry(rel: str) -> ParsedEntry:
    """Parsed corpus file (cached; tests never modify entries)."""
    if rel not in _CACHE:
        _CACHE[rel] = read_file(data(rel))
    return _CACHE[rel]


def categories(block: Any) -> dict[str, dict[str, list[str]]]:
    """Raw tokens of every mmCIF category of a gemmi block, in block order."""
    return {p[1:-1]: block.get_mmcif_category(p, raw=True) for p in block.get_mmcif_category_names()}


def token(raw: str) -> tuple[str, str]:
    """Comparable form of a raw CIF token: nulls by kind, values unquoted."""
    return ("null", raw) if raw in NULLS else ("value", gemmi.cif.as_string(raw))


def assert_same_values(src: dict[str, list[str]], out: dict[str, list[str]], where: str,
                       numeric: bool = False) -> None:
    assert list(out) == list(src), f"{where}: item names/order differ"
    for item, values in src.items():
        got = out[item]
        assert len(got) == len(values), f"{where}.{item}: {len(got)} rows, source has {len(values)}"
        a = [token(v) for v in values]
        b = [token(v) for v in got]
        if a == b:
            continue
        bad = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if numeric and all(a[i][0] == b[i][0] == "value" for i in bad):
            x = np.array([float(a[i][1]) for i in bad])
            y = np.array([float(b[i][1]) for i in bad])
            if np.array_equal(x, y):
                continue
        i = bad[0]
        raise AssertionError(f"{where}.{item} row {i}: source {values[i]!r}, export {got[i]!r}")


def export_block(e: ParsedEntry, tmp_path: Path, name: str = "out.cif") -> Any:
    path = write_mmcif(e, tmp_path / name)
    return gemmi.cif.read(str(path)).sole_block()


# --------------------------------------------------------------------------- mmCIF


@pytest.mark.parametrize("rel", MMCIF_SOURCES)
def test_store_round_trip_is_lossless(rel: str, tmp_path: Path) -> None:
    """Ingest into a real store, read back, export: every category and value of the source."""
    import moldb

    st = moldb.create(tmp_path / "store")
    v = st.ingest(data(rel))
    path = st.export(v.entry, tmp_path / "out.cif.gz")
    src_block = next(b for b in gemmi.cif.read(str(data(rel))) if b.find_mmcif_category("_atom_site."))
    src = categories(src_block)
    out = categories(gemmi.cif.read(str(path)).sole_block())
    assert list(out) == list(src)
    for name, items in src.items():
        assert_same_values(items, out[name], name)


@pytest.mark.parametrize("rel", MMCIF_SOURCES)
def test_mmcif_source_round_trip(rel: str, tmp_path: Path) -> None:
    e = entry(rel)
    src_block = next(b for b in gemmi.cif.read(str(data(rel))) if b.find_mmcif_category("_atom_site."))
    src = categories(src_block)
    out = categories(export_block(e, tmp_path))
    assert list(out) == list(src)
    for name, items in src.items():
        assert_same_values(items, out[name], name)


def test_gzip_mmcif(tmp_path: Path) -> None:
    e = entry("mmcif/1o1z.cif.gz")
    path = write(e, tmp_path / "x.cif.gz")
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    again = read_file(path)
    assert again.n_atoms == e.n_atoms
    assert again.atoms.equals(e.atoms)
    assert [c.name for c in again.categories] == [c.name for c in e.categories]


def test_document_is_in_memory_equivalent(tmp_path: Path) -> None:
    e = entry("mmcif/5eil.cif.gz")
    doc = to_cif_document(e)
    assert doc.sole_block().name == "5EIL"
    mem = categories(gemmi.cif.read_string(doc.as_string()).sole_block())
    assert mem == categories(export_block(e, tmp_path))


# ----------------------------------------------------------------- BinaryCIF sources


def bcif_block(path: Path) -> Any:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    bfile = pdbx.BinaryCIFFile.read(io.BytesIO(raw))
    return next(bfile[k] for k in bfile if "atom_site" in bfile[k])


@pytest.mark.parametrize("rel", BCIF_SOURCES)
def test_bcif_source_to_mmcif(rel: str, tmp_path: Path) -> None:
    src = bcif_block(data(rel))
    out = categories(export_block(entry(rel), tmp_path))
    assert set(out) == set(src)
    for name in src:
        cat = src[name]
        assert list(out[name]) == list(cat), f"{name}: item names/order differ"
        for item in cat:
            col = cat[item]
            values = col.data.array
            mask = np.zeros(len(values), int) if col.mask is None else col.mask.array.astype(int)
            toks = out[name][item]
            assert np.array_equal([NULLS.get(t, 0) for t in toks], mask), f"{name}.{item}: null kinds differ"
            keep = mask == 0
            got = np.array([gemmi.cif.as_string(t) for t in toks], dtype=object)[keep]
            want = values[keep]
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got.astype(float), want, rtol=1e-6, atol=1e-9,
                                           err_msg=f"{name}.{item}")
            elif want.dtype.kind in "iu":
                assert np.array_equal(got.astype(np.int64), want), f"{name}.{item}"
            else:
                assert np.array_equal(got.astype(str), want.astype(str)), f"{name}.{item}"


# ----------------------------------------------------------------------- PDB source


@pytest.mark.parametrize("rel", PDB_SOURCES)
def test_pdb_source_to_mmcif(rel: str, tmp_path: Path) -> None:
    st = gemmi.read_structure(str(data(rel)), format=gemmi.CoorFormat.Pdb)
    st.setup_entities()
    # through text, so that both sides drop the empty loops CIF cannot hold
    src = categories(gemmi.cif.read_string(st.make_mmcif_document().as_string()).sole_block())
    out = categories(export_block(entry(rel), tmp_path))
    assert set(out) == set(src)
    for name, items in src.items():  # gemmi trims trailing zeros of coordinates: compare atoms as numbers
        assert_same_values(items, out[name], name, numeric=name.startswith("atom_site"))


# ------------------------------------------------------------------ BinaryCIF export


def biotite_model1(source: Any) -> Any:
    return pdbx.get_structure(source, model=1, extra_fields=["b_factor", "occupancy"])


@pytest.mark.parametrize(("rel", "name"), [("mmcif/5eil.cif.gz", "5eil.bcif"),
                                           ("mmcif/1o1z.cif.gz", "1o1z.bcif.gz")])
def test_bcif_export_reads_in_biotite(rel: str, name: str, tmp_path: Path) -> None:
    path = write_bcif(entry(rel), tmp_path / name)
    raw = path.read_bytes()
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    got = biotite_model1(pdbx.BinaryCIFFile.read(io.BytesIO(raw)))
    with gzip.open(data(rel), "rt") as fh:
        want = biotite_model1(pdbx.CIFFile.read(fh))
    assert got.array_length() == want.array_length()
    assert np.array_equal(got.coord, want.coord)
    for annot in ("atom_name", "res_id", "chain_id", "res_name", "element", "b_factor", "occupancy"):
        assert np.array_equal(got.get_annotation(annot), want.get_annotation(annot)), annot


def test_bcif_export_reads_back_in_moldb(tmp_path: Path) -> None:
    e = entry("mmcif/5eil.cif.gz")
    again = read_file(write(e, tmp_path / "x.bcif"))
    assert again.atoms.equals(e.atoms)
    assert again.decimals == e.decimals
    assert again.atom_items == e.atom_items and again.aniso_items == e.aniso_items
    assert again.atom_masks.keys() == e.atom_masks.keys()
    for k, m in e.atom_masks.items():
        assert np.array_equal(again.atom_masks[k], m), k
    # the text categories survive value for value: compare their mmCIF exports
    texts = categories(export_block(again, tmp_path, "a.cif"))
    assert texts == categories(export_block(e, tmp_path, "b.cif"))


# ------------------------------------------------------------ PDB export and objects


def test_pdb_export_reads_back_in_gemmi(tmp_path: Path) -> None:
    e = entry("mmcif/1o1z.cif.gz")
    path = write_pdb(e, tmp_path / "1o1z.pdb.gz")
    st = gemmi.read_structure(str(path))
    assert sum(m.count_atom_sites() for m in st) == e.n_atoms
    got = np.array([a.pos.tolist() for m in st for ch in m for r in ch for a in r])
    want = np.column_stack([e.atoms.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
    order = lambda xyz: xyz[np.lexsort(xyz.T)]  # noqa: E731 - PDB groups atoms by chain
    assert np.array_equal(order(np.round(got, 3)), order(np.round(want, 3)))


@pytest.mark.parametrize(("rel", "models"), [("mmcif/1o1z.cif.gz", 1), ("mmcif/1gya.cif.gz", 18),
                                             ("mmcif/2axd.cif.gz", 12)])
def test_to_gemmi_counts(rel: str, models: int) -> None:
    e = entry(rel)
    st = to_gemmi(e)
    assert len(st) == models
    assert sum(m.count_atom_sites() for m in st) == e.n_atoms
    assert len(st.entities) > 0


def test_to_biotite_matches_biotite_reading_source() -> None:
    e = entry("mmcif/1o1z.cif.gz")
    with gzip.open(data("mmcif/1o1z.cif.gz"), "rt") as fh:
        want = pdbx.get_structure(pdbx.CIFFile.read(fh), model=1,
                                  extra_fields=["b_factor", "occupancy", "charge"])
    got = to_biotite(e, model=1)
    assert got.array_length() == want.array_length()
    assert np.array_equal(got.coord, want.coord)
    for annot in ("atom_name", "res_id", "chain_id", "b_factor", "occupancy", "charge", "hetero"):
        assert np.array_equal(got.get_annotation(annot), want.get_annotation(annot)), annot
    assert to_biotite(e, model=1, altloc="all").array_length() == e.n_atoms


def test_to_biotite_stack() -> None:
    e = entry("mmcif/1gya.cif.gz")
    stack = to_biotite(e)
    assert stack.stack_depth() == 18 and stack.array_length() == 1976
    assert to_biotite(e, model=18).array_length() == 1976


def test_to_biotite_unequal_models() -> None:
    e = entry("mmcif/2axd.cif.gz")
    with pytest.raises(ValueError, match="model="):
        to_biotite(e)
    nums = e.atoms.column("pdbx_PDB_model_num").to_numpy()
    assert to_biotite(e, model=1).array_length() == int((nums == nums[0]).sum())


# ------------------------------------------------------------- dispatch and helpers


@pytest.mark.parametrize(("name", "kind"), [("a.cif", "mmcif"), ("a.mmcif", "mmcif"), ("a.cif.gz", "mmcif"),
                                            ("a.bcif", "bcif"), ("a.bcif.gz", "bcif"), ("a.pdb", "pdb"),
                                            ("a.pdb.gz", "pdb"), ("pdb1abc.ent", "pdb")])
def test_write_chooses_format_by_suffix(name: str, kind: str, tmp_path: Path) -> None:
    e = entry("mmcif/edge_altloc_biotite.cif")
    path = write(e, tmp_path / name)
    raw = path.read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    if kind == "bcif":
        assert pdbx.BinaryCIFFile.read(io.BytesIO(raw)).block["atom_site"].row_count == e.n_atoms
    elif kind == "mmcif":
        assert raw.startswith(b"data_")
    else:
        assert raw.count(b"\nATOM  ") + raw.startswith(b"ATOM  ") == e.n_atoms


def test_write_unknown_format(tmp_path: Path) -> None:
    e = entry("mmcif/edge_altloc_biotite.cif")
    with pytest.raises(ValidationError, match="suffix"):
        write(e, tmp_path / "x.xyz")
    with pytest.raises(ValidationError, match="suffix"):
        write(e, tmp_path / "noext")
    with pytest.raises(ValidationError, match="unknown export format"):
        write(e, tmp_path / "x.cif", format="mol2")
    assert not list(tmp_path.iterdir())


def test_column_tokens_nulls() -> None:
    ints = pa.array([1, None, None, -4])
    assert column_tokens(ints).tolist() == ["1", "?", "?", "-4"]
    mask = np.array([0, 1, 2, 0], np.uint8)
    assert column_tokens(ints, mask).tolist() == ["1", ".", "?", "-4"]
    words = pa.array(["O5'", None, "a b", ""]).dictionary_encode()
    assert column_tokens(words).tolist() == ['"O5\'"', "?", "'a b'", "''"]
    floats = pa.array([1.5, None, -0.25])
    dot = np.array([0, 1, 0], np.uint8)
    assert column_tokens(floats, dot, decimals=3).tolist() == ["1.500", ".", "-0.250"]


@pytest.mark.parametrize("decimals", [0, 1, 2, 3, 4, 6])
def test_format_fixed_matches_printf(decimals: int) -> None:
    rng = np.random.default_rng(decimals)
    x = np.concatenate([
        rng.uniform(-1e5, 1e5, 5000).round(decimals),
        rng.uniform(-1, 1, 5000),
        [0.0, -0.0, -4e-4, 0.0125, 5e-4, 2.5, -0.5, 9.9996, 999.9995, 1e20, 1e9, np.nan, -np.inf],
    ])
    assert np.array_equal(format_fixed(x, decimals).astype(str), np.char.mod(f"%.{decimals}f", x))
