"""``RemoteStore``: the interface of :class:`moldb.Store` over the moldb HTTP service.

Every call is one or two HTTP requests (``docs/service.md``); bulk atoms travel as Arrow IPC
streams. Reads are retried with back-off on retryable errors; writes are sent once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from moldb.client.transport import Transport, read_arrow
from moldb.errors import EntryNotFoundError, ValidationError
from moldb.schema.parsed import CategoryLookup
from moldb.schema.records import VersionInfo

__all__ = ["RemoteDiff", "RemoteSelection", "RemoteStore", "RemoteStructure", "connect"]

_VERSION_FIELDS = {f.name for f in dataclasses.fields(VersionInfo)}
#: export format → wire name of ``GET /v1/entries/{id}/file``
_WIRE_FORMAT = {"mmcif": "cif", "cif": "cif", "bcif": "bcif", "pdb": "pdb"}
_SUFFIX_FORMAT = {".cif": "mmcif", ".mmcif": "mmcif", ".bcif": "bcif", ".pdb": "pdb", ".ent": "pdb"}
_XYZ = ("Cartn_x", "Cartn_y", "Cartn_z")
#: schema metadata key of the resolved VersionInfo in ``/atoms`` responses
_META_KEY = b"moldb.version"


def _version(d: dict[str, Any]) -> VersionInfo:
    """A :class:`VersionInfo` from its JSON form (unknown keys such as ``datetime`` are ignored)."""
    return VersionInfo(**{k: v for k, v in d.items() if k in _VERSION_FIELDS})


def _seg(entry: str) -> str:
    """One URL path segment (ids are validated by the service; quoting keeps ``/`` out of the path)."""
    if not isinstance(entry, str) or not entry:
        raise ValidationError(f"entry id {entry!r}: pass a non-empty string such as '1ABC'")
    return quote(entry, safe="")


def _time_ms(t: Any) -> int | None:
    """``as_of`` as ms since the epoch (int, float, ISO-8601 string, datetime or date; naive = UTC)."""
    if t is None:
        return None
    if isinstance(t, bool):
        raise ValidationError(f"as_of={t!r} is not a time; pass ms since the epoch, an ISO-8601 string or a datetime")
    if isinstance(t, int | float | np.integer | np.floating):
        return int(t)
    if isinstance(t, str):
        try:
            t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValidationError(f"as_of={t!r} is not an ISO-8601 time such as '2026-11-01T12:00'") from exc
    if isinstance(t, dt.date) and not isinstance(t, dt.datetime):
        t = dt.datetime(t.year, t.month, t.day)
    if isinstance(t, dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        return int(t.timestamp() * 1000)
    raise ValidationError(f"as_of={t!r} is not a time; pass ms since the epoch, an ISO-8601 string or a datetime")


def _jsonable(v: Any) -> Any:
    """Selection keyword values as JSON (tuples and arrays become lists)."""
    if isinstance(v, RemoteSelection):
        raise ValidationError("of=<remote selection> cannot be sent to the service; pass the selection string "
                              "(of='resname GTP') or coordinates instead")
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    return v


def _export_format(path: str | Path, format: str | None) -> str:
    if format is not None:
        fmt = format.lower()
        if fmt not in _WIRE_FORMAT:
            raise ValidationError(f"unknown export format {format!r}; choose one of mmcif, bcif, pdb")
        return "mmcif" if fmt == "cif" else fmt
    name = Path(path).name.lower()
    stem = name[:-3] if name.endswith(".gz") else name
    found = _SUFFIX_FORMAT.get(Path(stem).suffix)
    if found is None:
        raise ValidationError(f"{path}: cannot tell the export format from the suffix; use .cif, .bcif or .pdb "
                              "(optionally .gz) or pass format= (mmcif, bcif, pdb)")
    return found


def _write_bytes(data: bytes, path: str | Path) -> Path:
    """Write an exported file, gzipping or gunzipping so the content matches a ``.gz`` suffix."""
    p = Path(path)
    gz = data[:2] == b"\x1f\x8b"
    if p.name.lower().endswith(".gz") and not gz:
        data = gzip.compress(data, compresslevel=6)
    elif gz and not p.name.lower().endswith(".gz"):
        data = gzip.decompress(data)
    tmp = p.with_name(f".{p.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, p)
    return p


class RemoteStructure(CategoryLookup):
    """One version of one entry read from a moldb service.

    Attributes
    ----------
    entry : str
        Entry id.
    version : VersionInfo
        The resolved version.
    atoms : pyarrow.Table
        One row per ``_atom_site`` row (the columns asked for), decoded from Arrow IPC.

    Notes
    -----
    :meth:`write`, :meth:`category` and :attr:`categories` fetch the exported file of this
    version (``GET /v1/entries/{id}/file``) on first use; they cover the whole version even
    when :attr:`atoms` holds only some columns.
    """

    def __init__(self, store: RemoteStore, version: VersionInfo, atoms: pa.Table) -> None:
        self._store = store
        self.version = version
        self.entry = version.entry
        self.atoms = atoms

    def __repr__(self) -> str:
        return (f"<RemoteStructure {self.entry} v{self.version.version}: {self.atoms.num_rows} atoms, "
                f"{self.version.n_models} model(s)>")

    @property
    def summary(self) -> dict[str, Any]:
        """Entry-level metadata (title, method, resolution, chains, ligands ...)."""
        return self.version.summary

    def _file(self, fmt: str) -> bytes:
        return self._store._file_bytes(self.entry, self.version.version, fmt)

    @cached_property
    def _parsed(self) -> Any:
        """The exported mmCIF of this version, parsed with moldb's own reader."""
        import tempfile

        from moldb.ingest.formats import read_file

        with tempfile.TemporaryDirectory(prefix="moldb-client-") as d:
            p = _write_bytes(self._file("mmcif"), Path(d) / f"{self.entry}.cif")
            return read_file(p)

    @property
    def categories(self) -> list[Any]:
        """Every non-atom category (read from the exported mmCIF on first use)."""
        return list(self._parsed.categories)

    def write(self, path: str | Path, format: str | None = None) -> Path:
        """Write this version as mmCIF, BinaryCIF or PDB (by suffix or ``format``), exported by the service."""
        return _write_bytes(self._file(_export_format(path, format)), path)

    def to_gemmi(self) -> Any:
        """A ``gemmi.Structure`` read from the exported mmCIF."""
        import gemmi

        doc = gemmi.cif.read_string(gzip.decompress(data) if (data := self._file("mmcif"))[:2] == b"\x1f\x8b"
                                    else data)
        return gemmi.make_structure_from_block(doc.sole_block())


