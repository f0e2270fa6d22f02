"""``Store.soma``: the atoms-by-descriptor view of many entries as one SOMA Experiment.

obs = atoms of every chosen entry version (``entry``, ``version`` and the
identifier columns of :func:`moldb.ir.views.atoms_by_descriptor`), var = the
union of descriptor features (``iadp.B``, ``aadp.U11``, ``altloc.occupancy``,
``tls.group`` ...), X["values"] = sparse feature values (no cell where a
descriptor does not cover an atom).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ValidationError

__all__ = ["export_soma"]

_VAR_KEYS = ("feature", "descriptor", "type", "regime", "scope", "mode", "operator")


def _entry_list(store: Any, entries: str | Sequence[str] | None) -> list[str]:
    if entries is None:
        return sorted(store.entries().column("entry").to_pylist())
    return [entries] if isinstance(entries, str) else list(entries)


def export_soma(store: Any, uri: str, entries: str | Sequence[str] | None = None,
                version: int | str | None = None) -> Any:
    """Write the view of ``entries`` (latest versions, or ``version`` for one entry) to ``uri``.

    Returns the experiment opened for reading (``tiledbsoma.Experiment``).
    """
    from moldb.storage.soma import open_experiment, write_experiment

    names = _entry_list(store, entries)
    if not names:
        raise ValidationError("the store holds no entries to export")
    if version is not None and len(names) != 1:
        raise ValidationError("version= needs exactly one entry")
    obs_parts: list[pa.Table] = []
    var_rows: dict[str, dict[str, Any]] = {}
    triples: list[tuple[np.ndarray, list[str], np.ndarray]] = []  # per entry: obs offset rows, features, values
    offset = 0
    versions: list[int] = []
    for name in names:
        obs, var, x = store.atoms_by_descriptor(name, version=version)
        rec = store.get(name, version=version, columns=["id"]).version
        versions.append(rec.version)
        n = obs.num_rows
        keep = [c for c in obs.column_names if not c.startswith("group:") and c != "row"]
        part = obs.select(keep)
        part = part.add_column(0, "version", pa.array(np.full(n, rec.version), pa.int64()))
        part = part.add_column(0, "entry", pa.array([rec.entry] * n, pa.string()))
        part = part.append_column("atom_row", obs.column("row"))
        obs_parts.append(part)
        feats = var.column("feature").to_pylist() if var.num_rows else []
        for i, f in enumerate(feats):
            var_rows.setdefault(f, {k: var.column(k)[i].as_py() for k in _VAR_KEYS})
        vals = np.column_stack([x.column(f).to_numpy(zero_copy_only=False) for f in feats]) if feats else \
            np.zeros((n, 0))
        triples.append((np.arange(offset, offset + n), feats, vals))
        offset += n
    features = sorted(var_rows)
    col_of = {f: j for j, f in enumerate(features)}
    rows_l, cols_l, vals_l = [], [], []
    for obs_rows, feats, vals in triples:
        for k, f in enumerate(feats):
            v = vals[:, k]
            ok = ~np.isnan(v)
            rows_l.append(obs_rows[ok])
            cols_l.append(np.full(int(ok.sum()), col_of[f], np.int64))
            vals_l.append(v[ok])
    obs_all = pa.concat_tables(obs_parts, promote_options="permissive")
    var_t = pa.table({k: pa.array([var_rows[f][k] for f in features]) for k in _VAR_KEYS}) if features else \
        pa.table({"feature": pa.array([], pa.string())})
    cat = (np.concatenate(rows_l), np.concatenate(cols_l), np.concatenate(vals_l)) if rows_l else \
        (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    meta = {"moldb.object_type": "moldb.soma_view", "moldb.encoding_version": "1", "moldb.store": store.uri,
            "moldb.entries": ",".join(names), "moldb.versions": ",".join(map(str, versions))}
    write_experiment(uri, obs_all, var_t, cat[0], cat[1], cat[2], meta)
    return open_experiment(uri)
