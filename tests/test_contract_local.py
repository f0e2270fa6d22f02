"""The store contract (tests/contract.py) on a local store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import moldb
from tests.contract import StoreContract


class TestLocalStore(StoreContract):
    @pytest.fixture
    def contract_store(self, tmp_path: Path) -> Iterator[moldb.Store]:
        s = moldb.create(tmp_path / "store")
        yield s
        s.close()
