"""``Store``: the facade users, the CLI and the service talk to."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import moldb.ir.extras  # registers the RMF / IHM extra-IR ingest hook
import moldb.ir.store_ops
import moldb.ir.trajectory  # registers the trajectory / frame-label descriptor types
import moldb.query.spatial  # noqa: F401  (registers the spatial-index ingest hook)
from moldb.api.connectivity import stored_bonds as _stored_bonds
from moldb.api.structure import Structure
from moldb.errors import EntryNotFoundError, ValidationError
from moldb.ingest.formats import read_file
from moldb.ingest.load import commit, validate_entry_id
from moldb.schema.records import IngestReport, VersionInfo
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
               author: str = "", message: str = "", namespace: str | None = None,
               source_name: str | None = None, topology: str | Path | None = None) -> VersionInfo:
        """Parse a structure file and commit it as version 1 of a new entry.

        Trajectories (H5MD, XTC, DCD, TRR, NetCDF; ``topology=`` gives the atoms) are stored as
        the topology's atoms plus the frames (see :meth:`trajectory`, ``docs/trajectories.md``).

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
        namespace : str, optional
            Lab namespace the new entry belongs to (recorded atomically with version 1; the
            service passes the token's lab).
        source_name : str, optional
            Record this as the source file name instead of ``path`` (uploads to the service).

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
        from moldb.api.trajectory import ingest_trajectory, is_trajectory

        if topology is not None or is_trajectory(path, format):
            return ingest_trajectory(self, path, topology=topology, entry=entry, format=format, author=author,
                                     message=message)
        parsed = _read_source(path, format, source_name)
        return commit(self._backend, parsed, entry_id=entry, author=author,
                      message=message or f"ingest {source_name or Path(path).name}", mode="new", namespace=namespace)

    def ingest_many(self, paths: Iterable[str | Path], *, author: str = "", namespace: str | None = None,
                    format: str | None = None, batch_entries: int = 64, batch_atoms: int = 1_000_000,
                    progress: Callable[[Path], None] | None = None, workers: int | None = None) -> IngestReport:
        """Ingest many files as new entries, committed in batches.

        A batch is one commit: one timestamp and one TileDB fragment per array for all its
        files, instead of about eight fragments per file, so bulk loads run several times
        faster and leave far fewer fragments to consolidate. Each batch becomes visible at
        once (or, after a crash, not at all). A file that cannot be read or stored is
        reported in ``failed`` and writes nothing; the other files are stored.

        Parameters
        ----------
        paths : iterable of str or pathlib.Path
            Structure files (as :meth:`ingest`); each is stored under its own entry id.
            Trajectories are ingested one commit each.
        author : str
            Recorded in every version.
        namespace : str, optional
            Lab namespace of every new entry.
        format : str, optional
            Skip format detection (every file has this format).
        batch_entries, batch_atoms : int
            A batch commits when it holds this many files or atoms (bounds the memory held:
            about 150 bytes per atom of the batch).
        progress : callable, optional
            Called with each path once it is read (or refused), in input order.
        workers : int, optional
            Threads parsing files ahead of the commits (at most ``2 × workers`` files ahead);
            default ``MOLDB_INGEST_WORKERS``, else the machine's cores up to 4. ``1`` parses
            one file at a time, still overlapped with the commits.

        Returns
        -------
        IngestReport
            ``ingested`` (a VersionInfo per stored file) and ``failed`` (path and error), in
            input order, and the number of ``batches`` committed.

        Examples
        --------
        >>> report = store.ingest_many(sorted(Path("mmcif").glob("*.cif.gz")))   # doctest: +SKIP
        >>> [f.path for f in report.failed]                                         # doctest: +SKIP
        """
        from moldb.api.bulk import ingest_many

        return ingest_many(self, paths, author=author, namespace=namespace, format=format,
                           batch_entries=batch_entries, batch_atoms=batch_atoms, progress=progress,
                           workers=workers)

    def deposit(self, path: str | Path, entry: str | None = None, message: str = "", author: str = "",
                format: str | None = None, namespace: str | None = None,
                source_name: str | None = None) -> VersionInfo:
        """Commit a file as the next version of ``entry`` (creating it if new).

        Column groups whose content did not change are shared with the previous
        version, so a B-factor-only re-refinement costs only its ADP block. With
        ``namespace``, a deposit into an entry of another namespace raises
        :class:`~moldb.errors.PermissionDeniedError` and writes nothing; ``source_name``
        is recorded as the source file name instead of ``path``.
        """
        self._check_writable()
        parsed = _read_source(path, format, source_name)
        return commit(self._backend, parsed, entry_id=entry, author=author, message=message, mode="deposit",
                      namespace=namespace)

    # -- reading ------------------------------------------------------------------------------------
    def _rows(self, entry: str | None, as_of: int | None) -> tuple[dict[str, Any], np.ndarray]:
        """The ``versions`` index and the rows of ``entry`` (all entries: None) committed by ``as_of``."""
        t = as_of if as_of is not None else self.as_of
        if t is not None and self.as_of is not None:
            t = min(t, self.as_of)
        cells = self._backend.versions_index()
        if entry is None:
            idx = np.arange(len(cells["version"]))
        else:
            idx = self._backend.entry_rows(entry)
            if idx.size == 0 and t is None:  # maybe written by another process
                idx = self._backend.entry_rows(entry, refresh=True)
                cells = self._backend.versions_index()
        if t is not None:  # versions are never rewritten: filtering on the commit time is time travel
            idx = idx[np.asarray(cells["ts"])[idx] <= t]
        return cells, idx

    def _records(self, entry: str | None, as_of: int | None = None) -> list[VersionInfo]:
        cells, idx = self._rows(entry, as_of)
        return version_records({k: np.asarray(v)[idx] for k, v in cells.items()})

    def _tags(self, entry: str) -> dict[str, int]:
        cells = self._backend.read_tags(entry)
        return {(t.decode() if isinstance(t, bytes) else str(t)): int(v)
                for t, v in zip(cells["tag"], cells["version"], strict=True)}

    def _resolve(self, entry: str, version: int | str | None, as_of: TimeLike | None) -> VersionInfo:
        eid = validate_entry_id(entry)
        t = None if as_of is None else to_ms(as_of)
        if version is None or isinstance(version, int) or version.isdigit():  # one record decoded, not all
            cells, idx = self._rows(eid, t)
            if idx.size:
                versions = np.asarray(cells["version"])[idx]
                hit = idx[versions == int(version)] if version is not None else idx[[int(np.argmax(versions))]]
                if hit.size:
                    return version_records({k: np.asarray(v)[hit[:1]] for k, v in cells.items()})[0]
        records = self._records(eid, t)
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
                         self._templates, load_bonds=lambda: _stored_bonds(self, rec))

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

    def entries(self, where: str | None = None) -> pa.Table:
        """One row per entry (its latest version): id, version, title, method, resolution, counts, time.

        With ``where`` (e.g. ``"resolution < 2.0 and method == 'X-RAY DIFFRACTION'"``), the
        entry-level metadata table of :meth:`query_entries`, filtered.
        """
        if where is not None:
            return self.query_entries(where)
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
        """Write one entry to a file (mmCIF, BinaryCIF or PDB, by suffix or ``format``; H5MD: its trajectory)."""
        if (format or "").lower() == "h5md" or (format is None and str(path).lower().endswith(".h5md")):
            from moldb.api.trajectory import export_h5md

            return export_h5md(self, entry, path, version=version)
        return self.get(entry, version=version).write(path, format=format)

    # -- trajectories (docs/trajectories.md) ---------------------------------------------------------------
    def trajectory(self, entry: str, version: int | str | None = None) -> Any:
        """The :class:`moldb.api.trajectory.Trajectory` of ``entry``: ``t.frame(i)``, ``t.frames(...)``, ``t.time``."""
        from moldb.api.trajectory import open_trajectory

        return open_trajectory(self, entry, version)

    def frames_where(self, expr: str, entry: str | None = None, version: int | str | None = None) -> Any:
        """Frame indices (int64 array) where a frame-label expression holds, e.g. ``"cluster == 3"``.

        ``version`` (with ``entry``) queries the trajectory that version reads (default: the latest).
        """
        from moldb.api.trajectory import frames_where

        return frames_where(self, expr, entry, version)

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

    # -- IR: groupings, descriptors, operators (moldb.ir, docs/ir.md) -------------------------------------
    def _ir_cells(self, kind: str, entry: str, version: int | str | None,
                  as_of: TimeLike | None) -> tuple[VersionInfo, dict[str, dict[str, Any]]]:
        from moldb.ir.store_ops import resolve_cells

        rec = self._resolve(entry, version, as_of)
        pins = [t for t in (self.as_of, None if as_of is None else to_ms(as_of)) if t is not None]
        return rec, resolve_cells(self._backend, kind, self._records(rec.entry), rec, min(pins) if pins else None)

    def groupings(self, entry: str, version: int | str | None = None, as_of: TimeLike | None = None) -> pa.Table:
        """The groupings of one version of ``entry``: name, kind, group and member counts, provenance.

        Built-in groupings (chain, residue, entity, molecule_type, altloc, model, tls) are written
        at ingest; user groupings come from :meth:`add_grouping` and carry over to later versions
        while the atoms (the ``topo`` block) are unchanged.
        """
        from moldb.ir.store_ops import groupings_table

        return groupings_table(self._ir_cells("groupings", entry, version, as_of)[1])

    def grouping(self, entry: str, name: str, version: int | str | None = None,
                 as_of: TimeLike | None = None) -> pa.Table:
        """Membership of grouping ``name``: one row per (group, atom row), with ``weight`` if weighted.

        Raises
        ------
        EntryNotFoundError
            The version has no grouping ``name``.
        """
        from moldb.ir.store_ops import grouping_membership

        rec, cells = self._ir_cells("groupings", entry, version, as_of)
        if name not in cells:
            raise EntryNotFoundError(f"{rec.entry} v{rec.version} has no grouping {name!r}; "
                                     f"groupings: {', '.join(sorted(cells)) or 'none'}")
        return grouping_membership(self._backend, rec.entry, cells[name])

    def add_grouping(self, entry: str, name: str, members: dict[str, Any], kind: str = "user",
                     weights: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None,
                     replace: bool = False) -> Any:
        """Add a grouping to the latest version of ``entry``.

        Parameters
        ----------
        entry, name : str
            Entry id; grouping name such as ``"domains/v1"``.
        members : dict
            Group name → atom rows (int indices), a boolean mask over the atoms, or any object
            with a ``.rows`` attribute (a moldb selection).
        kind : str
            E.g. ``"heterogeneity_descriptor.scope"``.
        weights : dict, optional
            Group name → one weight per member.
        provenance : dict, optional
            :class:`moldb.ir.Provenance` fields (``source``, ``author``, ``fit``, ...).
        replace : bool
            Replace an existing user grouping of that name.

        Returns
        -------
        moldb.ir.Grouping
        """
        from moldb.ir.store_ops import add_grouping

        self._check_writable()
        rec, cells = self._ir_cells("groupings", entry, None, None)
        return add_grouping(self._backend, rec, cells, name, kind, members, weights, provenance, replace)

    def descriptors(self, entry: str, version: int | str | None = None, as_of: TimeLike | None = None) -> list[Any]:
        """Typed heterogeneity descriptors of one version (TLS, IsotropicADP, AltlocStates, ...)."""
        from moldb.ir.store_ops import descriptor_objects

        rec, cells = self._ir_cells("descriptors", entry, version, as_of)
        return descriptor_objects(self._backend, rec.entry, cells)

    def add_descriptor(self, entry: str, descriptor: Any, provenance: dict[str, Any] | None = None) -> Any:
        """Add a descriptor (e.g. ``moldb.TLS(scope="domains/v1", ...)``) to the latest version of ``entry``.

        Its scope must be a grouping of that version (or ``"atom"``) and its edges must name
        existing descriptors. Returns the stored descriptor (with its id).
        """
        from moldb.ir.store_ops import add_descriptor

        self._check_writable()
        version: int | None = None
        if getattr(descriptor, "TYPE", None) == "frame_labels":  # one label per frame, on the trajectory's version
            from moldb.api.trajectory import frame_labels_target

            descriptor, version = frame_labels_target(self, entry, descriptor)
        rec, cells = self._ir_cells("descriptors", entry, version, None)
        groups = self._ir_cells("groupings", entry, rec.version, None)[1]
        return add_descriptor(self._backend, rec, cells, descriptor, groups, provenance)

    def scope_dag(self, entry: str, version: int | str | None = None) -> Any:
        """The :class:`moldb.ir.ScopeDAG` of the discrete descriptors of one version."""
        from moldb.ir.dag import ScopeDAG

        return ScopeDAG.from_descriptors(self.descriptors(entry, version))

    def renderer(self, entry: str, version: int | str | None = None, device: str = "cpu",
                 descriptors: list[str] | None = None, adp: str = "deposited", psd: str = "clip",
                 backend: str | None = None, dtype: str = "float64") -> Any:
        """A :class:`moldb.api.render.EntryRenderer` over one version's stored descriptors (``docs/render.md``).

        ``r.joint_states()``, ``r.mean(state=...)``, ``r.covariance()``, ``r.sample(n, state=, seed=)``,
        ``r.to_structure(draws).write("ensemble.cif")``. ``device``: ``"cpu"`` or ``"cuda"``;
        ``descriptors``: render only these ids; ``adp``: ``"deposited"`` (reconcile ingested ADPs) or ``"sum"``.
        """
        from moldb.api.render import build_renderer

        return build_renderer(self, entry, version=version, device=device, descriptors=descriptors,
                              adp=adp, psd=psd, backend=backend, dtype=dtype)  # type: ignore[arg-type]

    def operators(self) -> pa.Table:
        """The operator registry: name, version, type, content hash, venue, composition, subcase."""
        from moldb.ir.store_ops import operators_table

        return operators_table(self._backend)

    def soma(self, uri: str | Path, entries: str | list[str] | None = None,
             version: int | str | None = None) -> Any:
        """Export the atoms-by-descriptor view as a TileDB-SOMA Experiment at ``uri`` and open it.

        obs = atoms (``entry``, ``version``, identifiers), var = descriptor features, ``X["values"]`` =
        sparse values in measurement ``"descriptors"``. Plain ``tiledbsoma`` reads it, and
        ``tiledbsoma.io.to_anndata(exp, measurement_name="descriptors", X_layer_name="values")``
        gives AnnData. Needs the ``soma`` extra (``pip install "moldb[soma]"``).

        Parameters
        ----------
        uri : str or pathlib.Path
            A new location for the experiment.
        entries : str or list of str, optional
            Entries to include (latest versions); all when omitted.
        version : int or str, optional
            A version or tag, when exporting one entry.
        """
        from moldb.api.soma import export_soma

        return export_soma(self, str(uri), entries=entries, version=version)

    def atoms_by_descriptor(self, entry: str, version: int | str | None = None) -> tuple[pa.Table, pa.Table, pa.Table]:
        """SOMA-like view of one version: ``(obs, var, X)`` Arrow tables (see :mod:`moldb.ir.views`).

        ``obs``: one row per atom with identifiers and group indices of the descriptors' scopes;
        ``var``: one row per descriptor feature (``iadp.B``, ``aadp.U11``, ``tls.group``, ...);
        ``X``: one float64 column per feature, aligned with ``obs``.
        """
        from moldb.ir.views import atoms_by_descriptor

        s = self.get(entry, version=version)
        descs = self.descriptors(entry, version=s.version.version)
        names = set(self.groupings(entry, version=s.version.version).column("name").to_pylist())
        scopes = {d.scope for d in descs if d.scope in names}
        members = {g: self.grouping(entry, g, version=s.version.version) for g in sorted(scopes)}
        return atoms_by_descriptor(s.atoms, descs, members)


    def level(self, entry: str, name: str, version: int | str | None = None, weighting: str = "unweighted",
              grouping: str | None = None, store: bool = False) -> pa.Table:
        """One level of the multiscale pyramid of ``entry`` as an Arrow table (``docs/multiscale.md``).

        Levels: ``atoms``, ``backbone``, ``residue_centroids``, ``chain_centroids``,
        ``domain_centroids`` (needs a domain grouping, or ``grouping=``) or ``grouping:NAME`` (centroids
        of any grouping). Centroids are ``weighting="unweighted"`` (plain mean) or ``"mass"``; one row per
        group and model: ``level``, ``group``, ``model``, ``chain``, ``residue``, ``n_members``, ``x, y, z``.
        Computed on demand; ``store=True`` also persists it (grouping ``level/<name>`` with the mapping
        weights, descriptor ``level/<name>`` with the coordinates), and later calls read it back.

        Raises
        ------
        ValidationError
            Unknown level (the message lists the valid ones) or no domain grouping.
        """
        from moldb.api.levels import level

        return level(self, entry, name, version=version, weighting=weighting, grouping=grouping, store=store)

    # -- queries (moldb.query, docs/query.md) --------------------------------------------------------
    def select(self, selection: str | None = None, *, entries: Any = None, chains: Any = None,
               residues: Any = None, atoms: Any = None, models: Any = None, altlocs: Any = None,
               where: str | None = None, within: float | None = None, of: Any = None, box: Any = None,
               altloc: str = "all", frames: Any = None, grouping: str | None = None) -> Any:
        """Select atoms across entries; a lazy :class:`moldb.query.Selection`.

        Parameters
        ----------
        selection : str, optional
            Selection language (``"chain A and resname HEM"``, ``"within 5 of resname GTP"``),
            combined with ``and`` with the keywords below.
        entries, chains, atoms, altlocs : str or list of str, optional
            Entry ids, author chain ids, atom names, altloc ids (exact match).
        residues : (int, int), int, str or list of str, optional
            Author residue-number range (inclusive), one number, or residue names.
        models : int or list of int, optional
        where : str, optional
            Column comparisons on ``_atom_site`` items (``"B_iso_or_equiv < 40 and type_symbol != 'H'"``).
        within, of : float and Selection / str / (n, 3) array, optional
            Atoms within ``within`` Å of the atoms of ``of`` (same entry) or of the given points.
        box : ((x0, y0, z0), (x1, y1, z1)), optional
            Axis-aligned box (inclusive).
        altloc : str
            ``"all"`` (default: every alternate location), ``"highest"`` (per residue the altloc
            with the highest mean occupancy) or an altloc id (that one plus atoms without altloc).
        grouping : str, optional
            Select the atoms of the groups of this grouping; ``where`` then filters the groups on
            the columns of :meth:`group_table` (``"amplitude > q90"``: ``qNN`` is the NN-th
            percentile within each entry), and the selection string still filters atoms.

        Raises
        ------
        moldb.query.SelectionError
            Bad syntax or unknown column; the message points at the offending token.
        """
        from dataclasses import replace

        from moldb.query import Selection, compile_keywords, parse
        from moldb.query.nodes import And

        group_rows = None
        if grouping is not None:
            group_rows = self._grouping_rows(grouping, entries, where)
            where = None
        plan = compile_keywords(entries=entries, chains=chains, residues=residues, atoms=atoms, models=models,
                                altlocs=altlocs, where=where, within=within, of=of, box=box, altloc=altloc)
        if group_rows is not None:
            kw = plan.where
            plan = replace(plan, where=group_rows if isinstance(kw, And) and not kw.items else And((group_rows, kw)))
        if selection:
            node = parse(selection)
            kw = plan.where
            plan = replace(plan, where=node if isinstance(kw, And) and not kw.items else And((node, kw)),
                           text=selection)
        if frames is not None:  # atoms over frames of each entry's trajectory (docs/trajectories.md)
            from moldb.api.trajectory import FrameSelection

            return FrameSelection(self, Selection(self, plan), frames)
        return Selection(self, plan)

    def group_table(self, entry: str, grouping: str, version: int | str | None = None) -> pa.Table:
        """One row per group of ``grouping``: name, index, member count and the per-group parameters
        of the descriptors scoped on it (TLS: ``T_iso``, ``L_trace``, ``u_iso``; see
        :mod:`moldb.ir.group_table`)."""
        from moldb.ir.group_table import group_table

        rec = self._resolve(entry, version, None)
        members = self.grouping(rec.entry, grouping, version=rec.version)
        info = {r["name"]: r for r in self.groupings(rec.entry, version=rec.version).to_pylist()}
        label = [""] * int(info[grouping]["n_groups"])
        names = members.column("group").to_pylist()
        for i, name in zip(members.column("group_index").to_numpy(), names, strict=True):
            label[int(i)] = str(name)
        descs = [d for d in self.descriptors(rec.entry, version=rec.version) if d.scope == grouping]
        xyz = np.zeros((0, 3))
        if any(d.type == "tls" for d in descs):
            at = self.get(rec.entry, version=rec.version, columns=["Cartn_x", "Cartn_y", "Cartn_z"]).atoms
            xyz = np.column_stack([at.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
        return group_table(members, label, descs, xyz)

    def _grouping_rows(self, grouping: str, entries: Any, where: str | None) -> Any:
        """The ``Rows`` plan node of the groups of ``grouping`` matching ``where`` in each entry."""
        from moldb.query.nodes import Rows
        from moldb.query.tables import filter_table

        if entries is None:
            names = self.entries().column("entry").to_pylist()
        else:
            names = [entries] if isinstance(entries, str) else list(entries)
        out = []
        for e in names:
            cells = self._ir_cells("groupings", e, None, None)[1]
            if grouping not in cells:
                if entries is not None:
                    raise EntryNotFoundError(f"entry {e.upper()} has no grouping {grouping!r}; "
                                             f"groupings: {', '.join(sorted(cells)) or 'none'}")
                continue
            table = self.group_table(e, grouping)
            keep = table.column("group_index").to_numpy()[filter_table(table, where)]
            m = self.grouping(e, grouping)
            rows = m.column("row").to_numpy()[np.isin(m.column("group_index").to_numpy(), keep)]
            out.append((e.upper(), np.unique(rows).astype(np.int64).tobytes()))
        return Rows(tuple(out))

    def sql(self, query: str, selection: Any = None, columns: list[str] | None = None) -> pa.Table:
        """Run DuckDB SQL over ``atoms`` (streamed) and ``entries``; the result as an Arrow table.

        ``store.sql("SELECT label_comp_id, count(*) FROM atoms GROUP BY 1")``. ``selection``
        restricts ``atoms`` to a :meth:`select` result; ``columns`` chooses the atom columns
        exposed (default: the core ``_atom_site`` items). Needs the ``sql`` extra (DuckDB).
        See :mod:`moldb.query.sql`.
        """
        from moldb.query.sql import run_sql

        return run_sql(self, query, selection=selection, columns=columns)

    def query_entries(self, where: str | None = None) -> pa.Table:
        """Entry-level metadata table (latest versions), filtered by ``where``.

        Columns: those of :meth:`entries` plus ``deposition_date``, ``n_chains``, ``n_entities``,
        ``chains``, ``auth_chains``, ``ligands``, ``altlocs`` (lists: ``==`` means contains),
        ``has_aniso``, ``tls_groups``. Example: ``"resolution < 2.0 and method == 'X-RAY DIFFRACTION'"``.
        """
        from moldb.query.entries import query_entries

        return query_entries(self, where)

def _read_source(path: str | Path, format: str | None, source_name: str | None) -> Any:
    """Parse ``path``; record ``source_name`` (when given) as its source file name."""
    parsed = read_file(path, format=format)
    if source_name:
        from dataclasses import replace

        parsed.source = replace(parsed.source, path=source_name)
    return parsed


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
