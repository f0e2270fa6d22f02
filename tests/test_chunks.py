"""Chunked blocks (moldb.storage.chunks) on real entries: lossless, shareable, collectable, crash-safe.

Small real entries stand in for large ones with a small chunk size (5EIL, 7,327 atoms, in
chunks of 1,000 rows and pages of 256).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tiledb

import moldb
from moldb.storage.blob import BlobWriter, read_blob_columns
from moldb.storage.blob_pages import read_rows
from moldb.storage.chunks import parse_manifest
from moldb.storage.maintenance import find_orphans
from tests import cif_edits as ce
from tests._crash import crash_before_commit
from tests.conftest import data

ROWS, PAGES = 1000, 256
V1 = Path(__file__).resolve().parent / "data" / "stores" / "v1"


def chunked_store(path: Path) -> moldb.Store:
    st = moldb.create(path)
    st._backend.chunk_rows, st._backend.page_rows = ROWS, PAGES
    return st


def plain_store(path: Path) -> moldb.Store:
    st = moldb.create(path)
    st._backend.chunk_rows = 0
    return st


def block_cells(st: moldb.Store) -> dict[int, str]:
    with tiledb.open(str(Path(st.uri) / "blocks")) as arr:
        cells = arr.query(attrs=["group"])[:]
    return {int(b): g.decode() if isinstance(g, bytes) else str(g) for b, g in zip(cells["block"], cells["group"],
                                                                                  strict=True)}


@pytest.mark.parametrize("rel", ["mmcif/5eil.cif.gz", "mmcif/1o1z.cif.gz", "mmcif/1gya.cif.gz"])
def test_chunked_entry_reads_back_bit_identical(rel: str, tmp_path: Path) -> None:
    a, b = chunked_store(tmp_path / "chunked"), plain_store(tmp_path / "plain")
    va, vb = a.ingest(data(rel)), b.ingest(data(rel))
    assert va.content_hash == vb.content_hash or va.blocks != vb.blocks  # hashes are content, not layout
    sa, sb = a.get(va.entry), b.get(vb.entry)
    assert sa.atoms.num_rows > 2 * ROWS
    assert sa.atoms.equals(sb.atoms) and sa.atoms.schema.equals(sb.atoms.schema)
    assert sa.decimals == sb.decimals and sa._text_items == sb._text_items
    assert sorted(sa.atom_masks) == sorted(sb.atom_masks)
    assert all(np.array_equal(sa.atom_masks[k], sb.atom_masks[k]) for k in sb.atom_masks)
    assert sa.write(tmp_path / "a.cif").read_text() == sb.write(tmp_path / "b.cif").read_text()
    sub = a.get(va.entry, columns=["Cartn_x", "label_comp_id", "B_iso_or_equiv"]).atoms
    assert sub.equals(b.get(vb.entry, columns=["Cartn_x", "label_comp_id", "B_iso_or_equiv"]).atoms)
    groups = block_cells(a)
    parent = va.blocks["xyz"]
    k = -(-sa.atoms.num_rows // ROWS)
    assert sorted(g for g in groups.values() if g.startswith("xyz#")) == sorted(f"xyz#{i}@{parent}" for i in range(k))
    assert groups[parent] == "xyz" and groups[va.blocks["cif"]] == "cif"  # categories are never chunked


def test_export_round_trip_from_a_chunked_store_is_lossless(tmp_path: Path) -> None:
    import gemmi

    from tests.test_export import assert_same_values, categories

    st = chunked_store(tmp_path / "s")
    v = st.ingest(data("mmcif/5eil.cif.gz"))
    out = st.export(v.entry, tmp_path / "out.cif")
    src = categories(next(b for b in gemmi.cif.read(str(data("mmcif/5eil.cif.gz"))) if b.find_mmcif_category(
        "_atom_site.")))
    got = categories(gemmi.cif.read(str(out)).sole_block())
    assert list(got) == list(src)
    for name, items in src.items():
        assert_same_values(items, got[name], name)


def test_manifest_zone_maps_describe_each_page(tmp_path: Path) -> None:
    st = chunked_store(tmp_path / "s")
    v = st.ingest(data("mmcif/5eil.cif.gz"))
    atoms = st.get(v.entry).atoms
    man = parse_manifest(bytes(st._backend.read_blocks([v.blocks["topo"]])[v.blocks["topo"]]["data"]))
    assert man is not None and man.n == atoms.num_rows and man.n_chunks == 8
    assert np.all(np.isin(man.bounds, man.zbounds)) and np.all(np.diff(man.zbounds) <= PAGES)
    seq = atoms.column("auth_seq_id").to_numpy(zero_copy_only=False)
    comp = atoms.column("label_comp_id").cast("string").to_numpy(zero_copy_only=False)
    for z, (lo, hi) in enumerate(zip(man.zbounds[:-1], man.zbounds[1:], strict=True)):
        assert man.lo["auth_seq_id"][z] == seq[lo:hi].min() and man.hi["auth_seq_id"][z] == seq[lo:hi].max()
        assert {man.dicts["label_comp_id"][c] for c in man.sets["label_comp_id"][z]} == set(comp[lo:hi])


def test_paged_blob_rows_decode_only_their_pages() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    steps = rng.integers(-3000, 3000, n)
    steps[::10] = rng.integers(-200_000, 200_000, n // 10)
    ints = np.cumsum(steps)  # int16-packed with overflow runs
    floats = np.round(rng.normal(0, 80, n), 3)
    floats[17] = -0.0
    codes = rng.integers(0, 40, n)
    w = BlobWriter(n, 512)
    w.add_ints("i", "int", ints)
    w.add_floats("f", floats, 3)
    w.add_strings("s", codes, None)
    w.add_mask("s", (codes % 3).astype(np.uint8))
    blob = w.finish()
    whole, masks, _, cols = read_blob_columns(blob)  # the full decode reads the paged layout unchanged
    assert np.array_equal(whole["i"], ints) and np.array_equal(whole["f"], floats) and whole["s"][1] is None
    assert any(c.get("pack16") and "pk" in c for c in cols)
    for rows in (np.array([0]), np.array([17, 511, 512, 4999]), np.arange(1000, 1600), np.sort(rng.choice(n, 50))):
        got, m, _ = read_rows(blob, ["i", "f", "s"], rows)
        assert np.array_equal(got["i"], ints[rows]) and np.array_equal(got["s"][0], codes[rows])
        assert np.array_equal(got["f"], floats[rows]) and np.array_equal(np.signbit(got["f"]), np.signbit(floats[rows]))
        assert np.array_equal(m["s"], masks["s"][rows])


def test_b_only_redeposit_writes_only_the_adp_block_and_its_chunks(tmp_path: Path) -> None:
    st = chunked_store(tmp_path / "s")
    v1 = st.ingest(data("mmcif/5eil.cif.gz"))
    before = block_cells(st)
    f = ce.edit(data("mmcif/5eil.cif.gz"), tmp_path / "b.cif", ce.shift_b(1.5))
    v2 = st.deposit(f, entry="5EIL")
    new = {b: g for b, g in block_cells(st).items() if b not in before}
    assert {g: v2.blocks[g] == v1.blocks[g] for g in ("topo", "xyz", "aniso", "cif")} == dict.fromkeys(
        ("topo", "xyz", "aniso", "cif"), True)
    assert sorted({g.split("#")[0] for g in new.values()}) == ["adp"]
    assert len(new) == 1 + 8 and v2.blocks["adp"] in new  # the manifest and its 8 chunks
    b1 = st.get("5EIL", version=1).atoms.column("B_iso_or_equiv").to_numpy()
    b2 = st.get("5EIL", version=2).atoms.column("B_iso_or_equiv").to_numpy()
    assert np.allclose(b2 - b1, 1.5)


def test_old_layouts_still_read(tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(V1, copy)  # written before chunks and per-plane frames
    st = moldb.open(copy)
    assert st._backend.encoding_version == "1"
    before = st.get("1O1Z").atoms
    st._backend.chunk_rows, st._backend.page_rows = ROWS, PAGES
    st.ingest(data("mmcif/5eil.cif.gz"))  # the first chunked block raises the store's encoding version
    again = moldb.open(copy)
    assert again._backend.meta["moldb.encoding_version"] == "2"
    assert again.get("1O1Z").atoms.equals(before) and again.get("5EIL").atoms.num_rows == 7327
    assert sorted(again.select("resname HOH").entries()) == ["1O1Z", "5EIL"]
    plain = plain_store(tmp_path / "plain")  # blocks too large to chunk before, read by the chunk-aware code
    plain.ingest(data("mmcif/5eil.cif.gz"))
    assert plain._backend.encoding_version == "1"
    assert plain.get("5EIL").atoms.equals(again.get("5EIL").atoms)
    q = "resname HOH and within 6 of (chain A and resid 5-9)"
    assert np.array_equal(plain.select(q).rows()["5EIL"], again.select(q, entries="5EIL").rows()["5EIL"])
    backend = again._backend
    backend.set_meta("moldb.encoding_version", "3")
    with pytest.raises(moldb.SchemaVersionError, match="newer than this moldb"):
        moldb.open(copy)


def test_crash_leaves_chunks_as_orphans_that_gc_collects_with_their_parent(tmp_path: Path) -> None:
    st = chunked_store(tmp_path / "s")
    v = st.ingest(data("mmcif/5eil.cif.gz"), entry="KEEP")
    st.maintain()
    keep = st.get("KEEP").atoms
    crash_before_commit(tmp_path / "s", data("mmcif/5eil.cif.gz"),
                        env={"MOLDB_CHUNK_ROWS": str(ROWS), "MOLDB_PAGE_ROWS": str(PAGES)})
    assert "CRASHED" not in st and moldb.open(st.uri).get("KEEP").atoms.equals(keep)
    young = find_orphans(st._backend, until=2**62, cutoff=0)["young"]
    groups = sorted(o["group"].split("#")[0] for o in young)
    assert {o["entry"] for o in young} == {"CRASHED"}
    assert groups == sorted(["adp"] * 9 + ["aniso"] * 9 + ["cif"] + ["topo"] * 9 + ["xyz"] * 9)
    rep = st.maintain(orphan_grace_s=0)
    assert len(rep["orphans"]["collected"]) == len(young)
    assert set(block_cells(st)) >= {v.blocks["xyz"] + 1} and len(block_cells(st)) == 5 + 4 * 8
    assert moldb.open(st.uri).get("KEEP").atoms.equals(keep)


def test_purge_collects_chunks_of_purged_versions_and_keeps_shared_ones(tmp_path: Path) -> None:
    st = chunked_store(tmp_path / "s")
    v1 = st.ingest(data("mmcif/5eil.cif.gz"))
    v2 = st.deposit(ce.edit(data("mmcif/5eil.cif.gz"), tmp_path / "b.cif", ce.shift_b(2.0)), entry="5EIL")
    latest = st.get("5EIL").atoms
    st.purge_versions("5EIL", keep_last=1)
    rep = st.maintain(orphan_grace_s=0)
    collected = {o["block"] for o in rep["orphans"]["collected"]}
    assert v1.blocks["adp"] in collected and len(collected) == 1 + 8  # v1's adp manifest and chunks
    left = block_cells(st)
    assert all(v2.blocks[g] in left for g in v2.blocks) and len(left) == 5 + 4 * 8
    assert moldb.open(st.uri).get("5EIL").atoms.equals(latest)


def test_ensembles_use_one_page_per_chunk_and_compress_their_repeated_models(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1L2Y (38 NMR models): pages as large as the chunk, smaller than pages of 256, same rows."""
    st = chunked_store(tmp_path / "ens")
    v = st.ingest(data("bcif/1l2y.bcif"))
    man = parse_manifest(bytes(st._backend.read_blocks([v.blocks["xyz"]])[v.blocks["xyz"]]["data"]))
    assert man is not None and man.n == 11_552 and np.array_equal(man.zbounds, man.bounds)
    ref = plain_store(tmp_path / "plain")
    vr = ref.ingest(data("bcif/1l2y.bcif"))
    assert st.get(v.entry).atoms.equals(ref.get(vr.entry).atoms)
    sel = "resid 5-9 and name CA"
    assert st.select(sel, entries=v.entry).to_arrow().equals(ref.select(sel, entries=vr.entry).to_arrow())

    def chunk_bytes(s: moldb.Store) -> int:
        with tiledb.open(str(Path(s.uri) / "blocks")) as arr:
            cells = arr.query(attrs=["group", "data"])[:]
        return sum(len(d) for g, d in zip(cells["group"], cells["data"], strict=True) if "#" in str(g))

    paged = moldb.create(tmp_path / "paged")
    paged._backend.chunk_rows, paged._backend.page_rows = ROWS, PAGES
    import moldb.ingest.load as load

    monkeypatch.setattr(load, "_n_models", lambda entry: 1)  # the single-model layout, pages of 256 rows
    paged.ingest(data("bcif/1l2y.bcif"))
    assert chunk_bytes(st) < 0.8 * chunk_bytes(paged)
