"""store.sql: DuckDB over streamed atoms and the entries table, checked against the atom tables."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import moldb
from tests.conftest import data

pytest.importorskip("duckdb")


@pytest.fixture
def two(store: moldb.Store) -> moldb.Store:
    store.ingest(data("mmcif/1o1z.cif.gz"))
    store.ingest(data("mmcif/3o5r.cif.gz"))
    return store


def test_group_by_counts_equal_the_atom_tables(two: moldb.Store) -> None:
    got = two.sql("SELECT label_comp_id, count(*) AS n FROM atoms GROUP BY 1").to_pylist()
    want: Counter[str] = Counter()
    for e in ("1O1Z", "3O5R"):
        want.update(two.get(e).atoms.column("label_comp_id").to_pylist())
    assert {r["label_comp_id"]: r["n"] for r in got} == dict(want)


def test_join_with_entries_and_per_entry_aggregate(two: moldb.Store) -> None:
    t = two.sql("SELECT a.entry, e.resolution, avg(a.B_iso_or_equiv) AS b FROM atoms a "
                "JOIN entries e USING (entry) GROUP BY ALL ORDER BY a.entry")
    rows = t.to_pylist()
    assert [r["entry"] for r in rows] == ["1O1Z", "3O5R"]
    b = two.get("3O5R").atoms.column("B_iso_or_equiv").to_numpy()
    assert rows[1]["b"] == pytest.approx(float(np.mean(b)))
    assert rows[0]["resolution"] == pytest.approx(two.history("1O1Z")[0].summary["resolution"])


def test_selection_restricts_atoms_and_columns(two: moldb.Store) -> None:
    sel = two.select("name CA", entries="1O1Z")
    t = two.sql("SELECT count(*) AS n, min(label_atom_id) AS a FROM atoms", selection=sel,
                columns=["label_atom_id"])
    assert t.to_pylist() == [{"n": len(sel), "a": "CA"}]
    with pytest.raises(moldb.ValidationError, match="B_iso_or_equiv"):
        two.sql("SELECT B_iso_or_equiv FROM atoms", columns=["label_atom_id"])


def test_bad_sql_is_a_validation_error(two: moldb.Store) -> None:
    with pytest.raises(moldb.ValidationError, match="SQL query failed"):
        two.sql("SELEC nonsense")
    with pytest.raises(moldb.ValidationError, match="no_such_table"):
        two.sql("SELECT * FROM no_such_table")
