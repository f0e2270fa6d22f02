"""Writing exported bytes to disk, gzipped when the path ends with ``.gz``."""

from __future__ import annotations

import gzip
from pathlib import Path

__all__ = ["write_output"]


def write_output(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path``, gzip-compressed for a ``.gz`` suffix."""
    p = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if p.name.lower().endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=6)
    p.write_bytes(raw)
    return p
