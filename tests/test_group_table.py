"""Groupings as queryable tables: group_table and select(grouping=..., where=...)."""

from __future__ import annotations

import numpy as np
import pytest

import moldb
from tests.conftest import data


@pytest.fixture(scope="module")
def eil(tmp_path_factory: pytest.TempPathFactory) -> moldb.Store:
    s = moldb.create(tmp_path_factory.mktemp("g") / "s")
    s.ingest(data("mmcif/5eil.cif.gz"))  # 29 TLS groups (REFMAC ranges)
    return s


def _skew(r: np.ndarray) -> np.ndarray:
    x, y, z = r
    return np.array([[0, z, -y], [-z, 0, x], [y, -x, 0]], dtype=np.float64)


def test_tls_group_table_matches_a_per_atom_float64_reference(eil: moldb.Store) -> None:
    t = eil.group_table("5EIL", "tls")
    assert t.num_rows == 29 and t.column("n_members").to_numpy().sum() == eil.grouping("5EIL", "tls").num_rows
    tls = next(d for d in eil.descriptors("5EIL") if d.type == "tls")
    m = eil.grouping("5EIL", "tls")
    at = eil.get("5EIL").atoms
    xyz = np.column_stack([at.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
    for g in (0, 7, 28):
        rows = m.column("row").to_numpy()[m.column("group_index").to_numpy() == g]
        T, L, S, o = tls.T[g], tls.L[g], tls.S[g], tls.origin[g]
        iso = []
        for r in rows:  # U = T + A L A^T + A S + S^T A^T, one atom at a time
            A = _skew(xyz[r] - o)
            iso.append(np.trace(T + A @ L @ A.T + A @ S + S.T @ A.T) / 3)
        assert t.column("u_iso")[g].as_py() == pytest.approx(float(np.mean(iso)), rel=1e-9)
        assert t.column("T_iso")[g].as_py() == pytest.approx(np.trace(T) / 3)
    assert t.column("amplitude").to_pylist() == t.column("u_iso").to_pylist()


def test_select_top_decile_groups(eil: moldb.Store) -> None:
    t = eil.group_table("5EIL", "tls")
    amp = t.column("amplitude").to_numpy()
    top = np.flatnonzero(amp > np.percentile(amp, 90))
    sel = eil.select(grouping="tls", entries="5EIL", where="amplitude > q90")
    assert len(sel) == int(t.column("n_members").to_numpy()[top].sum()) > 0
    m = eil.grouping("5EIL", "tls")
    want = np.sort(m.column("row").to_numpy()[np.isin(m.column("group_index").to_numpy(), top)])
    assert np.array_equal(sel.rows()["5EIL"], want)
    ca = eil.select("name CA", grouping="tls", entries="5EIL", where="tls.u_iso > q90")
    names = ca.to_arrow().column("label_atom_id").to_pylist()
    assert set(names) == {"CA"} and 0 < len(names) < len(sel)


def test_group_filters_on_names_and_counts(eil: moldb.Store) -> None:
    sel = eil.select(grouping="tls", entries="5EIL", where="group == '3'")
    assert len(sel) == eil.group_table("5EIL", "tls").column("n_members")[2].as_py()
    assert len(eil.select(grouping="residue", entries="5EIL", where="n_members > 1000")) == 0


def test_group_filter_errors(eil: moldb.Store) -> None:
    with pytest.raises(moldb.ValidationError, match="unknown column 'nope'"):
        eil.select(grouping="tls", entries="5EIL", where="nope > 1")
    with pytest.raises(moldb.EntryNotFoundError, match="no grouping 'domains'"):
        eil.select(grouping="domains", entries="5EIL")
