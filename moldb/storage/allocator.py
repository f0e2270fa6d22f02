"""Start glibc's allocator in the steady state it reaches by itself, so small reads stop page-faulting.

glibc serves allocations of ``M_MMAP_THRESHOLD`` (128 kB at start) or more with fresh ``mmap``s
and returns free memory at the top of the heap beyond ``M_TRIM_THRESHOLD`` (256 kB) to the
system. Each read of a few chunk cells allocates and frees a few such buffers — TileDB's tile
buffers (0.5–1 MB each), the cells' bytes, decompressed pages — so in a fresh process every
call faults its memory in again and the kernel zeroes it (~1–4 µs per 4 kB page on the 2-core
machine). glibc raises both thresholds itself once a process frees a large mmapped block
(``mmap_threshold = size`` up to 32 MB, ``trim_threshold = 2 × size``), so a process that has
read one large entry runs small selections twice as fast as a fresh one (measured: to_arrow of
1,011 atoms of BIG8, 6.2–7.5 → 3.3 ms; to_numpy('xyz') 4.6–5.6 → 2.1–3.0 ms).

:func:`tune` sets those thresholds to that steady state — 32 MB and 64 MB — once, when moldb
creates its first TileDB context. The price is the one glibc's own adjustment already pays: up
to 64 MB of freed heap may stay with the process, and blocks under 32 MB come from the heap.
``MOLDB_MALLOC_TUNING=0`` leaves the allocator alone; non-glibc systems are never touched.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune"]

MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc sets with it
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_DONE: list[bool] = []


def tune() -> bool:
    """Set glibc's mmap and trim thresholds once per process; whether they were set."""
    if _DONE:
        return _DONE[0]
    ok = False
    if os.environ.get("MOLDB_MALLOC_TUNING", "1") != "0" and platform.system() == "Linux" \
            and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(None)
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):
            ok = False
    _DONE.append(ok)
    return ok
