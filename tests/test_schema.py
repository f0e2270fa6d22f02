"""The frozen schema JSON, the migration runner and the v1 fixture store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import moldb
from moldb.storage.backend import Backend
from moldb.storage.describe import describe, frozen_path
from moldb.storage.migrate import Step, migrate, plan

ROOT = Path(__file__).resolve().parents[1]
V1 = ROOT / "tests" / "data" / "stores" / "v1"


def test_code_matches_frozen_schema() -> None:
    frozen = json.loads(frozen_path(ROOT).read_text())
    assert describe() == frozen, "schema drifted: add schemas/v<N+1>.json and a migration step"


def test_store_metadata_has_object_type_and_versions(tmp_path: Path) -> None:
    moldb.create(tmp_path / "s")
    b = Backend(str(tmp_path / "s"))
    assert b.meta["moldb.object_type"] == "moldb.store"
    assert b.meta["moldb.encoding_version"] == "1"
    assert b.schema_version == 1


def test_v1_fixture_store_reads(tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(V1, copy)
    st = moldb.open(copy)
    s = st.get("1O1Z")
    assert s.atoms.num_rows == 2302
    assert s.version.author == "fixture"
    assert s.category("pdbx_refine_tls").num_rows == 1
    assert np.isclose(s.atoms.column("Cartn_x")[0].as_py(), 3.054)


def test_newer_store_is_refused_and_older_needs_explicit_migrate(tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(V1, copy)
    b = Backend(str(copy))
    b.set_meta("moldb.schema_version", 99)
    with pytest.raises(moldb.SchemaVersionError, match="moldb migrate"):
        moldb.open(copy)
    with pytest.raises(moldb.SchemaVersionError, match="newer than this moldb"):
        migrate(str(copy))
    b.set_meta("moldb.schema_version", 0)
    with pytest.raises(moldb.SchemaVersionError, match="no migration from schema v0"):
        migrate(str(copy))
    calls: list[int] = []
    step = Step(0, 1, lambda be: calls.append(be.schema_version), "m0_to_1_test")
    assert plan(0, 1, [step]) == [step]
    assert migrate(str(copy), available=[step]) == ["m0_to_1_test"]
    assert calls == [0]
    assert moldb.open(copy).get("1O1Z").atoms.num_rows == 2302


def test_category_from_lists_and_from_a_table_are_the_same() -> None:
    from moldb.schema.parsed import MASK_DOT, MASK_QUESTION, Category, CategoryTables

    masks = {"b": np.array([0, MASK_DOT, MASK_QUESTION], dtype=np.uint8)}
    lazy = Category("refine", masks=masks, lists={"a": ["1.5", "x", "y z"], "b": ["q", None, None]})
    table = pa.table({"a": pa.array(["1.5", "x", "y z"]), "b": pa.array(["q", None, None], pa.string())})
    eager = Category("refine", table, dict(masks))
    assert lazy.items == eager.items == ["a", "b"] and lazy.num_rows == eager.num_rows == 3
    assert lazy.value("a", 2) == eager.value("a", 2) == "y z" and lazy.value("b", 1) is eager.value("b", 1) is None
    assert lazy.pylists() == eager.pylists() == {"a": ["1.5", "x", "y z"], "b": ["q", None, None]}
    assert lazy == eager and lazy.table.equals(table)
    assert lazy != Category("refine", table, {})  # the null kinds differ
    assert Category("empty").num_rows == 0 and Category("empty").items == []
    tables = CategoryTables([lazy, Category("cell", lists={"length_a": ["10.0"]})])
    assert list(tables) == ["refine", "cell"] and len(tables) == 2
    assert tables["cell"].column("length_a").to_pylist() == ["10.0"] and tables.get("nope") is None
