"""A JSON description of the store layout, frozen per schema version under ``schemas/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tiledb

from moldb.schema.columns import ANISO_COLUMNS, ATOM_COLUMNS
from moldb.storage.arrays import ARRAY_NAMES, array_schema
from moldb.storage.backend import ENCODING_VERSION, OBJECT_TYPE, SCHEMA_VERSION

__all__ = ["describe", "frozen_path"]


def _filters(fl: Any) -> list[str]:
    return [type(f).__name__ for f in (fl or [])]


def describe() -> dict[str, Any]:
    """The layout of schema :data:`SCHEMA_VERSION` as plain JSON data."""
    ctx = tiledb.Ctx()
    arrays = {}
    for name in ARRAY_NAMES:
        sch = array_schema(name, ctx)
        arrays[name] = {
            "sparse": sch.sparse,
            "capacity": sch.capacity,
            "dims": [{"name": d.name, "dtype": str(d.dtype), "filters": _filters(d.filters)}
                     for d in sch.domain],
            "attrs": [{"name": a.name, "dtype": str(a.dtype), "var": a.isvar, "nullable": a.isnullable,
                       "filters": _filters(a.filters)} for a in sch],
        }
    return {
        "object_type": OBJECT_TYPE, "schema_version": SCHEMA_VERSION, "encoding_version": ENCODING_VERSION,
        "atom_columns": [{"name": c.name, "kind": c.kind, "group": c.group}
                         for c in ATOM_COLUMNS + ANISO_COLUMNS],
        "arrays": arrays,
    }


def frozen_path(root: Path, version: int = SCHEMA_VERSION) -> Path:
    """``schemas/v<version>.json`` under the repository root."""
    return root / "schemas" / f"v{version}.json"


if __name__ == "__main__":  # python -m moldb.storage.describe > schemas/v1.json
    print(json.dumps(describe(), indent=2))
