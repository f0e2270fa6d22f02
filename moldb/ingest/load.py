"""The one loader: validate a :class:`ParsedEntry` and commit it as a version.

Commit protocol (see ``docs/versioning.md``):

1. Encode every column group and the categories into cells (no lock held).
2. Take the store's writer lock; allocate a timestamp strictly greater than any
   committed one; read the entry's latest version.
3. Write the new immutable blocks (a group whose content hash equals the
   previous version's reuses that block), then the ``blocks`` rows.
4. Write the single ``versions`` cell. TileDB makes a fragment visible only when
   its commit file lands, so this one write is the atomic commit point: a crash
   before it leaves only unreferenced blocks, which no reader ever sees.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

import numpy as np

from moldb.errors import DuplicateEntryError, ValidationError
from moldb.ingest.summary import summarize
from moldb.schema.columns import GROUPS
from moldb.schema.parsed import ParsedEntry
from moldb.schema.records import VersionInfo
from moldb.storage.backend import Backend
from moldb.storage.codec import encode_group

__all__ = ["ENTRY_ID_PATTERN", "commit", "validate_entry_id"]

ENTRY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


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


def _new_block_id() -> int:
    return secrets.randbits(62) + 1


def _cif_cells(entry: ParsedEntry, block: int) -> tuple[list[np.ndarray], dict[str, Any], dict[str, Any], str]:
    cats, items, rows, values, masks = [], [], [], [], []
    order = []
    h = hashlib.sha256()
    for cat in entry.categories:
        n = cat.table.num_rows
        order.append([cat.name, cat.items, n])
        for item in cat.items:
            vals = cat.table.column(item).to_pylist()
            m = cat.masks.get(item)
            cats.extend([cat.name] * n)
            items.extend([item] * n)
            rows.append(np.arange(n, dtype=np.uint64))
            values.extend(vals)
            masks.append(m if m is not None else np.zeros(n, dtype=np.uint8))
            h.update(json.dumps([cat.name, item, vals]).encode())
            h.update(masks[-1].tobytes())
    meta = {"categories": order, "atom_items": entry.atom_items, "aniso_items": entry.aniso_items}
    h.update(json.dumps(meta).encode())
    n_cells = len(values)
    coords = [np.full(n_cells, block, dtype=np.uint64), np.array(cats, dtype=object),
              np.array(items, dtype=object),
              np.concatenate(rows) if rows else np.zeros(0, dtype=np.uint64)]
    value_arr = np.array(values, dtype=object)
    cells = {"value": value_arr, "mask": np.concatenate(masks) if masks else np.zeros(0, np.uint8)}
    return coords, cells, meta, h.hexdigest()


def commit(
    backend: Backend,
    entry: ParsedEntry,
    *,
    entry_id: str | None = None,
    author: str = "",
    message: str = "",
    mode: str = "new",
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

    Returns
    -------
    VersionInfo
    """
    eid = validate_entry_id(entry_id or entry.entry_id)
    if entry.n_atoms == 0:
        raise ValidationError(f"{entry.source.path}: no atoms to store")
    encoded = {g: encode_group(g, entry.atoms, entry.atom_masks, entry.decimals) for g in GROUPS}
    summary = summarize(entry)
    with backend.writing() as ts:
        latest = backend.read_versions(eid, attrs=["blocks"])
        prev_version = int(latest["version"].max()) if len(latest["version"]) else 0
        if prev_version and mode == "new":
            raise DuplicateEntryError(
                f"entry {eid} is already stored (version {prev_version}); use store.deposit() / "
                f"`moldb deposit` to add a version, or pass entry=... to store it under another id"
            )
        prev_blocks: dict[str, int] = {}
        prev_hashes: dict[int, str] = {}
        if prev_version:
            i = int(np.argmax(latest["version"]))
            prev_blocks = {k: int(v) for k, v in json.loads(latest["blocks"][i]).items()}
            prev_hashes = {b: m["content_hash"] for b, m in backend.read_block_meta(list(prev_blocks.values())).items()}
        blocks: dict[str, int] = {}
        new_rows: list[tuple[int, str, int, dict[str, Any], str]] = []
        for g in GROUPS:
            cells, meta, digest = encoded[g]
            old = prev_blocks.get(g)
            if old is not None and prev_hashes.get(old) == digest:
                blocks[g] = old
                continue
            blocks[g] = _new_block_id()
            backend.write_atoms(g, ts, blocks[g], cells)
            new_rows.append((blocks[g], g, entry.n_atoms, meta, digest))
        cif_block = _new_block_id()
        coords, cells, meta, digest = _cif_cells(entry, cif_block)
        old = prev_blocks.get("cif")
        if old is not None and prev_hashes.get(old) == digest:
            blocks["cif"] = old
        else:
            blocks["cif"] = cif_block
            if len(cells["value"]):
                backend.write_cells("cif", ts, coords, cells)
            new_rows.append((cif_block, "cif", len(cells["value"]), meta, digest))
        if new_rows:
            backend.write_cells(
                "blocks", ts, [np.array([r[0] for r in new_rows], dtype=np.uint64)],
                {"entry": np.array([eid] * len(new_rows), dtype=object),
                 "group": np.array([r[1] for r in new_rows], dtype=object),
                 "n_rows": np.array([r[2] for r in new_rows], dtype=np.uint64),
                 "meta": np.array([json.dumps(r[3]) for r in new_rows], dtype=object),
                 "content_hash": np.array([r[4] for r in new_rows], dtype=object)},
            )
        all_hashes = {g: encoded[g][2] for g in GROUPS} | {"cif": digest}
        content_hash = hashlib.sha256(json.dumps(all_hashes, sort_keys=True).encode()).hexdigest()
        version = prev_version + 1
        source = {"path": entry.source.path, "format": entry.source.format, "sha256": entry.source.sha256,
                  "size": entry.source.size}
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
