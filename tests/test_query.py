"""Query engine on real stores: counts against gemmi, pushdown, spatial index, outputs, CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import gemmi
import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import moldb
from moldb.query.plan import execute
from tests.conftest import data

FILES = ["mmcif/5eil.cif.gz", "mmcif/4gxy.cif.gz", "mmcif/4zxb.cif.gz", "mmcif/1o1z.cif.gz",
         "mmcif/1onx.cif.gz", "mmcif/5h73.cif.gz"]
XYZ = ["Cartn_x", "Cartn_y", "Cartn_z"]


@pytest.fixture(scope="module")
def qstore(tmp_path_factory: pytest.TempPathFactory) -> moldb.Store:
    s = moldb.create(tmp_path_factory.mktemp("q") / "store")
    for f in FILES:
        s.ingest(data(f))
    yield s
    s.close()


def _gemmi_residues(path: Path) -> set[str]:
    st = gemmi.read_structure(str(path))
    return {r.name for r in st[0] for r in (rr for c in st[0] for rr in c)}


def test_ca_in_chain_a_residues_10_50_matches_gemmi(qstore: moldb.Store) -> None:
    st = gemmi.read_structure(str(data("mmcif/5eil.cif.gz")))
    want = sum(1 for c in st[0] if c.name == "A" for r in c if 10 <= r.seqid.num <= 50 for a in r if a.name == "CA")
    sel = qstore.select("chain A and name CA and resid 10-50", entries="5EIL")
    assert len(sel) == want > 0
    kw = qstore.select(entries=["5EIL"], chains="A", residues=(10, 50), atoms=["CA"])
    assert np.array_equal(kw.rows()["5EIL"], sel.rows()["5EIL"])
    t = sel.to_arrow()
    assert t.column("entry").to_pylist() == ["5EIL"] * want
    assert set(t.column("label_atom_id").cast(pa.string()).to_pylist()) == {"CA"}
    assert sel.to_numpy("xyz").shape == (want, 3)


def test_where_matches_numpy_over_the_full_table(qstore: moldb.Store) -> None:
    atoms = qstore.get("5EIL").atoms
    b = atoms.column("B_iso_or_equiv").to_numpy(zero_copy_only=False)
    el = np.asarray(atoms.column("type_symbol").cast(pa.string()).to_pylist(), dtype=object)
    want = np.flatnonzero((b < 40) & (el != "H"))
    sel = qstore.select(entries="5EIL", where="B_iso_or_equiv < 40 and type_symbol != 'H'")
    assert np.array_equal(sel.rows()["5EIL"], want)
    xyz = np.column_stack([atoms.column(c).to_numpy() for c in XYZ])
    assert np.array_equal(sel.to_numpy("xyz"), xyz[want])


@pytest.mark.parametrize("comp", ["GTP", "ZN", "SO4", "HEM"])
def test_entries_containing_a_residue_match_gemmi(qstore: moldb.Store, comp: str) -> None:
    want = sorted(Path(f).name.split(".")[0].upper() for f in FILES if comp in _gemmi_residues(data(f)))
    assert sorted(qstore.select(where=f"label_comp_id == '{comp}'").entries()) == want
    assert sorted(qstore.select(f"resname {comp}").entries()) == want


def test_dictionary_pushdown_reads_only_topo(qstore: moldb.Store, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = qstore._backend
    seen: list[int] = []
    real = backend.read_blocks
    monkeypatch.setattr(backend, "read_blocks", lambda ids, *a, **k: (seen.extend(ids), real(ids, *a, **k))[1])
    hits = list(execute(qstore, qstore.select("resname GTP").plan))
    assert [c.entry for c, _, _ in hits] == ["4GXY"]
    topo = {c.blocks["topo"] for c in (h[0] for h in hits)}
    groups = {g for r in qstore._records(None) for g, b in r.blocks.items() if b in seen}
    assert groups == {"topo"} and topo <= set(seen)


def _brute_pocket(path: Path, lig: str, r: float) -> set[tuple[str, int, str, str]]:
    st = gemmi.read_structure(str(path))
    atoms = [(c.name, res.seqid.num, a.name, a.altloc if a.altloc != "\0" else "", np.array(a.pos.tolist()),
              res.name) for c in st[0] for res in c for a in res]
    pts = np.array([a[4] for a in atoms if a[5] == lig])
    xyz = np.array([a[4] for a in atoms])
    d2 = ((xyz[:, None, :] - pts[None]) ** 2).sum(-1).min(1)
    return {a[:4] for a, d in zip(atoms, d2, strict=True) if d <= r * r}


def _keys(t: pa.Table) -> set[tuple[str, int, str, str]]:
    cols = [t.column(c).cast(pa.string()).to_pylist() if pa.types.is_dictionary(t.column(c).type)
            else t.column(c).to_pylist() for c in ("auth_asym_id", "auth_seq_id", "label_atom_id", "label_alt_id")]
    return {(a, b, c, d or "") for a, b, c, d in zip(*cols, strict=True)}


def test_pocket_within_8_of_gtp_matches_brute_force(qstore: moldb.Store) -> None:
    want = _brute_pocket(data("mmcif/4gxy.cif.gz"), "GTP", 8.0)
    sel = qstore.select(within=8.0, of=qstore.select(entries="4GXY", residues="GTP"))
    got = sel.to_arrow()
    assert sel.entries() == ["4GXY"]
    assert _keys(got) == want and len(want) > 28
    same = qstore.select("within 8 of resname GTP")
    assert np.array_equal(same.rows()["4GXY"], sel.rows()["4GXY"])
    # the index path and the decode-everything path agree (a coordinate predicate forces the decode)
    forced = qstore.select("within 8 of resname GTP and Cartn_x > -1e6")
    assert np.array_equal(forced.rows()["4GXY"], sel.rows()["4GXY"])
    (_, _, ctx), = execute(qstore, same.plan)
    assert "xyz" not in ctx.blobs and ctx.index_reads >= 1  # answered from the grid index


def test_within_points_and_box_match_numpy(qstore: moldb.Store) -> None:
    atoms = qstore.get("4ZXB", columns=XYZ).atoms
    xyz = np.column_stack([atoms.column(c).to_numpy() for c in XYZ])
    c = xyz[1000]  # an atom: the box is not empty
    lo, hi = c - 9.5, c + 6.25
    sel = qstore.select(entries="4ZXB", box=(tuple(lo), tuple(hi)))
    want = np.flatnonzero(np.all((xyz >= lo) & (xyz <= hi), axis=1))
    assert np.array_equal(sel.rows()["4ZXB"], want) and want.size > 10
    assert np.array_equal(sel.to_numpy("xyz"), xyz[want])
    pts = xyz[[10, 500]]
    near = qstore.select(entries="4ZXB", within=5.5, of=pts)
    d2 = ((xyz[:, None] - pts[None]) ** 2).sum(-1).min(1)
    assert np.array_equal(near.rows()["4ZXB"], np.flatnonzero(d2 <= 5.5**2))


def test_box_on_4v5a_uses_the_index(tmp_path: Path) -> None:
    s = moldb.create(tmp_path / "big")
    s.ingest(data("mmtf/4V5A.mmtf"))
    atoms = s.get("4V5A", columns=XYZ).atoms
    xyz = np.column_stack([atoms.column(c).to_numpy() for c in XYZ])
    lo, hi = xyz[5000] - 12, xyz[5000] + 12
    sel = s.select(box=(tuple(lo), tuple(hi)), entries="4V5A")
    (_, rows, ctx), = execute(s, sel.plan)
    assert np.array_equal(rows, np.flatnonzero(np.all((xyz >= lo) & (xyz <= hi), axis=1)))
    assert ctx.blobs == {}  # no block decoded: rows and coordinates came from the grid cells
    assert np.array_equal(sel.to_numpy("xyz"), xyz[rows])
    # scattered ligand atoms (every ZN of the ribosome): per-point cell ranges, same answer as brute force
    comp = np.asarray(s.get("4V5A", columns=["label_comp_id"]).atoms.column("label_comp_id").cast(pa.string())
                      .to_pylist(), dtype=object)
    zn = xyz[comp == "ZN"]
    d2 = np.min([((xyz - p) ** 2).sum(1) for p in zn], axis=0)
    pocket = s.select("within 8 of resname ZN")
    (_, rows, ctx), = execute(s, pocket.plan)
    assert len(zn) > 1 and np.array_equal(rows, np.flatnonzero(d2 <= 64.0))
    assert "xyz" not in ctx.blobs


def test_altloc_policies_are_explicit(qstore: moldb.Store) -> None:
    atoms = qstore.get("1O1Z").atoms
    alt = np.asarray(atoms.column("label_alt_id").cast(pa.string()).to_pylist(), dtype=object)
    assert set(alt[alt != None]) >= {"A", "B"}  # noqa: E711
    assert len(qstore.select(entries="1O1Z")) == atoms.num_rows  # default: every altloc
    only_a = qstore.select(entries="1O1Z", altloc="A").rows()["1O1Z"]
    assert np.array_equal(only_a, np.flatnonzero((alt == None) | (alt == "A")))  # noqa: E711
    assert np.array_equal(qstore.select("altloc B", entries="1O1Z").rows()["1O1Z"], np.flatnonzero(alt == "B"))
    hi = qstore.select(entries="1O1Z", altloc="highest").to_arrow(["auth_asym_id", "auth_seq_id", "label_alt_id"])
    per_res: dict[tuple[str, int], set[str]] = {}
    for ch, seq, a in zip(*(hi.column(c).to_pylist() for c in hi.column_names[1:]), strict=True):
        if a is not None:
            per_res.setdefault((ch, seq), set()).add(a)
    assert per_res and all(len(v) == 1 for v in per_res.values())
    with pytest.raises(moldb.ValidationError):
        qstore.select(altloc="first-one")


def test_cross_entry_batches_structures_and_torch(qstore: moldb.Store, tmp_path: Path) -> None:
    sel = qstore.select("name CA or name P")  # 4GXY is RNA
    total = len(sel)
    sizes = [b.num_rows for b in sel.batches(500, columns=["Cartn_x"])]
    assert sum(sizes) == total and max(sizes) <= 500 and len(sel.entries()) == len(FILES)
    structs = qstore.select("resname GTP").structures()
    assert [s.entry for s in structs] == ["4GXY"]
    out = structs[0].write(tmp_path / "gtp.cif")
    back = gemmi.read_structure(str(out))
    assert sum(1 for c in back[0] for r in c for a in r) == structs[0].atoms.num_rows
    assert {r.name for c in back[0] for r in c} == {"GTP"}
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install torch"):
            sel.to_torch()
    else:
        assert tuple(sel.to_torch().shape) == (total, 3)


def test_as_of_and_entry_metadata(tmp_path: Path) -> None:
    s = moldb.create(tmp_path / "s")
    v1 = s.ingest(data("mmcif/4gxy.cif.gz"))
    s.ingest(data("mmcif/1o1z.cif.gz"))
    old = moldb.open(tmp_path / "s", as_of=v1.timestamp)
    assert old.select("name CA or name P").entries() == ["4GXY"]
    assert sorted(s.select().entries()) == ["1O1Z", "4GXY"]
    ent = s.entries()
    res = np.asarray(ent.column("resolution").to_pylist(), dtype=float)
    meth = ent.column("method").to_pylist()
    want = sorted(e for e, r, m in zip(ent.column("entry").to_pylist(), res, meth, strict=True)
                  if r < 2.0 and m == "X-RAY DIFFRACTION")
    got = s.query_entries("resolution < 2.0 and method == 'X-RAY DIFFRACTION'")
    assert sorted(got.column("entry").to_pylist()) == want
    assert s.query_entries("ligands == 'GTP'").column("entry").to_pylist() == ["4GXY"]
    assert s.query_entries("has_aniso == false and n_chains >= 1").num_rows == 2
    # the spelling: store.entries(where=...) is the same filtered metadata table
    assert s.entries(where="resolution < 2.0 and method == 'X-RAY DIFFRACTION'").equals(got)
    assert s.entries(where="ligands == 'GTP'").column("entry").to_pylist() == ["4GXY"]
    with pytest.raises(moldb.ValidationError):
        s.query_entries("resolutoin < 2")
    with pytest.raises(moldb.ValidationError, match="resolutoin"):
        s.entries(where="resolutoin < 2")


def test_store_without_spatial_array_falls_back_to_decoding(tmp_path: Path) -> None:
    src = Path(__file__).parent / "data" / "stores" / "v1"
    shutil.copytree(src, tmp_path / "v1")
    s = moldb.open(tmp_path / "v1")
    atoms = s.get("1O1Z", columns=XYZ).atoms
    xyz = np.column_stack([atoms.column(c).to_numpy() for c in XYZ])
    lo, hi = xyz[100] - 5, xyz[100] + 5
    got = s.select(box=(tuple(lo), tuple(hi))).rows()["1O1Z"]
    assert np.array_equal(got, np.flatnonzero(np.all((xyz >= lo) & (xyz <= hi), axis=1)))


def test_cli_query(qstore: moldb.Store, tmp_path: Path) -> None:
    from moldb.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["query", "--store", qstore.uri, "chain A and name CA and resid 10-50", "-e", "5EIL",
                            "--format", "csv", "-o", str(tmp_path / "ca.csv")])
    assert r.exit_code == 0, r.output
    import pyarrow.csv as pcsv

    assert pcsv.read_csv(tmp_path / "ca.csv").num_rows == len(qstore.select("chain A and name CA and resid 10-50",
                                                                             entries="5EIL"))
    r = runner.invoke(app, ["query", "--store", qstore.uri, "name CA; import os"])
    assert r.exit_code == 2 and "position 7" in r.output
