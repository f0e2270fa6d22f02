"""Store administration used by the CLI and service: migrations."""

from __future__ import annotations

from moldb.storage.migrate import migrate

__all__ = ["migrate_store"]


def migrate_store(uri: str) -> list[str]:
    """Apply every pending schema migration to the store at ``uri``; returns the step names."""
    return migrate(uri)
