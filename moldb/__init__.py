"""moldb — a TileDB-backed, versioned array database for macromolecular structures.

Quick start::

    import moldb
    store = moldb.create("./lab-store")          # or moldb.open("./lab-store")
    v = store.ingest("1o1z.cif.gz")              # VersionInfo: entry, version, timestamp, counts
    s = store.get("1O1Z")                        # Structure
    s.atoms                                      # pyarrow.Table, one row per _atom_site row
    s.write("1o1z.bcif")

Submodules are imported lazily, so ``import moldb.errors`` or ``moldb.schema``
does not load TileDB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from moldb.errors import (
    AccessError,
    AuthenticationError,
    ConcurrencyError,
    DuplicateEntryError,
    EntryNotFoundError,
    LimitExceededError,
    MoldbError,
    ParseError,
    PermissionDeniedError,
    RateLimitedError,
    SchemaVersionError,
    ServiceError,
    ServiceUnavailableError,
    StorageError,
    StorageUnavailableError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
    UnsupportedFormatError,
    ValidationError,
)

if TYPE_CHECKING:
    from moldb.api import Store, Structure, create, open
    from moldb.client import RemoteStore, connect
    from moldb.schema.records import VersionInfo

__version__ = "0.1.0"

__all__ = [
    "AccessError",
    "AuthenticationError",
    "ConcurrencyError",
    "DuplicateEntryError",
    "EntryNotFoundError",
    "IngestFailure",
    "IngestReport",
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
    "Store",
    "StoreError",
    "StoreExistsError",
    "StoreNotFoundError",
    "Structure",
    "UnsupportedFormatError",
    "ValidationError",
    "VersionInfo",
    "__version__",
    "connect",
    "create",
    "open",
]

_LAZY = {"Store": "moldb.api", "Structure": "moldb.api", "create": "moldb.api", "open": "moldb.api",
         "VersionInfo": "moldb.schema.records", "IngestReport": "moldb.schema.records",
         "IngestFailure": "moldb.schema.records"}
_LAZY.update({"connect": "moldb.client", "RemoteStore": "moldb.client"})
__all__ += ["RemoteStore"]
_IR_EXPORTS = ("TLS", "AltlocStates", "AnisotropicADP", "Descriptor", "Edge", "Ensemble", "FitBlock", "Grouping",
               "IsotropicADP", "Provenance", "ScopeDAG")
_LAZY.update({n: "moldb.ir" for n in _IR_EXPORTS})
__all__ += list(_IR_EXPORTS)
_LAZY.update({"FrameLabels": "moldb.ir.trajectory", "TrajectoryDescriptor": "moldb.ir.trajectory"})
__all__ += ["FrameLabels", "TrajectoryDescriptor"]
_MOTION_EXPORTS = ("ExternalFrames", "NeuralDecoder", "NormalModes", "RigidBody")
_LAZY.update({n: "moldb.ir.motion" for n in _MOTION_EXPORTS})
__all__ += list(_MOTION_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'moldb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
