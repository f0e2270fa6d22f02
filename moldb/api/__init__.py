"""The public facade: :class:`Store`, :class:`Structure`, :func:`open`, :func:`create`."""

from moldb.api.store import Store, create, open
from moldb.api.structure import Structure

__all__ = ["Store", "Structure", "create", "open"]
