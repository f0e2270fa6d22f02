"""A thread-safe LRU bounded by the total size of its values (a low-level utility, no moldb imports).

Used by :mod:`moldb.storage.block_cache` for immutable block blobs and by the service for encoded
responses of immutable versions: both hold values that never go stale, so they need no invalidation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["ByteLRU"]


class ByteLRU:
    """Thread-safe LRU of ``key → blob`` bounded by the total blob size.

    Parameters
    ----------
    max_bytes : int
        Capacity; blobs larger than a quarter of it are not cached.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> Any | None:
        """The cached blob for ``key`` (and mark it recently used), or None."""
        with self._lock:
            v = self._items.get(key)
            if v is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return v

    def put(self, key: tuple[Any, ...], blob: Any) -> None:
        """Cache ``blob``, evicting the least recently used blobs beyond the capacity."""
        size = len(blob)
        if self.max_bytes <= 0 or size > self.max_bytes // 4:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = blob
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, ev = self._items.popitem(last=False)
                self._bytes -= len(ev)

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._bytes

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