class RemoteDiff:
    """What changed between two versions, as computed by the service.

    Attributes mirror the keys of :meth:`as_dict` (``d.a``, ``d.b``, ...).
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def as_dict(self) -> dict[str, Any]:
        """The plain-JSON form (``moldb.versioning.diff.Diff.as_dict``)."""
        return self._data

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_data"][name]
        except KeyError:
            raise AttributeError(f"diff has no field {name!r}; fields: {', '.join(self._data)}") from None

    def __repr__(self) -> str:
        return f"<RemoteDiff {json.dumps(self._data)[:120]}>"


class RemoteSelection:
    """Atoms selected on the service; lazy: every method sends the query (``POST /v1/select``)."""

    def __init__(self, store: RemoteStore, query: dict[str, Any]) -> None:
        self.store = store
        self.query = query

    def __repr__(self) -> str:
        return f"<moldb RemoteSelection {self.query}>"

    def to_arrow(self, columns: Sequence[str] | None = None) -> pa.Table:
        """One table: ``entry`` then the atom columns (all, or ``columns``), rows in entry order."""
        query = self.query if columns is None else {**self.query, "columns": [str(c) for c in columns]}
        return self.store._select(query)

    def __len__(self) -> int:
        return self.to_arrow().num_rows

    def entries(self) -> list[str]:
        """Ids of the entries with at least one selected atom."""
        col = self.to_arrow(["entry"]).column("entry").to_pylist()
        return list(dict.fromkeys(col))

    def any(self) -> bool:
        """Whether any atom is selected."""
        return len(self) > 0

    def batches(self, size: int = 65_536, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """The selected rows as tables of at most ``size`` rows (never spanning entries)."""
        if size < 1:
            raise ValueError("batch size must be >= 1")
        table = self.to_arrow(columns)
        if table.num_rows == 0:
            return
        ent = np.asarray(table.column("entry").to_pylist(), dtype=object)
        cuts = np.r_[0, np.flatnonzero(ent[1:] != ent[:-1]) + 1, ent.size]
        for a, b in itertools.pairwise(cuts.tolist()):
            for s in range(a, b, size):
                yield table.slice(s, min(size, b - s))

    def to_numpy(self, what: str = "xyz") -> np.ndarray:
        """``"xyz"`` → (n, 3) float64 coordinates; a column name → that column as a 1-D array."""
        if what == "xyz":
            t = self.to_arrow(list(_XYZ))
            if t.num_rows == 0:
                return np.zeros((0, 3))
            return np.column_stack([t.column(c).to_numpy() for c in _XYZ]).astype(np.float64)
        col = self.to_arrow([what]).column(what)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        return col.to_numpy()


class RemoteStore:
    """A moldb store served over HTTP; the interface of :class:`moldb.Store`.

    Use :func:`connect` rather than the constructor.

    Parameters
    ----------
    url : str
        Base URL of the service.
    token : str, optional
        API token (``moldb user add`` prints one); default ``$MOLDB_TOKEN``.
    timeout : float
        Seconds to wait for a connection and for each read.
    retries : int
        Extra attempts for reads after a retryable error (service down or busy, rate limit).
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0, retries: int = 4) -> None:
        if token is None:
            token = os.environ.get("MOLDB_TOKEN") or None
        self.uri = url.rstrip("/")
        self.as_of = None
        self._http = Transport(self.uri, token=token, timeout=timeout, retries=retries)

    def __repr__(self) -> str:
        return f"<moldb.RemoteStore {self.uri}>"

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok", "store": uri}``."""
        out: dict[str, Any] = self._http.get_json("/healthz")
        return out

    # -- writing ------------------------------------------------------------------------------------
    def _upload(self, url: str, path: str | Path, entry: str | None, format: str | None, message: str) -> VersionInfo:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
        name = p.name
        if format is not None and f".{format.lower()}" not in name.lower():
            name = f"{name}.{format.lower()}"
        params = {"filename": name, "entry": entry, "message": message or None}
        with p.open("rb") as fh:
            response = self._http.request("POST", url, params=params, content=fh,
                                          headers={"Content-Type": "application/octet-stream"})
        return _version(response.json())

    def ingest(self, path: str | Path, entry: str | None = None, format: str | None = None,
               author: str = "", message: str = "") -> VersionInfo:
        """Upload a structure file and commit it as version 1 of a new entry (``POST /v1/entries``).

        Parameters
        ----------
        path : str or pathlib.Path
            mmCIF, PDB, BinaryCIF or MMTF file (plain or gzip).
        entry : str, optional
            Store under this id instead of the file's own.
        format : str, optional
            The file's format when its name does not tell.
        author : str
            Ignored: the service records the authenticated user as the author.
        message : str
            Recorded in the history.

        Returns
        -------
        VersionInfo

        Raises
        ------
        ParseError
            The file cannot be read (nothing is written).
        DuplicateEntryError
            The entry id is already stored (use :meth:`deposit`).
        AuthenticationError, PermissionDeniedError
            The token is missing, invalid, or not a depositor's.
        """
        return self._upload("/v1/entries", path, entry, format, message)

    def deposit(self, path: str | Path, entry: str | None = None, message: str = "", author: str = "",
                format: str | None = None) -> VersionInfo:
        """Commit a file as the next version of ``entry`` (``POST /v1/entries/{id}/versions``).

        ``entry`` defaults to the id in the file. ``author`` is ignored: the service records the
        authenticated user.
        """
        if entry is None:
            entry = self._entry_id_of(path)
        return self._upload(f"/v1/entries/{_seg(entry)}/versions", path, entry, format, message)

    @staticmethod
    def _entry_id_of(path: str | Path) -> str:
        from moldb.ingest.formats import read_file

        return str(read_file(path).entry_id)

    def tag(self, entry: str, version: int | str, name: str, author: str = "") -> None:
        """Name a version (``PUT /v1/entries/{id}/tags/{name}``)."""
        v: int | str = int(version) if isinstance(version, int | np.integer) else version
        self._http.request("PUT", f"/v1/entries/{_seg(entry)}/tags/{_seg(name)}", json_body={"version": v})

    # -- reading ------------------------------------------------------------------------------------
    def get(self, entry: str, version: int | str | None = None, as_of: Any = None,
            columns: list[str] | None = None) -> RemoteStructure:
        """Read one version of an entry (``GET /v1/entries/{id}/atoms``, Arrow IPC).

        Parameters
        ----------
        entry : str
            Entry id.
        version : int or str, optional
            Version number or tag; latest when omitted.
        as_of : int, str or datetime, optional
            The latest version committed at or before this time.
        columns : list of str, optional
            Read only these atom columns.

        Returns
        -------
        RemoteStructure
        """
        params = {"version": None if version is None else str(version), "as_of": _time_ms(as_of),
                  "columns": None if columns is None else ",".join(columns)}
        atoms, response = self._http.get_arrow(f"/v1/entries/{_seg(entry)}/atoms", params)
        meta = dict(atoms.schema.metadata or {})
        info = meta.pop(_META_KEY, None) or response.headers.get("Moldb-Version")  # the schema copy is complete
        if _META_KEY in (atoms.schema.metadata or {}):
            atoms = atoms.replace_schema_metadata(meta or None)
        # with neither (a proxy dropped the header) ask for the resolved version
        rec = _version(json.loads(info)) if info else self._resolve(entry, version, as_of)
        return RemoteStructure(self, rec, atoms)

    def _resolve(self, entry: str, version: int | str | None, as_of: Any) -> VersionInfo:
        params = {"version": None if version is None else str(version), "as_of": _time_ms(as_of)}
        return _version(self._http.get_json(f"/v1/entries/{_seg(entry)}", params))

    def version(self, entry: str, version: int | str | None = None, as_of: Any = None) -> VersionInfo:
        """The resolved :class:`VersionInfo` of ``entry`` without its atoms (``GET /v1/entries/{id}``)."""
        return self._resolve(entry, version, as_of)

    def history(self, entry: str) -> list[VersionInfo]:
        """Every version of ``entry``, oldest first."""
        return [_version(d) for d in self._http.get_json(f"/v1/entries/{_seg(entry)}/history")]

    def __contains__(self, entry: object) -> bool:
        if not isinstance(entry, str):
            return False
        try:
            self._resolve(entry, None, None)
        except EntryNotFoundError:
            return False
        return True

    def entries(self) -> pa.Table:
        """One row per visible entry (its latest version): id, version, title, method, resolution, counts, time."""
        return self._http.get_arrow("/v1/entries")[0]

    def __len__(self) -> int:
        return int(self.entries().num_rows)

    def tags(self, entry: str) -> dict[str, int]:
        """Tag name → version number for ``entry``."""
        return {str(k): int(v) for k, v in self._http.get_json(f"/v1/entries/{_seg(entry)}/tags").items()}

    def _file_bytes(self, entry: str, version: int | str | None, fmt: str) -> bytes:
        params = {"version": None if version is None else str(version), "format": _WIRE_FORMAT[fmt]}
        return self._http.request("GET", f"/v1/entries/{_seg(entry)}/file", params=params).content

    def export(self, entry: str, path: str | Path, format: str | None = None,
               version: int | str | None = None) -> Path:
        """Write one entry to a file (mmCIF, BinaryCIF or PDB, by suffix or ``format``), exported by the service."""
        return _write_bytes(self._file_bytes(entry, version, _export_format(path, format)), path)

    def diff(self, entry: str, a: int | str, b: int | str | None = None) -> RemoteDiff:
        """What changed from version ``a`` to version ``b`` (latest when omitted); ``.as_dict()`` for JSON."""
        params = {"a": str(a), "b": None if b is None else str(b)}
        return RemoteDiff(self._http.get_json(f"/v1/entries/{_seg(entry)}/diff", params))

    # -- queries ------------------------------------------------------------------------------------
    def select(self, selection: str | None = None, *, entries: Any = None, chains: Any = None,
               residues: Any = None, atoms: Any = None, models: Any = None, altlocs: Any = None,
               where: str | None = None, within: float | None = None, of: Any = None, box: Any = None,
               altloc: str = "all") -> RemoteSelection:
        """Select atoms across entries; a lazy :class:`RemoteSelection` (see :meth:`moldb.Store.select`).

        ``of`` must be a selection string or coordinates (a remote selection object cannot be sent).
        """
        query: dict[str, Any] = {"selection": selection}
        for k, v in (("entries", entries), ("chains", chains), ("residues", residues), ("atoms", atoms),
                     ("models", models), ("altlocs", altlocs), ("where", where), ("within", within),
                     ("of", of), ("box", box)):
            if v is not None:
                query[k] = _jsonable(v)
        if altloc != "all":
            query["altloc"] = altloc
        return RemoteSelection(self, query)

    def _select(self, query: dict[str, Any]) -> pa.Table:
        response = self._http.request("POST", "/v1/select", idempotent=True, json_body=query,
                                      headers={"Accept": "application/vnd.apache.arrow.stream"})
        return read_arrow(response.content)

    # -- admin ----------------------------------------------------------------------------------------
    def add_user(self, name: str, lab: str, role: str = "reader", expires_days: int | None = None) -> dict[str, Any]:
        """Create a user token (admin; ``POST /v1/users``); the token is in the result, shown once."""
        body = {"name": name, "lab": lab, "role": role, "expires_days": expires_days}
        out: dict[str, Any] = self._http.request("POST", "/v1/users", json_body=body).json()
        return out

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token by its id (admin; ``DELETE /v1/tokens/{id}``)."""
        self._http.request("DELETE", f"/v1/tokens/{_seg(token_id)}")

    def audit(self, since: int | None = None) -> list[dict[str, Any]]:
        """Audit records of writes and admin actions (admin; ``GET /v1/audit``)."""
        out: list[dict[str, Any]] = self._http.get_json("/v1/audit", {"since": since})
        return out


def connect(url: str, token: str | None = None, timeout: float = 60.0, retries: int = 4) -> RemoteStore:
    """Connect to a moldb service: a remote store with the interface of :func:`moldb.open`.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``"http://127.0.0.1:8000"``.
    token : str, optional
        API token printed by ``moldb user add``; default ``$MOLDB_TOKEN``.
    timeout : float
        Seconds to wait for a connection and for each read.
    retries : int
        Extra attempts for reads after a retryable error; writes are never retried automatically.

    Returns
    -------
    RemoteStore

    Notes
    -----
    Nothing is sent until the first call; a wrong URL shows as
    :class:`~moldb.ServiceUnavailableError` (naming the URL) on that call.
    """
    if not url.startswith(("http://", "https://")):
        raise ValidationError(f"moldb.connect({url!r}): pass an http:// or https:// URL such as "
                              "'http://127.0.0.1:8000' (use moldb.open for a local path or s3:// URI)")
    return RemoteStore(url, token=token, timeout=timeout, retries=retries)
