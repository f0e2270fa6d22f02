"""A process-wide, byte-bounded LRU cache of block blobs.

Blocks are immutable: a block id, once written, always holds the same bytes (a new
version writes new blocks; purged versions' blocks are never referenced again). Their
blobs can therefore be cached without any invalidation, which removes the ~2 ms floor of
a TileDB query from repeated reads of hot entries — the case of a service answering many
small selections on the same entries. The cache is shared by every :class:`Backend` of the
process (the service opens one store handle per worker thread), keyed by store identity
and block id, and bounded in bytes: ``MOLDB_BLOCK_CACHE_MB`` (default 256; 0 disables it).
"""

from __future__ import annotations

import os

from moldb._lru import ByteLRU

__all__ = ["shared_cache"]


shared_cache = ByteLRU(int(float(os.environ.get("MOLDB_BLOCK_CACHE_MB", "256")) * (1 << 20)))
