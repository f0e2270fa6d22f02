"""Shared fixtures: the real-data corpus in ../shared/data and fresh stores."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

import moldb

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Keep moldb's user cache (the compact CCD) out of the home directory during tests."""
    os.environ["MOLDB_CACHE_DIR"] = tempfile.mkdtemp(prefix="moldb-test-cache-")


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


def block_read_spy(store: moldb.Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every block id ``store`` reads from then on (the list fills as reads happen)."""
    backend = store._backend
    seen: list[int] = []
    real = backend.read_blocks

    def spy(blocks: Any, attrs: Any = ("data",)) -> Any:
        seen.extend(int(b) for b in blocks)
        return real(blocks, attrs)

    monkeypatch.setattr(backend, "read_blocks", spy)
    return seen
