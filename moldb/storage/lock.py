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

__all__ = ["writer_lock"]


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" in uri:
        return None
    return Path(uri)


@contextlib.contextmanager
def writer_lock(uri: str, timeout: float = 120.0) -> Iterator[None]:
    """Hold the store's writer lock for the duration of the block.

    Parameters
    ----------
    uri : str
        Store URI.
    timeout : float
        Seconds to wait before raising :class:`~moldb.errors.ConcurrencyError`.
    """
    path = _local_path(uri)
    if path is None:
        yield
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
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
