"""Explicit schema migrations: a store is upgraded by ``moldb migrate``, never silently.

Each step is a module ``moldb/storage/migrations/m<from>_to_<to>.py`` exposing
``FROM: int``, ``TO: int`` and ``upgrade(backend) -> None``. :func:`migrate`
applies the chain of steps from the store's version to this moldb's version and
records each step in the store's metadata.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from moldb.errors import SchemaVersionError
from moldb.storage.backend import SCHEMA_VERSION, Backend

__all__ = ["Step", "migrate", "plan", "steps"]


@dataclass(frozen=True)
class Step:
    """One migration step."""

    source: int
    target: int
    upgrade: Callable[[Backend], None]
    name: str


def steps() -> list[Step]:
    """Every migration step shipped with moldb."""
    from moldb.storage import migrations

    out = []
    for mod in pkgutil.iter_modules(migrations.__path__):
        m = importlib.import_module(f"moldb.storage.migrations.{mod.name}")
        out.append(Step(int(m.FROM), int(m.TO), m.upgrade, mod.name))
    return sorted(out, key=lambda s: s.source)


def plan(current: int, target: int = SCHEMA_VERSION, available: list[Step] | None = None) -> list[Step]:
    """The chain of steps from ``current`` to ``target``.

    Raises
    ------
    SchemaVersionError
        If the store is newer than this moldb or no chain of steps exists.
    """
    if current > target:
        raise SchemaVersionError(
            f"store schema v{current} is newer than this moldb (v{target}); upgrade moldb to read it"
        )
    by_source = {s.source: s for s in (available if available is not None else steps())}
    chain = []
    v = current
    while v < target:
        if v not in by_source:
            raise SchemaVersionError(f"no migration from schema v{v}; this moldb cannot upgrade the store")
        chain.append(by_source[v])
        v = by_source[v].target
    return chain


def migrate(uri: str, available: list[Step] | None = None, target: int = SCHEMA_VERSION) -> list[str]:
    """Upgrade the store at ``uri`` to ``target``; returns the names of the steps applied."""
    backend = Backend(uri)
    applied = []
    for step in plan(backend.schema_version, target, available):
        step.upgrade(backend)
        backend.set_meta("moldb.schema_version", step.target)
        backend.schema_version = step.target
        applied.append(step.name)
    return applied
