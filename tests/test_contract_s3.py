"""The store contract (tests/contract.py) on a store in an S3 bucket served by moto on loopback.

``moto_server`` runs as a subprocess for this module (``tests/s3server.py``); TileDB reaches it
through ``vfs.s3.*`` (endpoint override, http, path-style addressing, region, keys) and the
writer lock is the S3 lease of :mod:`moldb.storage.s3lock`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import moldb
from tests.contract import StoreContract
from tests.s3server import MotoServer


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[MotoServer, str]]:
    with MotoServer() as server:
        yield server, server.bucket()


class TestS3Store(StoreContract):
    @pytest.fixture
    def contract_store(self, s3: tuple[MotoServer, str]) -> Iterator[moldb.Store]:
        server, bucket = s3
        s = moldb.create(f"s3://{bucket}/{uuid.uuid4().hex[:8]}/store", config=server.config())
        assert s.uri.startswith("s3://")
        yield s
        s.close()
