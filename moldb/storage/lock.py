"""The store's writer lock.

Commits are serialised per store so that version numbers and write timestamps
are allocated without races. On a local store this is an advisory ``flock`` on
``<store>/.moldb.lock``: the kernel drops it when a writer dies, so a crashed
process never leaves the store locked. On ``s3://`` stores it is a lease object
written with S3 conditional writes (:mod:`moldb.storage.s3lock`,
``docs/storage-s3.md``). Other object stores have no lock here; there, writes
must go through one moldb service (see ``docs/versioning.md``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from moldb.errors import ConcurrencyError

if TYPE_CHECKING:
    from moldb.storage.s3lock import S3Lease

__all__ = ["Clock", "writer_lock"]


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" in uri:
        return None
    return Path(uri)


class Clock:
    """The last write timestamp and a commit counter, kept in the lock file.

    Read and written only under the lock. The counter drives the light
    consolidation that keeps fragment counts (and so open/read costs) bounded.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def _fields(self) -> list[int]:
        try:
            return [int(x) for x in os.pread(self._fd, 64, 0).split()]
        except ValueError:
            return []

    def read(self) -> int | None:
        """Last reserved timestamp (ms), or None if the file holds none."""
        f = self._fields()
        return f[0] if f else None

    def count(self) -> int:
        """Commits recorded so far."""
        f = self._fields()
        return f[1] if len(f) > 1 else 0

    def write(self, ts: int, count: int | None = None) -> None:
        """Reserve ``ts`` (written before any data of that commit, so a crash only skips it)."""
        n = self.count() if count is None else count
        os.pwrite(self._fd, f"{ts:>20d} {n:>12d}\n".encode(), 0)
        os.fsync(self._fd)

    def fence(self) -> None:
        """Nothing to check before a commit point: a held ``flock`` cannot be lost."""


@contextlib.contextmanager
def writer_lock(uri: str, timeout: float = 120.0,
                config: Mapping[str, str] | None = None) -> Iterator[Clock | S3Lease | None]:
    """Hold the store's writer lock for the duration of the block.

    Parameters
    ----------
    uri : str
        Store URI.
    timeout : float
        Seconds to wait before raising :class:`~moldb.errors.ConcurrencyError`.
    config : mapping, optional
        Store settings (endpoint, keys, ``moldb.lock.*``) for ``s3://`` stores.

    Yields
    ------
    Clock, S3Lease or None
        The store's clock (local stores; the lease on ``s3://``), None where there is no lock.
    """
    if uri.startswith("s3://"):
        from moldb.storage.s3lock import S3Lease

        lease = S3Lease(uri, dict(config or {})).acquire(timeout)
        try:
            yield lease
        finally:
            lease.release()
        return
    path = _local_path(uri)
    if path is None:
        yield None
        return
    fd = os.open(path / ".moldb.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConcurrencyError(
                        f"{uri}: another process holds the writer lock for more than {timeout:.0f} s; "
                        "retry when its ingest or deposit has finished"
                    ) from None
                time.sleep(0.01)
        yield Clock(fd)
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
