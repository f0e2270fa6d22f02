"""Helpers shared by the routers: parsing version/time parameters, VersionInfo JSON."""

from __future__ import annotations

import dataclasses
from typing import Any

from moldb.schema.records import VersionInfo

__all__ = ["parse_as_of", "parse_version", "version_json"]


def parse_version(v: str | int | None) -> int | str | None:
    """A version query parameter: a number, a tag name, or None (latest)."""
    if v is None or isinstance(v, int):
        return v
    return int(v) if v.isdigit() else v


def parse_as_of(t: str | None) -> int | str | None:
    """An ``as_of`` query parameter: ms since the epoch or ISO-8601 text."""
    if t is None:
        return None
    return int(t) if t.lstrip("-").isdigit() else t


def version_json(v: VersionInfo) -> dict[str, Any]:
    """The wire form of a :class:`VersionInfo`: ``dataclasses.asdict``."""
    return dataclasses.asdict(v)
