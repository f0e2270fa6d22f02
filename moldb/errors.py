"""The moldb exception tree.

Every error moldb raises derives from :class:`MoldbError`, and each subclass also
derives from the builtin exception a Python user would expect to catch, so
``except KeyError`` keeps working for a missing entry and ``except ValueError``
for bad input::

    MoldbError (Exception)
    ├── StoreError
    │   ├── StoreNotFoundError (FileNotFoundError)   no store at the URI
    │   ├── StoreExistsError (FileExistsError)       create() on an existing store
    │   ├── SchemaVersionError (RuntimeError)        store written by another schema version
    │   └── StorageError (OSError)                   the storage engine failed (mapped TileDB errors)
    ├── EntryNotFoundError (KeyError)                no such entry / version / tag
    ├── DuplicateEntryError (ValueError)             ingest of an id that is already stored
    ├── ParseError (ValueError)                      a file could not be read; names file and problem
    │   └── UnsupportedFormatError                   the file's format is not one moldb reads
    ├── ValidationError (ValueError)                 data violates the schema (names field and value)
    └── ConcurrencyError (RuntimeError)              a lock could not be taken in time

Messages state the fact and the fix.
"""

from __future__ import annotations

__all__ = [
    "ConcurrencyError",
    "DuplicateEntryError",
    "EntryNotFoundError",
    "MoldbError",
    "ParseError",
    "SchemaVersionError",
    "StorageError",
    "StoreError",
    "StoreExistsError",
    "StoreNotFoundError",
    "UnsupportedFormatError",
    "ValidationError",
]


class MoldbError(Exception):
    """Root of every error raised by moldb."""


class StoreError(MoldbError):
    """A problem with the store as a whole."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No moldb store exists at the given URI."""


class StoreExistsError(StoreError, FileExistsError):
    """A store (or another object) already exists at the URI given to ``create``."""


class SchemaVersionError(StoreError, RuntimeError):
    """The store was written with a schema version this moldb cannot use as is."""


class StorageError(StoreError, OSError):
    """The storage engine (TileDB) reported an error."""


class EntryNotFoundError(MoldbError, KeyError):
    """The entry, version or tag asked for is not in the store."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the sentence readable
        return str(self.args[0]) if self.args else ""


class DuplicateEntryError(MoldbError, ValueError):
    """An entry with this id is already stored."""


class ParseError(MoldbError, ValueError):
    """An input file could not be parsed.

    Parameters
    ----------
    path : str
        The file that failed.
    problem : str
        What is wrong with it.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnsupportedFormatError(ParseError):
    """The file's format is not one moldb reads."""


class ValidationError(MoldbError, ValueError):
    """Data does not satisfy the schema."""


class ConcurrencyError(MoldbError, RuntimeError):
    """A writer lock could not be acquired."""
