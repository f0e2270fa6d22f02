"""Resolve "which version" arguments: numbers, tags, points in time.

Time arguments accept an int (ms since the epoch), a :class:`datetime.datetime`
(naive values are taken as UTC) or an ISO-8601 string such as
``"2026-11-01T12:00"``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np

from moldb.errors import EntryNotFoundError, ValidationError
from moldb.schema.records import VersionInfo

__all__ = ["TimeLike", "to_ms", "version_records"]

TimeLike = int | float | str | dt.datetime | dt.date


def to_ms(t: TimeLike) -> int:
    """Convert a time argument to ms since the epoch (UTC).

    Raises
    ------
    ValidationError
        If a string is not ISO-8601.
    """
    if isinstance(t, bool):
        raise ValidationError(f"as_of={t!r} is not a time")
    if isinstance(t, int | float | np.integer):
        return int(t)
    if isinstance(t, str):
        try:
            t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValidationError(
                f"as_of={t!r} is not an ISO-8601 time; write it like 2026-11-01T12:00 or 2026-11-01"
            ) from exc
    if isinstance(t, dt.date) and not isinstance(t, dt.datetime):
        t = dt.datetime(t.year, t.month, t.day, 23, 59, 59, 999000)
    assert isinstance(t, dt.datetime)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def version_records(cells: dict[str, Any]) -> list[VersionInfo]:
    """Turn ``versions`` cells into :class:`VersionInfo` records, ordered by entry then version."""
    out = []
    for i in range(len(cells["version"])):
        src = json.loads(cells["source"][i]) if "source" in cells else {}
        summ = json.loads(cells["summary"][i]) if "summary" in cells else {}
        out.append(VersionInfo(
            entry=_s(cells["entry"][i]), version=int(cells["version"][i]), timestamp=int(cells["ts"][i]),
            author=_s(cells["author"][i]), message=_s(cells["message"][i]),
            content_hash=_s(cells["content_hash"][i]), parent=int(cells["parent"][i]),
            n_atoms=int(cells["n_atoms"][i]), n_models=int(cells["n_models"][i]),
            blocks={k: int(v) for k, v in json.loads(cells["blocks"][i]).items()}, source=src, summary=summ,
        ))
    out.sort(key=lambda r: (r.entry, r.version))
    return out


def pick(records: list[VersionInfo], entry: str, version: int | None, tags: dict[str, int]) -> VersionInfo:
    """The record of ``version`` (latest when ``None``) among one entry's records."""
    if not records:
        raise EntryNotFoundError(f"entry {entry} is not in the store (see `moldb ls`)")
    if version is None:
        return records[-1]
    for r in records:
        if r.version == version:
            return r
    raise EntryNotFoundError(
        f"entry {entry} has no version {version}; it has versions "
        f"{', '.join(str(r.version) for r in records)}" + (f" and tags {', '.join(tags)}" if tags else "")
    )
