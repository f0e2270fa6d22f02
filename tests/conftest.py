"""Shared fixtures: the real-data corpus in ../shared/data and fresh stores."""

from __future__ import annotations

from pathlib import Path

import pytest

import moldb

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data(rel: str) -> Path:
    """Path of a corpus file; skips cleanly only if the shared corpus is absent."""
    p = DATA / rel
    if not p.exists():
        pytest.fail(f"shared corpus file missing: {p}")
    return p


@pytest.fixture
def store(tmp_path: Path) -> moldb.Store:
    s = moldb.create(tmp_path / "store")
    yield s
    s.close()
