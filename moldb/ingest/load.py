"""The one loader: validate a :class:`ParsedEntry` and commit it as a version.

Commit protocol (see ``docs/versioning.md``):

1. Encode every column group and the categories into cells (no lock held).
2. Take the store's writer lock; allocate a timestamp strictly greater than any
   committed one; read the entry's latest version.
3. Write the new immutable blocks in one fragment (a group whose content hash
   equals the previous version's reuses that block).
4. Write the single ``versions`` cell. TileDB makes a fragment visible only when
   its commit file lands, so this one write is the atomic commit point: a crash
   before it leaves only unreferenced blocks, which no reader ever sees.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from moldb.errors import DuplicateEntryError, MoldbError, PermissionDeniedError, ValidationError
from moldb.ingest.hooks import ingest_hooks
from moldb.ingest.summary import summarize
from moldb.schema.columns import GROUPS
from moldb.schema.parsed import Category, ParsedEntry
from moldb.schema.records import VersionInfo
from moldb.storage.backend import CHUNKED_ENCODING_VERSION, Backend
from moldb.storage.chunks import ChunkedGroup, chunk_group, encode_chunked
from moldb.storage.codec import encode_categories, encode_group, group_arrays

__all__ = ["DEFAULT_NAMESPACE", "ENTRY_ID_PATTERN", "Prepared", "commit", "commit_many", "prepare",
           "validate_entry_id"]

ENTRY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
#: Namespace of entries whose versions record none (written without a lab, e.g. by a local ingest).
DEFAULT_NAMESPACE = "public"


def validate_entry_id(entry_id: str) -> str:
    """Normalise (upper-case) and check an entry id.

    Raises
    ------
    ValidationError
        If the id is empty, too long or has characters other than letters,
        digits, ``_``, ``.`` and ``-``.
    """
    if not isinstance(entry_id, str) or not ENTRY_ID_PATTERN.match(entry_id):
        raise ValidationError(
            f"entry id {entry_id!r} is not valid: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (pass entry=... to choose one)"
        )
    return entry_id.upper()


def _new_block_ids(n: int) -> list[int]:
    """``n`` consecutive block ids from a random base: one version's blocks sit side by side on disk.

    The base is aligned to a power of two ≥ ``n`` (at least 16), so the ids of one version never
    straddle another aligned range (chunk cells follow the parents: ``moldb.storage.chunks``).
    """
    shift = max(4, (max(n, 1) - 1).bit_length())
    base = (secrets.randbits(62 - shift) << shift) + 16
    return [base + i for i in range(n)]


def _encode_groups(backend: Backend, entry: ParsedEntry, text: dict[str, tuple[pa.Array, Any]],
                   items: dict[str, Any]) -> tuple[dict[str, tuple[bytes, str]], dict[str, ChunkedGroup]]:
    """Blob and hash of each atom group; groups of more than ``backend.chunk_rows`` rows as chunks."""
    encoded: dict[str, tuple[bytes, str]] = {}
    chunked: dict[str, ChunkedGroup] = {}
    rows = int(backend.chunk_rows)
    # Ensembles repeat their models: zstd finds those repeats only inside one frame, so pages as
    # large as the chunk (9A2F, 200 models: 3.56 -> 2.48 MB, ≤ BinaryCIF.gz's 2.54 MB).
    page_rows = rows if _n_models(entry) > 1 else int(backend.page_rows)
    for g in GROUPS:
        args = (g, entry.atoms, entry.atom_masks, entry.decimals, text if g == "topo" else None,
                items if g == "topo" else None)
        if rows > 0 and entry.n_atoms > rows and group_arrays(*args[:5]):
            chunked[g] = encode_chunked(*args, chunk_rows=rows, page_rows=page_rows)
            encoded[g] = (b"", chunked[g].content_hash)  # the manifest is written once ids are known
        else:
            encoded[g] = encode_group(*args)
    return encoded, chunked


def _n_models(entry: ParsedEntry) -> int:
    """Distinct ``pdbx_PDB_model_num`` values (1 without the column)."""
    if "pdbx_PDB_model_num" not in entry.atoms.column_names:
        return 1
    return len(pc.unique(entry.atoms.column("pdbx_PDB_model_num")))


def _split_text_items(entry: ParsedEntry) -> tuple[list[Category], dict[str, tuple[pa.Array, Any]]]:
    """Move untyped ``_atom_site`` items out of the categories (they are stored with the atoms)."""
    cats, text = [], {}
    for cat in entry.categories:
        if cat.name == "atom_site":
            for item in cat.items:
                text[item] = (cat.table.column(item), cat.masks.get(item))
            cats.append(Category("atom_site", pa.table({})))  # keeps the category's position
        else:
            cats.append(cat)
    return cats, text


def _comp_ids(entry: ParsedEntry) -> list[str]:
    if "label_comp_id" not in entry.atoms.column_names:
        return []
    col = entry.atoms.column("label_comp_id").combine_chunks()
    vals = col.dictionary if pa.types.is_dictionary(col.type) else col.unique()
    return [str(v) for v in vals.to_pylist() if v]


def _store_templates(backend: Backend, ts: int, entry: ParsedEntry) -> None:
    """Store CCD templates of components the store has not seen yet (once per component)."""
    from moldb.ingest.components import ccd_source, templates_for

    missing = sorted(set(_comp_ids(entry)) - backend.component_ids())
    if not missing:
        return
    found = templates_for(missing)
    src = ccd_source()
    backend.write_components(ts, [(t.comp_id, t.atom_names, t.elements, t.bonds.tobytes(), src)
                                  for t in found.values()])


@dataclass
class Prepared:
    """An entry encoded outside the writer lock, ready to commit."""

    eid: str
    entry: ParsedEntry
    encoded: dict[str, tuple[bytes, str]]
    chunked: dict[str, ChunkedGroup]
    summary: dict[str, Any]


def prepare(backend: Backend, entry: ParsedEntry, entry_id: str | None) -> Prepared:
    """Validate ``entry`` and encode its column groups and categories (no lock held, thread-safe).

    Raises
    ------
    ValidationError
        The entry id is not valid, or the entry has no atoms.
    """
    eid = validate_entry_id(entry_id or entry.entry_id)
    if entry.n_atoms == 0:
        raise ValidationError(f"{entry.source.path}: no atoms to store")
    categories, text = _split_text_items(entry)
    items = {"atom_items": entry.atom_items, "aniso_items": entry.aniso_items}
    encoded, chunked = _encode_groups(backend, entry, text, items)
    encoded["cif"] = encode_categories(categories, items)
    return Prepared(eid, entry, encoded, chunked, summarize(entry))


def commit(
    backend: Backend,
    entry: ParsedEntry,
    *,
    entry_id: str | None = None,
    author: str = "",
    message: str = "",
    mode: str = "new",
    namespace: str | None = None,
) -> VersionInfo:
    """Commit ``entry`` as the next version of its entry.

    Parameters
    ----------
    backend : Backend
    entry : ParsedEntry
    entry_id : str, optional
        Store under this id instead of the file's.
    author, message : str
        Recorded in the version history.
    mode : {"new", "deposit"}
        ``"new"`` refuses an id that is already stored; ``"deposit"`` adds a version.
    namespace : str, optional
        Lab namespace the entry belongs to, recorded in the version's ``source`` (with the
        version, so atomically). A new entry takes it; a deposit into an entry of another
        namespace (entries recording none are :data:`DEFAULT_NAMESPACE`) raises
        :class:`~moldb.errors.PermissionDeniedError` under the lock, writing nothing. Omitted:
        a new entry records none and later versions keep the entry's.

    Returns
    -------
    VersionInfo
    """
    prep = prepare(backend, entry, entry_id)
    with backend.writing() as ts:
        return _commit_locked(backend, ts, prep, author, message, mode, namespace)


def commit_many(
    backend: Backend,
    entries: Sequence[tuple[ParsedEntry | Prepared, str | None, str]],
    *,
    author: str = "",
    namespace: str | None = None,
) -> list[VersionInfo | MoldbError]:
    """Commit new entries together: one timestamp, one TileDB fragment per array.

    The batch becomes visible in one step (its ``versions`` cells are written last, in one
    write), so a crash leaves none of it visible. An entry that cannot be stored (invalid,
    already stored, or twice in the batch) is left out and its error returned in its place;
    the others are committed.

    Parameters
    ----------
    backend : Backend
    entries : sequence of (ParsedEntry or Prepared, entry id or None, message)
        A :class:`Prepared` entry (from :func:`prepare`, e.g. on another thread) is committed
        as it is; its entry id was fixed when it was prepared.
    author : str
        Recorded in every version.
    namespace : str, optional
        Lab namespace of every new entry (see :func:`commit`).

    Returns
    -------
    list of VersionInfo or MoldbError
        One per entry, in order.
    """
    out: list[VersionInfo | MoldbError | Prepared] = []
    for parsed, eid, _msg in entries:
        try:
            out.append(parsed if isinstance(parsed, Prepared) else prepare(backend, parsed, eid))
        except MoldbError as exc:
            out.append(exc)
    if not any(isinstance(p, Prepared) for p in out):
        return [p for p in out if not isinstance(p, Prepared)]
    with backend.writing() as ts, backend.batched(ts) as batch:
        stored = set(batch.versions["entry"].tolist())
        seen: set[str] = set()
        for i, p in enumerate(out):
            if not isinstance(p, Prepared):
                continue
            if p.eid in stored or p.eid in seen:
                where = "already stored" if p.eid in stored else "given twice in this batch"
                out[i] = DuplicateEntryError(
                    f"{p.entry.source.path}: entry {p.eid} is {where}; use store.deposit() / `moldb deposit` "
                    "to add a version, or pass entry=... to store it under another id")
                continue
            mark = batch.mark()
            try:
                out[i] = _commit_locked(backend, ts, p, author, entries[i][2], "new", namespace)
            except MoldbError as exc:  # this entry's buffered cells go; the others still commit
                batch.rollback(mark)
                out[i] = exc
                continue
            seen.add(p.eid)
    return [p for p in out if not isinstance(p, Prepared)]


def _commit_locked(backend: Backend, ts: int, prep: Prepared, author: str, message: str, mode: str,
                   namespace: str | None) -> VersionInfo:
    """Write one prepared entry at ``ts`` (writer lock held); the ``versions`` cell is the commit point."""
    eid, entry, encoded, chunked, summary = prep.eid, prep.entry, prep.encoded, prep.chunked, prep.summary
    index = backend.read_versions(eid, attrs=["blocks", "source"])  # fresh, under the lock
    mine = np.arange(len(index["version"]))
    prev_version = int(index["version"].max()) if mine.size else 0
    if prev_version and mode == "new":
        raise DuplicateEntryError(
            f"entry {eid} is already stored (version {prev_version}); use store.deposit() / "
            f"`moldb deposit` to add a version, or pass entry=... to store it under another id"
        )
    prev_blocks: dict[str, int] = {}
    prev_hashes: dict[int, str] = {}
    if prev_version:
        i = int(mine[np.argmax(index["version"][mine])])
        owner = json.loads(index["source"][i] or "{}").get("namespace")
        if namespace is not None and (owner or DEFAULT_NAMESPACE) != namespace:
            raise PermissionDeniedError(
                f"entry {eid} belongs to namespace {owner or DEFAULT_NAMESPACE!r}, not {namespace!r}; "
                "deposit with a token of that lab, or ingest the file under another entry id"
            )
        namespace = owner if namespace is None else namespace
        prev_blocks = {k: int(v) for k, v in json.loads(index["blocks"][i]).items()}
        got = backend.read_blocks(list(prev_blocks.values()), attrs=("content_hash",))
        prev_hashes = {b: str(v["content_hash"]) for b, v in got.items()}
    new_rows: list[tuple[int, str, int, str, bytes]] = []
    shared = {g: prev_blocks[g] for g in (*GROUPS, "cif")
              if g in prev_blocks and prev_hashes.get(prev_blocks[g]) == encoded[g][1]}
    fresh = [g for g in (*GROUPS, "cif") if g not in shared]
    split = [g for g in fresh if g in chunked]
    n_chunks = max((len(chunked[g].chunks) for g in split), default=0)
    ids = _new_block_ids(len(fresh) + n_chunks * len(split))
    # unchanged groups share the previous version's block (and its chunks)
    blocks = {g: shared[g] if g in shared else ids[fresh.index(g)] for g in (*GROUPS, "cif")}
    for g in fresh:
        blob, digest = encoded[g]
        if g in chunked:  # chunks interleaved across groups: chunk k of every group sits side by side
            first, stride = len(fresh) + split.index(g) - fresh.index(g), len(split)
            blob = chunked[g].manifest(first, stride)
            for k, (cblob, cdigest, n) in enumerate(chunked[g].chunks):
                cid = blocks[g] + first + stride * k
                new_rows.append((cid, chunk_group(g, k, blocks[g]), n, cdigest, cblob))
        new_rows.append((blocks[g], g, entry.n_atoms if g != "cif" else len(entry.categories), digest, blob))
    if chunked and backend.encoding_version != CHUNKED_ENCODING_VERSION:
        backend.set_meta("moldb.encoding_version", CHUNKED_ENCODING_VERSION)  # before any chunked block lands
        backend.encoding_version = CHUNKED_ENCODING_VERSION
    backend.write_blocks(ts, eid, new_rows)
    _store_templates(backend, ts, entry)
    new_groups = [r[1] for r in new_rows if "#" not in r[1]]  # groups, not their chunk cells
    for _name, hook in ingest_hooks():
        hook(backend, ts, eid, entry, dict(blocks), new_groups)
    all_hashes = {g: encoded[g][1] for g in (*GROUPS, "cif")}
    content_hash = hashlib.sha256(json.dumps(all_hashes, sort_keys=True).encode()).hexdigest()
    version = prev_version + 1
    source = {"path": entry.source.path, "format": entry.source.format, "sha256": entry.source.sha256,
              "size": entry.source.size}
    if namespace is not None:
        source["namespace"] = namespace
    res = summary["resolution"]
    backend.write_cells(
        "versions", ts, [np.array([eid], dtype=object), np.array([version], dtype=np.uint32)],
        {"ts": np.array([ts], dtype=np.uint64), "blocks": np.array([json.dumps(blocks)], dtype=object),
         "author": np.array([author], dtype=object), "message": np.array([message], dtype=object),
         "content_hash": np.array([content_hash], dtype=object),
         "parent": np.array([prev_version], dtype=np.uint32),
         "source": np.array([json.dumps(source)], dtype=object),
         "summary": np.array([json.dumps(summary)], dtype=object),
         "title": np.array([summary["title"]], dtype=object),
         "method": np.array([summary["method"]], dtype=object),
         "resolution": np.array([np.nan if res is None else res], dtype=np.float64),
         "n_atoms": np.array([entry.n_atoms], dtype=np.uint64),
         "n_models": np.array([summary["n_models"]], dtype=np.uint32)},
    )
    return VersionInfo(eid, version, ts, author, message, content_hash, prev_version, entry.n_atoms,
                       summary["n_models"], blocks, source, summary)
