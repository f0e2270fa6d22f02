"""Extension point: derived data written inside the same commit as an entry's blocks.

A hook is called by the loader under the store's writer lock, after the new
blocks are written and before the ``versions`` cell (the commit point), so what
it writes becomes visible atomically with the version — or, after a crash,
not at all (unreferenced rows, like orphan blocks).

Hooks receive ``(backend, ts, entry_id, parsed_entry, blocks, new_groups)``:
``blocks`` maps every column group to its block id for the new version and
``new_groups`` lists the groups whose blocks were written by this commit (the
others are shared with the previous version, so their derived data exists).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["IngestHook", "ingest_hooks", "register_ingest_hook"]

IngestHook = Callable[[Any, int, str, Any, dict[str, int], list[str]], None]
_HOOKS: list[tuple[str, IngestHook]] = []


def register_ingest_hook(name: str, hook: IngestHook) -> None:
    """Register ``hook`` under ``name`` (re-registering a name replaces it)."""
    global _HOOKS
    _HOOKS = [(n, h) for n, h in _HOOKS if n != name] + [(name, hook)]


def ingest_hooks() -> list[tuple[str, IngestHook]]:
    """Registered hooks, in registration order."""
    return list(_HOOKS)
