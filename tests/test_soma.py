"""Store.soma: the atoms-by-descriptor view as a TileDB-SOMA Experiment, read by plain tiledbsoma."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import moldb
from tests.conftest import data

pytest.importorskip("tiledbsoma")

# Runs in a fresh interpreter that never imports moldb: the experiment must stand on its own.
READER = r"""
import json, sys
import numpy as np
import tiledbsoma, tiledbsoma.io
with tiledbsoma.Experiment.open(sys.argv[1]) as exp:
    obs = exp.obs.read().concat().to_pandas()
    var = exp.ms["descriptors"].var.read().concat().to_pandas()
    x = exp.ms["descriptors"].X["values"].read().tables().concat().to_pandas()
    ad = tiledbsoma.io.to_anndata(exp, measurement_name="descriptors", X_layer_name="values")
    j = int(var.index[var["feature"] == "iadp.B"][0])
    b = x[x.soma_dim_1 == j].sort_values("soma_dim_0")
    print(json.dumps({"n_obs": len(obs), "features": var["feature"].tolist(), "entries": sorted(set(obs["entry"])),
                      "b_rows": b.soma_dim_0.tolist(), "b": b.soma_data.tolist(),
                      "ad_shape": list(ad.shape), "moldb_loaded": "moldb" in sys.modules,
                      "meta": exp.metadata["moldb.object_type"]}))
"""


def test_soma_export_reads_with_plain_tiledbsoma(store: moldb.Store, tmp_path: Path) -> None:
    store.ingest(data("mmcif/1o1z.cif.gz"))
    store.ingest(data("mmcif/3o5r.cif.gz"))
    uri = tmp_path / "view.soma"
    exp = store.soma(uri)
    exp.close()
    out = subprocess.run([sys.executable, "-c", READER, str(uri)], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    a1, a2 = store.get("1O1Z").atoms, store.get("3O5R").atoms
    assert got["n_obs"] == a1.num_rows + a2.num_rows == 2302 + 1470
    assert got["entries"] == ["1O1Z", "3O5R"] and not got["moldb_loaded"]
    assert {"iadp.B", "aadp.U11", "tls.group", "altloc.occupancy"} <= set(got["features"])
    assert got["ad_shape"] == [3772, len(got["features"])]
    assert got["meta"] == "moldb.soma_view"
    # X values are the stored B-factors, atom for atom (obs rows follow the entries in order)
    b = np.concatenate([a1.column("B_iso_or_equiv").to_numpy(), a2.column("B_iso_or_equiv").to_numpy()])
    assert got["b_rows"] == list(range(3772))
    np.testing.assert_allclose(got["b"], b)


def test_soma_sparse_cells_only_where_descriptor_covers(store: moldb.Store, tmp_path: Path) -> None:
    store.ingest(data("mmcif/1o1z.cif.gz"))  # isotropic only: no aniso features, 96 altloc rows
    with store.soma(tmp_path / "v.soma", entries="1O1Z") as exp:
        var = exp.ms["descriptors"].var.read().concat().to_pandas()
        x = exp.ms["descriptors"].X["values"].read().tables().concat().to_pandas()
    occ = int(var.index[var["feature"] == "altloc.occupancy"][0])
    assert (x.soma_dim_1 == occ).sum() == 96
    assert not any(f.startswith("aadp.") for f in var["feature"])


def test_soma_refuses_existing_uri_and_empty_store(store: moldb.Store, tmp_path: Path) -> None:
    with pytest.raises(moldb.ValidationError, match="no entries"):
        store.soma(tmp_path / "empty.soma")
    store.ingest(data("mmcif/1o1z.cif.gz"))
    store.soma(tmp_path / "v.soma").close()
    with pytest.raises(moldb.StoreExistsError, match=r"v\.soma"):
        store.soma(tmp_path / "v.soma")
    with pytest.raises(moldb.EntryNotFoundError):
        store.soma(tmp_path / "w.soma", entries="9XYZ")
