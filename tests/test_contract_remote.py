"""The store contract (tests/contract.py) through ``moldb.connect`` against a real ``moldb serve``.

Each test gets a fresh local store served by its own ``moldb serve`` subprocess on a free
loopback port, and a depositor token made with ``moldb user add``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import moldb
from tests._service import Service, make_store, make_token
from tests.contract import StoreContract

pytest.importorskip("fastapi", reason="the service extra is not installed: pip install 'moldb[service]'")


class TestRemoteStore(StoreContract):
    @pytest.fixture
    def contract_store(self, tmp_path: Path) -> Iterator[moldb.RemoteStore]:
        store = make_store(tmp_path / "store")
        token = make_token(store, "contract", lab="contract", role="depositor")
        with Service(store, tmp_path / "serve.log") as svc, moldb.connect(svc.url, token=token) as remote:
            yield remote
