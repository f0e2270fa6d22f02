"""mmCIF and PDB readers (through gemmi).

Both return a :class:`~moldb.schema.parsed.ParsedEntry` that keeps every category
and value of the file. PDB files are converted by gemmi into an mmCIF document
first (``Structure.make_mmcif_document``), so they share one code path.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from moldb.errors import ParseError
from moldb.ingest.cif_loop import PLACEHOLDER_ITEM, AtomSiteLoop, split_atom_site
from moldb.ingest.columns import CifValue, text_column, typed_text, unquote
from moldb.schema.columns import ANISO_COLUMNS, ANISO_ITEMS, ATOM_COLUMNS, COLUMN_BY_NAME
from moldb.schema.parsed import MASK_DOT, MASK_QUESTION, MASK_VALUE, Category, ParsedEntry, SourceInfo

__all__ = ["parse_cif_block", "read_mmcif", "read_pdb", "source_info"]

_TYPED = {c.name: c for c in ATOM_COLUMNS}


def source_info(path: str | Path, fmt: str, data: bytes | None = None) -> SourceInfo:
    """Checksum and size of a source file."""
    raw = Path(path).read_bytes() if data is None else data
    return SourceInfo(str(path), fmt, hashlib.sha256(raw).hexdigest(), len(raw))


def read_mmcif(path: str | Path) -> ParsedEntry:
    """Read an mmCIF file (plain or gzip).

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    ParsedEntry

    Raises
    ------
    ParseError
        If gemmi cannot parse the file or it has no ``_atom_site`` category.
    """
    import gemmi

    raw_file = Path(path).read_bytes()
    doc, loop = _fast_document(raw_file)
    if doc is None:
        try:
            doc = gemmi.cif.read(str(path))
        except (RuntimeError, ValueError, OSError) as exc:
            raise ParseError(str(path), f"not a readable mmCIF file ({exc})") from exc
    blocks = [b for b in doc if b.find_mmcif_category("_atom_site.")]
    if not blocks:
        spheres = [b for b in doc if b.find_mmcif_category("_ihm_sphere_obj_site.")]
        if spheres:  # IHM coarse-grained model: spheres become particles (radii kept, moldb.ingest.ihm_states)
            from moldb.ingest.ihm_states import read_ihm_spheres

            return read_ihm_spheres(spheres[0], source_info(path, "mmcif"))
        if any(n.startswith("_ihm_") for b in doc for n in b.get_mmcif_category_names()):
            raise ParseError(str(path), "integrative (IHM) file with no coordinates (neither _atom_site nor "
                             "_ihm_sphere_obj_site): nothing to store")
        raise ParseError(str(path), "no data block with an _atom_site category; is this a coordinate file?")
    return parse_cif_block(blocks[0], source_info(path, "mmcif", raw_file), loop=loop)


def _fast_document(raw_file: bytes) -> tuple[Any, AtomSiteLoop | None]:
    """gemmi's document of the file with ``_atom_site`` tokenized apart (:mod:`moldb.ingest.cif_loop`).

    ``(None, None)`` where the fast path does not apply or anything in it fails: the caller
    then reads the file with gemmi alone (and reports gemmi's error).
    """
    import gemmi

    try:
        text = gzip.decompress(raw_file) if raw_file[:2] == b"\x1f\x8b" else raw_file
        cut = split_atom_site(text)
        if cut is None:
            return None, None
        rest, loop = cut
        aniso = split_atom_site(rest, "atom_site_anisotrop")
        if aniso is not None:
            rest, loop.aniso = aniso
        return gemmi.cif.read_string(rest.decode("utf-8")), loop
    except (RuntimeError, ValueError, OSError, EOFError, zlib.error):
        return None, None


def read_pdb(path: str | Path) -> ParsedEntry:
    """Read a PDB-format file (plain or gzip) through gemmi's mmCIF conversion."""
    import gemmi

    try:
        st = gemmi.read_structure(str(path), format=gemmi.CoorFormat.Pdb)
    except (RuntimeError, ValueError, OSError) as exc:
        raise ParseError(str(path), f"not a readable PDB file ({exc})") from exc
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise ParseError(str(path), "no ATOM/HETATM records; is this a coordinate file?")
    st.setup_entities()
    doc = st.make_mmcif_document()
    entry = parse_cif_block(doc.sole_block(), source_info(path, "pdb"), lenient=True)
    for name, dec in entry.decimals.items():  # gemmi trims trailing zeros; PDB columns are fixed-width
        entry.decimals[name] = max(dec, COLUMN_BY_NAME[name].decimals)
    if not entry.entry_id or entry.entry_id.upper() in {"", "XXXX"}:
        entry.entry_id = _stem(path)
    return entry


def _stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".gz", ".bz2", ".cif", ".pdb", ".ent", ".bcif", ".mmtf"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    if name.lower().startswith("pdb") and len(name) == 7:
        name = name[3:]
    return name.upper()


def _category(name: str, raw: dict[str, list[CifValue]]) -> Category:
    """A category from gemmi's ``raw=False`` values, kept as Python lists (its table is built on use)."""
    lists: dict[str, list[str | None]] = {}
    masks: dict[str, np.ndarray] = {}
    for item, values in raw.items():
        if None in values or False in values:
            masks[item] = np.fromiter((MASK_VALUE if v.__class__ is str else (MASK_DOT if v is False else MASK_QUESTION)
                                       for v in values), dtype=np.uint8, count=len(values))
            lists[item] = [v if v.__class__ is str else None for v in values]
        else:
            lists[item] = values  # type: ignore[assignment]  # all str
    return Category(name, masks=masks, lists=lists)


def _text_category(name: str, texts: dict[str, tuple[pa.Array, np.ndarray | None]]) -> Category:
    cols = {item: text for item, (text, _) in texts.items()}
    masks = {item: mask for item, (_, mask) in texts.items() if mask is not None}
    return Category(name, pa.table(cols) if cols else pa.table({}), masks)


def parse_cif_block(block: Any, source: SourceInfo, lenient: bool = False,
                    loop: AtomSiteLoop | None = None) -> ParsedEntry:
    """Convert one gemmi ``cif.Block`` into a :class:`ParsedEntry`.

    Parameters
    ----------
    block : gemmi.cif.Block
    source : SourceInfo
    lenient : bool
        Type numeric columns even when their text does not round-trip (used
        for documents moldb did not read verbatim, such as converted PDB files).
    loop : AtomSiteLoop, optional
        The ``_atom_site`` columns, tokenized apart; ``block`` then holds a placeholder there.

    Returns
    -------
    ParsedEntry
    """
    path = source.path
    categories: list[Category] = []
    atoms: dict[str, pa.Array] = {}
    masks: dict[str, np.ndarray] = {}
    decimals: dict[str, int] = {}
    atom_items: list[str] = []
    aniso_items: list[str] = []
    aniso: dict[str, pa.Array] = {}
    for prefix in block.get_mmcif_category_names():
        name = prefix[1:-1]
        raw = block.get_mmcif_category(prefix, raw=False)  # unquoted; None = ?, False = .
        if name == "atom_site":
            if loop is not None and list(raw) == [PLACEHOLDER_ITEM]:
                texts = loop.columns
            else:
                texts = {item: text_column(values) for item, values in raw.items()}
            atom_items = list(texts)
            extra: dict[str, tuple[pa.Array, np.ndarray | None]] = {}
            for item, (text, text_mask) in texts.items():
                spec = _TYPED.get(item)
                typed = typed_text(text, text_mask, spec.kind, lenient) if spec else None
                if typed is None or typed.array is None:
                    extra[item] = (text, text_mask)
                    continue
                atoms[item] = typed.array
                if typed.mask is not None:
                    masks[item] = typed.mask
                if typed.decimals is not None:
                    decimals[item] = typed.decimals
            categories.append(_text_category(name, extra))
        elif name == "atom_site_anisotrop":
            if loop is not None and loop.aniso is not None and list(raw) == [PLACEHOLDER_ITEM]:
                texts = loop.aniso.columns
            else:
                texts = {item: text_column(values) for item, values in raw.items()}
            cat, aniso, aniso_items = _split_aniso(texts, atoms, decimals, lenient)
            categories.append(cat)
        else:
            categories.append(_category(name, raw))
    if not atoms:
        raise ParseError(path, "the _atom_site category has no rows")
    n = len(next(iter(atoms.values())))
    ordered = {c.name: atoms[c.name] for c in ATOM_COLUMNS if c.name in atoms}
    if aniso:
        ordered.update(aniso)
        for u in aniso:
            masks.pop(u, None)
    table = pa.table(ordered)
    if table.num_rows != n:
        raise ParseError(path, "atom_site columns have different lengths")
    entry_id = _entry_id(block) or _stem(path)
    return ParsedEntry(entry_id, table, masks, atom_items, decimals, categories, source, aniso_items)


def _entry_id(block: Any) -> str:
    v = block.find_value("_entry.id")
    if v is None or v in (".", "?"):
        return ""  # no _entry.id: the caller falls back to the file name
    return unquote(str(v)).upper()


def _split_aniso(
    raw: dict[str, tuple[pa.Array, np.ndarray | None]],
    atoms: dict[str, pa.Array],
    decimals: dict[str, int],
    lenient: bool,
) -> tuple[Category, dict[str, pa.Array], list[str]]:
    """Move the U[i][j] items into per-atom columns matched by atom id.

    Falls back to keeping the category verbatim when ids do not match one to one
    or the values do not round-trip.
    """
    items = list(raw)
    if "id" in atoms and "id" in raw and all(v in raw for v in ANISO_ITEMS.values()):
        atom_ids = np.asarray(atoms["id"].to_numpy(zero_copy_only=False))
        id_text, id_mask = raw["id"]
        try:
            aniso_ids = None if id_mask is not None else pc.cast(id_text, pa.int64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            aniso_ids = None
        if aniso_ids is not None and np.unique(atom_ids).size == atom_ids.size:
            order = np.argsort(atom_ids)
            pos = np.searchsorted(atom_ids, aniso_ids, sorter=order)
            pos = np.clip(pos, 0, atom_ids.size - 1)
            rows = order[pos]
            typed = {u.name: typed_text(*raw[ANISO_ITEMS[u.name]], "float", lenient) for u in ANISO_COLUMNS}
            if (
                np.array_equal(atom_ids[rows], aniso_ids)
                and np.unique(rows).size == rows.size
                and all(t.array is not None and t.mask is None for t in typed.values())
            ):
                out: dict[str, pa.Array] = {}
                for u, t in typed.items():
                    full = np.zeros(atom_ids.size, dtype=np.float64)
                    assert t.array is not None
                    full[rows] = t.array.to_numpy()
                    valid = np.zeros(atom_ids.size, dtype=bool)
                    valid[rows] = True
                    out[u] = pa.array(full, mask=~valid)
                    decimals[u] = t.decimals or 0
                rest = {k: v for k, v in raw.items() if k not in ANISO_ITEMS.values()}
                return _text_category("atom_site_anisotrop", rest), out, items
    return _text_category("atom_site_anisotrop", raw), {}, []

