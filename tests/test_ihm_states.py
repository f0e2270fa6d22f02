"""IHM integrative models: discrete states with populations, sphere-only models as particles with radii."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

import moldb
from tests.conftest import data


def _cat(path: str, name: str) -> dict[str, list[str]]:
    block = gemmi.cif.read(str(data(path))).sole_block()
    return {k: [gemmi.cif.as_string(x) if x not in (".", "?") else x for x in v]
            for k, v in block.get_mmcif_category(f"_{name}.", raw=True).items()}


def _num(v: str) -> float:
    return float("nan") if v in (".", "?") else float(v)


@pytest.mark.parametrize(("path", "n_states"), [("ihm/PDBDEV_00000004.cif.gz", 3),
                                                ("ihm/PDBDEV_00000016.cif.gz", 4)])
def test_atomic_multistate_populations(store: moldb.Store, path: str, n_states: int) -> None:
    v = store.ingest(data(path))
    d = {x.id: x for x in store.descriptors(v.entry)}["ihm_states"]
    ref = _cat(path, "ihm_multi_state_modeling")
    assert d.regime == 1 and d.sample_axis == "state" and d.scope == "model"
    assert d.states == ref["state_id"] and len(d.states) == n_states
    assert np.array_equal(d.params["population"], [float(p) for p in ref["population_fraction"]])
    assert d.attrs["models"] == [[s] for s in ref["state_id"]]  # one model per state in both files
    assert v.n_models == n_states


def test_pdbdev4_population_values(store: moldb.Store) -> None:
    v = store.ingest(data("ihm/PDBDEV_00000004.cif.gz"))
    d = {x.id: x for x in store.descriptors(v.entry)}["ihm_states"]
    assert d.params["population"].tolist() == [0.67, 0.23, 0.1]
    assert d.attrs["names"] == ["conformational state 1", "conformational state 2", "conformational state 3"]


def test_states_without_population_map_model_groups(store: moldb.Store) -> None:
    path = "ihm/PDBDEV_00000002.cif.gz"
    v = store.ingest(data(path))
    descs = {x.id: x for x in store.descriptors(v.entry)}
    st = descs["ihm_states"]
    assert np.isnan(st.params["population"]).all()  # the file gives '.'
    assert st.attrs["model_groups"] == [["1", "2"], ["3", "4"]] and st.attrs["models"] == [["1", "2"], ["3", "4"]]
    assert st.params["state_model"].tolist() == [[0, 0], [0, 1], [1, 2], [1, 3]]
    groups = descs["ihm_model_groups"]
    assert groups.attrs["names"] == ["Rrp6 cluster 1", "Rrp6 cluster 2", "Ski7 cluster 1", "Ski7 cluster 2"]


@pytest.mark.parametrize("path", ["ihm/PDBDEV_00000001.cif.gz", "ihm/PDBDEV_00000002.cif.gz",
                                  "ihm/PDBDEV_00000021.cif.gz"])
def test_sphere_models_keep_radii(store: moldb.Store, path: str) -> None:
    ref = _cat(path, "ihm_sphere_obj_site")
    v = store.ingest(data(path))
    assert v.n_atoms == len(ref["id"])
    s = store.get(v.entry)
    radii = {x.id: x for x in store.descriptors(v.entry)}["radii"]
    assert np.array_equal(radii.params["radius"], [float(r) for r in ref["object_radius"]])
    assert np.array_equal(radii.params["rmsf"], [_num(r) for r in ref["rmsf"]], equal_nan=True)
    for axis in "xyz":
        assert np.allclose(s.atoms.column(f"Cartn_{axis}").to_numpy(), [float(x) for x in ref[f"Cartn_{axis}"]],
                           atol=5e-4)
    assert s.atoms.column("pdbx_PDB_model_num").to_pylist() == [int(m) for m in ref["model_id"]]
    assert s.atoms.column("auth_seq_id").to_pylist() == [int(b) for b in ref["seq_id_begin"]]
    assert s.atoms.column("label_asym_id").to_pylist() == ref["asym_id"]


def test_single_residue_bead_names_its_residue(store: moldb.Store) -> None:
    path = "ihm/PDBDEV_00000021.cif.gz"
    v = store.ingest(data(path))
    s = store.get(v.entry)
    ref = _cat(path, "ihm_sphere_obj_site")
    seq = _cat(path, "entity_poly_seq")
    mon = {(e, n): m for e, n, m in zip(seq["entity_id"], seq["num"], seq["mon_id"], strict=True)}
    i = ref["seq_id_begin"].index(ref["seq_id_end"][0]) if ref["seq_id_begin"][0] == ref["seq_id_end"][0] else 0
    assert s.atoms.column("label_comp_id")[i].as_py() == mon[(ref["entity_id"][i], ref["seq_id_begin"][i])]


def test_metadata_only_ihm_still_refused(store: moldb.Store) -> None:
    path = data("ihm/imp_rnapolii_tutorial_output.cif.gz")
    with pytest.raises(moldb.ParseError) as info:
        store.ingest(path)
    assert path.name in str(info.value) and "no coordinates" in str(info.value)
