"""Records returned by the API: committed versions."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

__all__ = ["IngestFailure", "IngestReport", "VersionInfo"]


@dataclass(frozen=True)
class VersionInfo:
    """One committed version of an entry.

    Attributes
    ----------
    entry : str
        Entry id.
    version : int
        Version number, 1 for the first ingest, strictly increasing per entry.
    timestamp : int
        Commit timestamp, ms since the epoch (moldb's own strictly increasing clock).
    author, message : str
        Who committed and why.
    content_hash : str
        SHA-256 over the content of every column group (equal content ⇒ equal hash).
    parent : int
        Previous version number (0 for the first).
    n_atoms, n_models : int
        Atom-site rows and models.
    blocks : dict[str, int]
        Storage block id of each column group (``topo``, ``xyz``, ``adp``, ``aniso``, ``cif``).
    source : dict
        Source file path, format, sha256 and size.
    summary : dict
        Entry-level metadata (title, method, resolution, chains, ligands ...).
    """

    entry: str
    version: int
    timestamp: int
    author: str
    message: str
    content_hash: str
    parent: int
    n_atoms: int
    n_models: int
    blocks: dict[str, int] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def datetime(self) -> _dt.datetime:
        """Commit time as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.timestamp / 1000, tz=_dt.UTC)

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for ``--json`` output and the wire)."""
        return {
            "entry": self.entry, "version": self.version, "timestamp": self.timestamp,
            "datetime": self.datetime.isoformat(timespec="milliseconds"), "author": self.author,
            "message": self.message, "content_hash": self.content_hash, "parent": self.parent,
            "n_atoms": self.n_atoms, "n_models": self.n_models, "source": self.source, "summary": self.summary,
        }


@dataclass(frozen=True)
class IngestFailure:
    """A file that a bulk ingest did not store.

    Attributes
    ----------
    path : str
        The file.
    error : Exception
        Why (a :class:`~moldb.errors.MoldbError`, or an ``OSError`` for an unreadable file).
    """

    path: str
    error: Exception

    def as_dict(self) -> dict[str, str]:
        """Plain-JSON form."""
        return {"file": self.path, "error": str(self.error), "type": type(self.error).__name__}


@dataclass
class IngestReport:
    """What :meth:`moldb.Store.ingest_many` committed and what it refused.

    Attributes
    ----------
    ingested : list of VersionInfo
        One per stored file, in input order.
    failed : list of IngestFailure
        One per file left out, in input order; nothing of these was written.
    batches : int
        Commits made (each one timestamp, visible at once).
    """

    ingested: list[VersionInfo] = field(default_factory=list)
    failed: list[IngestFailure] = field(default_factory=list)
    batches: int = 0

    @property
    def n_atoms(self) -> int:
        """Atoms stored, over every ingested file."""
        return sum(v.n_atoms for v in self.ingested)

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the shape of ``moldb ingest --json``)."""
        return {"ingested": [v.as_dict() for v in self.ingested], "failed": [f.as_dict() for f in self.failed],
                "batches": self.batches}
