"""The store's writer lock.

Commits are serialised per store so that version numbers and write timestamps
are allocated without races. On a local store this is an advisory ``flock`` on
``<store>/.moldb.lock``: the kernel drops it when a writer dies, so a crashed
process never leaves the store locked. Object stores have no lock primitive;
there, writes must go through one moldb service (see ``docs/versioning.md``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from moldb.errors import ConcurrencyError

__all__ = ["Clock", "writer_lock"]


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" in uri:
        return None
    return Path(uri)


class Clock:
    """The last write timestamp, kept in the lock file (read and written only under the lock)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self) -> int | None:
        """Last reserved timestamp (ms), or None if the file holds none."""
        raw = os.pread(self._fd, 32, 0).strip()
        try:
            return int(raw) if raw else None
        except ValueError:
            return None

    def write(self, ts: int) -> None:
        """Reserve ``ts`` (written before any data of that commit, so a crash only skips it)."""
        data = f"{ts:>20d}\n".encode()
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)


@contextlib.contextmanager
def writer_lock(uri: str, timeout: float = 120.0) -> Iterator[Clock | None]:
    """Hold the store's writer lock for the duration of the block.

    Parameters
    ----------
    uri : str
        Store URI.
    timeout : float
        Seconds to wait before raising :class:`~moldb.errors.ConcurrencyError`.

    Yields
    ------
    Clock or None
        The store's clock (local stores), None where there is no lock file.
    """
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
