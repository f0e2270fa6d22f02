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
    │       └── StorageUnavailableError                  object store / network unreachable (retryable)
    ├── EntryNotFoundError (KeyError)                no such entry / version / tag
    ├── DuplicateEntryError (ValueError)             ingest of an id that is already stored
    ├── ParseError (ValueError)                      a file could not be read; names file and problem
    │   └── UnsupportedFormatError                   the file's format is not one moldb reads
    ├── ValidationError (ValueError)                 data violates the schema (names field and value)
    ├── ConcurrencyError (RuntimeError)              a lock could not be taken in time (retryable)
    ├── AccessError (PermissionError)                the caller may not do this
    │   ├── AuthenticationError                      no, unknown, expired or revoked token (HTTP 401)
    │   └── PermissionDeniedError                    authenticated, but the role or namespace forbids it (403)
    ├── LimitExceededError (ValueError)              upload, result or time limit exceeded (413 / 422)
    │   └── RateLimitedError                         too many requests for this token (429, retryable)
    └── ServiceError (ConnectionError)               a moldb service failed or could not be reached
        └── ServiceUnavailableError                  the service is down or overloaded (503, retryable)

Errors a caller may simply retry later carry ``retryable = True``.

Messages state the fact and the fix.
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "AuthenticationError",
    "ConcurrencyError",
    "DuplicateEntryError",
    "EntryNotFoundError",
    "LimitExceededError",
    "MoldbError",
    "ParseError",
    "PermissionDeniedError",
    "RateLimitedError",
    "SchemaVersionError",
    "ServiceError",
    "ServiceUnavailableError",
    "StorageError",
    "StorageUnavailableError",
    "StoreError",
    "StoreExistsError",
    "StoreNotFoundError",
    "UnsupportedFormatError",
    "ValidationError",
]


class MoldbError(Exception):
    """Root of every error raised by moldb.

    Attributes
    ----------
    retryable : bool
        True where the same call may succeed later unchanged (a lock, a network or
        object-store outage, a rate limit).
    """

    retryable: bool = False


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

    retryable = True


class StorageUnavailableError(StorageError):
    """The object store or network could not be reached; nothing was committed. Retry later."""

    retryable = True


class AccessError(MoldbError, PermissionError):
    """The caller is not allowed to do this."""


class AuthenticationError(AccessError):
    """No token, or an unknown, expired or revoked one."""


class PermissionDeniedError(AccessError):
    """The token is valid but its role or lab namespace does not allow the operation."""


class LimitExceededError(MoldbError, ValueError):
    """A request exceeded a service limit (upload size, result rows, time)."""


class RateLimitedError(LimitExceededError):
    """Too many requests for this token; retry after the interval the service gives."""

    retryable = True


class ServiceError(MoldbError, ConnectionError):
    """A moldb service failed or could not be reached."""


class ServiceUnavailableError(ServiceError):
    """The service is down, restarting or overloaded; retry later."""

    retryable = True
