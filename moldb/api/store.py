"""``Store``: the facade users, the CLI and the service talk to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.api.structure import Structure
from moldb.errors import EntryNotFoundError, ValidationError
from moldb.ingest.formats import read_file
from moldb.ingest.load import commit, validate_entry_id
from moldb.schema.records import VersionInfo
from moldb.storage.backend import Backend
from moldb.storage.entries import read_atom_table, read_categories
from moldb.versioning.resolve import TimeLike, pick, to_ms, version_records

__all__ = ["Store", "create", "open"]

_builtin_open = open


class Store:
    """A moldb store: a TileDB group of versioned, store-wide arrays.

    Use :func:`moldb.open` or :func:`moldb.create` rather than the constructor.

    Parameters
    ----------
    backend : Backend
    as_of : int, optional
        Pin every read to the store as it was at this time (ms since the epoch).
    """

    def __init__(self, backend: Backend, as_of: int | None = None) -> None:
        self._backend = backend
        self.uri = backend.uri
        self.as_of = as_of

    def __repr__(self) -> str:
        pinned = f" as_of={self.as_of}" if self.as_of is not None else ""
        return f"<moldb.Store {self.uri}{pinned}>"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release cached TileDB handles."""
        self._backend.close()

    # -- writing ------------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.as_of is not None:
            raise ValidationError(f"{self.uri} is open as_of={self.as_of} (read-only); open it without as_of "
                                  "to write")

    def ingest(self, path: str | Path, entry: str | None = None, format: str | None = None,
               author: str = "", message: str = "") -> VersionInfo:
        """Parse a structure file and commit it as version 1 of a new entry.

        Parameters
        ----------
        path : str or pathlib.Path
            mmCIF, PDB, BinaryCIF or MMTF file (plain or gzip).
        entry : str, optional
            Store under this id instead of the file's own.
        format : str, optional
            Skip format detection.
        author, message : str
            Recorded in the history.

        Returns
        -------
        VersionInfo
            Entry id, version, timestamp and counts of what was committed.

        Raises
        ------
        ParseError
            The file cannot be read (nothing is written).
        DuplicateEntryError
            The entry id is already stored (use :meth:`deposit`).
        """
        self._check_writable()
        parsed = read_file(path, format=format)
        return commit(self._backend, parsed, entry_id=entry, author=author,
                      message=message or f"ingest {Path(path).name}", mode="new")

    def deposit(self, path: str | Path, entry: str | None = None, message: str = "", author: str = "",
                format: str | None = None) -> VersionInfo:
        """Commit a file as the next version of ``entry`` (creating it if new).

        Column groups whose content did not change are shared with the previous
        version, so a B-factor-only re-refinement costs only its ADP block.
        """
        self._check_writable()
        parsed = read_file(path, format=format)
        return commit(self._backend, parsed, entry_id=entry, author=author, message=message, mode="deposit")

    # -- reading ------------------------------------------------------------------------------------
    def _records(self, entry: str | None, as_of: int | None = None) -> list[VersionInfo]:
        t = as_of if as_of is not None else self.as_of
        if t is not None and self.as_of is not None:
            t = min(t, self.as_of)
        cells = self._backend.versions_index()
        sel = np.ones(len(cells["version"]), dtype=bool) if entry is None else cells["entry"] == entry
        if t is not None:  # versions are never rewritten: filtering on the commit time is time travel
            sel &= cells["ts"] <= t
        if entry is not None and not sel.any() and t is None:
            cells = self._backend.versions_index(refresh=True)  # maybe written by another process
            sel = cells["entry"] == entry
        idx = np.flatnonzero(sel)
        return version_records({k: np.asarray(v)[idx] for k, v in cells.items()})

    def _tags(self, entry: str) -> dict[str, int]:
        cells = self._backend.read_tags(entry)
        return {(t.decode() if isinstance(t, bytes) else str(t)): int(v)
                for t, v in zip(cells["tag"], cells["version"], strict=True)}

    def _resolve(self, entry: str, version: int | str | None, as_of: TimeLike | None) -> VersionInfo:
        eid = validate_entry_id(entry)
        records = self._records(eid, None if as_of is None else to_ms(as_of))
        if not records:
            when = "" if as_of is None and self.as_of is None else " at that time"
            raise EntryNotFoundError(f"entry {eid} is not in the store{when} (see `moldb ls`)")
        tags: dict[str, int] = {}
        if isinstance(version, str) and not version.isdigit():
            tags = self._tags(eid)
            if version not in tags:
                raise EntryNotFoundError(f"entry {eid} has no tag {version!r}; tags: {', '.join(tags) or 'none'}")
            version = tags[version]
        return pick(records, eid, None if version is None else int(version), tags)

    def get(self, entry: str, version: int | str | None = None, as_of: TimeLike | None = None,
            columns: list[str] | None = None) -> Structure:
        """Read one version of an entry.

        Parameters
        ----------
        entry : str
            Entry id (case-insensitive).
        version : int or str, optional
            Version number or tag; latest when omitted.
        as_of : int, str or datetime, optional
            The latest version committed at or before this time.
        columns : list of str, optional
            Read only these atom columns.

        Returns
        -------
        Structure
        """
        rec = self._resolve(entry, version, as_of)
        atoms, masks, decimals, text, meta = read_atom_table(self._backend, rec.blocks, columns)
        cif_block = rec.blocks["cif"]
        backend = self._backend
        return Structure(rec, atoms, masks, decimals, text, meta, lambda: read_categories(backend, cif_block),
                         self._templates)

    def _templates(self, comp_ids: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
        got = self._backend.read_components(comp_ids)
        return {k: (names, np.frombuffer(b, dtype=np.int16).reshape(-1, 4)) for k, (names, _, b) in got.items()}

    def history(self, entry: str) -> list[VersionInfo]:
        """Every version of ``entry``, oldest first."""
        eid = validate_entry_id(entry)
        records = self._records(eid)
        if not records:
            raise EntryNotFoundError(f"entry {eid} is not in the store (see `moldb ls`)")
        return records

    def __contains__(self, entry: object) -> bool:
        return isinstance(entry, str) and bool(self._records(validate_entry_id(entry)))

    def entries(self) -> pa.Table:
        """One row per entry (its latest version): id, version, title, method, resolution, counts, time."""
        cells = self._backend.versions_index()
        if self.as_of is not None:
            keep = np.flatnonzero(cells["ts"] <= self.as_of)
            cells = {k: np.asarray(v)[keep] for k, v in cells.items()}
        ent = np.asarray(cells["entry"], dtype=object)
        ver = np.asarray(cells["version"])
        if len(ent):
            order = np.lexsort((ver, ent))
            last = np.r_[ent[order][1:] != ent[order][:-1], True]
            idx = order[last]
        else:
            idx = np.zeros(0, dtype=np.int64)
        res = np.asarray(cells["resolution"], dtype=np.float64)[idx]
        return pa.table({
            "entry": pa.array(ent[idx].tolist(), type=pa.string()),
            "version": pa.array(ver[idx], type=pa.int64()),
            "title": pa.array(list(cells["title"][idx]), type=pa.string()),
            "method": pa.array(list(cells["method"][idx]), type=pa.string()),
            "resolution": pa.array(res, mask=np.isnan(res)),
            "n_models": pa.array(np.asarray(cells["n_models"])[idx], type=pa.int64()),
            "n_atoms": pa.array(np.asarray(cells["n_atoms"])[idx], type=pa.int64()),
            "timestamp": pa.array(np.asarray(cells["ts"])[idx], type=pa.int64()),
        })

    def __len__(self) -> int:
        return self.entries().num_rows

    def tag(self, entry: str, version: int, name: str, author: str = "") -> None:
        """Name a version (``store.get(entry, version=name)`` then reads it)."""
        self._check_writable()
        rec = self._resolve(entry, version, None)
        if not name or name.isdigit() or len(name) > 64:
            raise ValidationError(f"tag {name!r}: use 1-64 characters, not all digits")
        with self._backend.writing() as ts:
            self._backend.write_cells(
                "tags", ts, [np.array([rec.entry], dtype=object), np.array([name], dtype=object)],
                {"version": np.array([rec.version], dtype=np.uint32), "author": np.array([author], dtype=object)})

    def tags(self, entry: str) -> dict[str, int]:
        """Tag name → version number for ``entry``."""
        return self._tags(validate_entry_id(entry))

    def export(self, entry: str, path: str | Path, format: str | None = None,
               version: int | str | None = None) -> Path:
        """Write one entry to a file (mmCIF, BinaryCIF or PDB, by suffix or ``format``)."""
        return self.get(entry, version=version).write(path, format=format)

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk per array."""
        return self._backend.array_sizes()

    # -- versioning: diff, maintenance, retention ----------------------------------------------------
    def diff(self, entry: str, a: int | str, b: int | str | None = None) -> Any:
        """What changed from version ``a`` to version ``b`` of ``entry`` (``b``: latest when omitted).

        Parameters
        ----------
        entry : str
            Entry id.
        a, b : int or str
            Version numbers or tags.

        Returns
        -------
        moldb.versioning.diff.Diff
            Atoms added / removed / renamed / moved, changed columns, categories and TLS
            groups; ``.as_dict()`` for JSON. See ``docs/versioning.md``.
        """
        from moldb.versioning.diff import diff_structures

        sa = self.get(entry, version=a)
        sb = self.get(entry, version=b)
        d = diff_structures(sa.atoms, sa.categories, sb.atoms, sb.categories)
        for side, s in (("a", sa), ("b", sb)):
            setattr(d, side, {"entry": s.entry, "version": s.version.version, "timestamp": s.version.timestamp,
                              "author": s.version.author, "message": s.version.message})
        return d

    def maintain(self, vacuum: bool = True, orphan_grace_s: float = 3600.0,
                 collect_orphans: bool = True) -> dict[str, Any]:
        """Consolidate and vacuum the store's arrays; collect orphan blocks older than the grace period.

        Takes the writer lock (commits wait). Every version stays readable bit for bit and
        ``as_of`` keeps working. Other processes holding this store open must reopen it after
        a vacuum. Returns fragment and byte counts before/after and the orphans found.
        """
        from moldb.storage.maintenance import maintain

        self._check_writable()
        return maintain(self._backend, vacuum=vacuum, orphan_grace_s=orphan_grace_s,
                        collect_orphans=collect_orphans)

    def purge_versions(self, entry: str, keep_last: int, author: str = "") -> dict[str, Any]:
        """Explicit retention: delete all but the last ``keep_last`` versions of ``entry`` (logged).

        moldb keeps every version unless this is called. The purged versions no longer read
        (not even ``as_of``); their blocks are reclaimed by the next :meth:`maintain` once older
        than its grace period.
        """
        from moldb.storage.maintenance import purge_versions

        self._check_writable()
        eid = validate_entry_id(entry)
        return purge_versions(self._backend, eid, keep_last, author=author)

    def maintenance_log(self) -> list[dict[str, Any]]:
        """Maintenance runs and purges recorded in the store metadata, oldest first."""
        from moldb.storage.maintenance import maintenance_log

        return maintenance_log(self._backend)


def create(uri: str | Path, config: dict[str, str] | None = None) -> Store:
    """Create an empty store at ``uri`` and open it.

    Raises
    ------
    StoreExistsError
        Something already exists at ``uri``.
    """
    return Store(Backend.create(str(uri), config))


def open(uri: str | Path, as_of: TimeLike | None = None, config: dict[str, str] | None = None) -> Store:
    """Open an existing store.

    Parameters
    ----------
    uri : str or pathlib.Path
        Local path or any URI TileDB accepts.
    as_of : int, str or datetime, optional
        Open the whole store as it was at that time (read-only).
    config : dict, optional
        Extra TileDB configuration (e.g. ``vfs.s3.*``).

    Raises
    ------
    StoreNotFoundError
        No store at ``uri``.
    SchemaVersionError
        The store needs an explicit migration (``moldb migrate``).
    """
    backend = Backend(str(uri), config)
    backend.check_version()
    return Store(backend, None if as_of is None else to_ms(as_of))
