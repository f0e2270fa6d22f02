"""Bonds from stored CCD templates, polymer links and struct_conn, checked against biotite."""

from __future__ import annotations

import gzip
import io

import biotite.structure as struc
import biotite.structure.io.pdbx as pdbx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import moldb
from tests.conftest import data


def _biotite_pairs(rel: str) -> tuple[set[tuple[int, int]], object]:
    text = gzip.decompress(data(rel).read_bytes()).decode()
    arr = pdbx.get_structure(pdbx.CIFFile.read(io.StringIO(text)), model=1, altloc="all", use_author_fields=False)
    bonds = struc.connect_via_residue_names(arr, inter_residue=True).as_array()[:, :2]
    pairs = {tuple(sorted(p)) for p in bonds.tolist()}
    return pairs, arr


@pytest.mark.parametrize("rel", ["mmcif/1o1z.cif.gz", "mmcif/5eil.cif.gz", "mmcif/4gxy.cif.gz"])
def test_template_and_polymer_bonds_match_biotite(store: moldb.Store, rel: str) -> None:
    v = store.ingest(data(rel))
    s = store.get(v.entry)
    bonds = s.bonds()
    ours_tab = bonds.filter(pc.is_in(bonds.column("kind"), value_set=pa.array(["intra", "polymer"])))
    ours = set(zip(ours_tab.column("atom_1").to_pylist(), ours_tab.column("atom_2").to_pylist(), strict=True))
    theirs, arr = _biotite_pairs(rel)
    alt = np.asarray(arr.altloc_id)
    # biotite pairs atoms of *different* conformers (A with B); moldb never does
    cross = {p for p in theirs if alt[p[0]] not in ("", ".") and alt[p[1]] not in ("", ".") and alt[p[0]] != alt[p[1]]}
    assert not {p for p in ours if alt[p[0]] not in ("", ".") and alt[p[1]] not in ("", ".") and alt[p[0]] != alt[p[1]]}
    assert (theirs - cross) <= ours
    assert len(ours - (theirs - cross)) <= 0.01 * len(ours)  # polymer links next to single-conformer residues
    assert set(bonds.column("order").to_pylist()) <= {0, 1, 2, 3}
    assert bonds.column("aromatic").to_pylist().count(True) > 0


def test_struct_conn_bonds(store: moldb.Store) -> None:
    v = store.ingest(data("mmcif/5eil.cif.gz"))
    s = store.get(v.entry)
    bonds = s.bonds()
    conn = s.category("struct_conn")
    kinds = pc.value_counts(bonds.column("kind")).to_pylist()
    counts = {k["values"]: k["counts"] for k in kinds}
    types = conn.column("conn_type_id").to_pylist()
    expected = {k: types.count(k) for k in set(types)}
    for kind, n in expected.items():
        assert counts.get(kind, 0) == n
    row = bonds.filter(pc.equal(bonds.column("kind"), "metalc")).to_pylist()[0]
    comp = s.atoms.column("label_comp_id")
    names = {comp[row["atom_1"]].as_py(), comp[row["atom_2"]].as_py()}
    assert "FE" in names


def test_templates_are_stored_once(store: moldb.Store) -> None:
    store.ingest(data("mmcif/1o1z.cif.gz"))
    backend = store._backend
    first = backend.component_ids()
    assert {"ALA", "GLY", "HOH", "NA"} <= first
    store.ingest(data("mmcif/3o5r.cif.gz"))
    second = backend.component_ids()
    assert first < second and "FK5" in second
    names, elements, _ = backend.read_components(["FK5"])["FK5"]
    assert len(names) == len(elements) > 50
