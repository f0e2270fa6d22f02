"""Write the atoms-by-descriptor view as a TileDB-SOMA Experiment.

The SOMA data model (TileDB-SOMA / CELLxGENE Census) is an ``obs`` dataframe, a
measurement with a ``var`` dataframe and ``X`` layers. moldb's view maps onto it
directly: obs = atoms, var = descriptor features, ``X["values"]`` = the feature
value of each atom, sparse (an atom outside a descriptor's scope has no cell, as
an unexpressed gene has none). The experiment is a separate TileDB group written
with ``tiledbsoma`` itself, so plain ``tiledbsoma`` (and ``tiledbsoma.io.to_anndata``)
reads it without moldb.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import StorageError, StoreExistsError, ValidationError

__all__ = ["MEASUREMENT", "X_LAYER", "open_experiment", "write_experiment"]

MEASUREMENT = "descriptors"
X_LAYER = "values"


def _soma_table(t: pa.Table) -> pa.Table:
    """``t`` with a ``soma_joinid`` index and types SOMA dataframes accept (dictionaries decoded)."""
    cols: dict[str, pa.Array | pa.ChunkedArray] = {"soma_joinid": pa.array(np.arange(t.num_rows), pa.int64())}
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_large_string(col.type):
            col = col.cast(pa.string())
        cols[name] = col
    return pa.table(cols)


def write_experiment(uri: str, obs: pa.Table, var: pa.Table, rows: np.ndarray, cols: np.ndarray,
                     values: np.ndarray, metadata: Mapping[str, Any]) -> None:
    """Create a SOMA Experiment at ``uri``.

    Parameters
    ----------
    uri : str
        A new location (local path or any URI TileDB accepts).
    obs : pyarrow.Table
        One row per atom.
    var : pyarrow.Table
        One row per feature.
    rows, cols : numpy.ndarray of int64, shape (nnz,)
        Coordinates of the stored values (obs row, var row).
    values : numpy.ndarray of float64, shape (nnz,)
    metadata : mapping
        Written to the experiment's metadata (``moldb.*`` keys: store, entries, versions).

    Raises
    ------
    StoreExistsError
        Something already exists at ``uri``.
    """
    import tiledbsoma as soma

    if soma.Experiment.exists(uri) or soma.Collection.exists(uri):
        raise StoreExistsError(f"{uri}: a SOMA object already exists here; choose a new path or delete it")
    if var.num_rows == 0:
        raise ValidationError("no descriptor features to export: the entries carry no descriptors")
    obs_t, var_t = _soma_table(obs), _soma_table(var)
    try:
        with soma.Experiment.create(uri) as exp:
            df = exp.add_new_dataframe("obs", schema=obs_t.schema, index_column_names=["soma_joinid"],
                                       domain=[(0, max(obs_t.num_rows - 1, 0))])
            df.write(obs_t)
            ms = exp.add_new_collection("ms")
            meas = ms.add_new_collection(MEASUREMENT, soma.Measurement)
            vdf = meas.add_new_dataframe("var", schema=var_t.schema, index_column_names=["soma_joinid"],
                                         domain=[(0, var_t.num_rows - 1)])
            vdf.write(var_t)
            x = meas.add_new_collection("X")
            arr = x.add_new_sparse_ndarray(X_LAYER, type=pa.float64(), shape=(obs_t.num_rows, var_t.num_rows))
            if len(values):
                arr.write(pa.table({"soma_dim_0": pa.array(rows, pa.int64()),
                                    "soma_dim_1": pa.array(cols, pa.int64()),
                                    "soma_data": pa.array(values, pa.float64())}))
            for k, v in metadata.items():
                exp.metadata[k] = v
    except (soma.SOMAError, ValueError) as exc:  # pragma: no cover - engine failures are environment-specific
        raise StorageError(f"{uri}: writing the SOMA experiment failed: {exc}") from exc


def open_experiment(uri: str) -> Any:
    """Open the SOMA Experiment at ``uri`` for reading (a ``tiledbsoma.Experiment``)."""
    import tiledbsoma as soma

    return soma.Experiment.open(uri)
