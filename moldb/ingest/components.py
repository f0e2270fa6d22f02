"""Chemical-component templates from the wwPDB Chemical Component Dictionary.

The CCD that biotite ships (``biotite/structure/info/components.bcif``) is read
once per process; its ``chem_comp_atom`` and ``chem_comp_bond`` categories are
sorted by ``comp_id``, so any set of components is looked up with one
``searchsorted``. A template is what MMTF stores once per group type: atom
names, elements and intra-residue bonds with their orders.

Reading the dictionary costs ~0.8 s and ~250 MB transient (msgpack objects and
``<U`` arrays); its compact form is ~40 MB. That form is therefore kept as an
``.npz`` in the user cache (``$MOLDB_CACHE_DIR``, else ``$XDG_CACHE_HOME/moldb``,
else ``~/.cache/moldb``), keyed by biotite's version and the dictionary file's
size and mtime, and later processes load it in ~50 ms. A cache that cannot be
written (read-only home) or read (corrupt) is skipped: the dictionary is read.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

__all__ = ["BOND_ORDERS", "Template", "ccd_source", "templates_for"]

#: CCD ``value_order`` → bond order code (``quad`` is 4, unknown 0).
BOND_ORDERS = {"SING": 1, "DOUB": 2, "TRIP": 3, "QUAD": 4}


@dataclass(frozen=True)
class Template:
    """One chemical component's template.

    Attributes
    ----------
    comp_id : str
    atom_names : list of str
    elements : list of str
    bonds : numpy.ndarray
        ``int16``, shape ``(n_bonds, 4)``: atom index 1, atom index 2 (into
        ``atom_names``), order code (:data:`BOND_ORDERS`), aromatic flag (0/1).
    """

    comp_id: str
    atom_names: list[str]
    elements: list[str]
    bonds: np.ndarray


def _runs(comp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ids of a sorted id column and the row where each one's run starts (plus the end)."""
    starts = np.flatnonzero(comp[1:] != comp[:-1]) + 1 if comp.size else np.zeros(0, np.int64)
    starts = np.concatenate([[0], starts]) if comp.size else starts
    return comp[starts].astype(str), np.append(starts, comp.size).astype(np.int64)


def _cache_path(ccd_file: str) -> Path:
    import biotite

    root = os.environ.get("MOLDB_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "moldb")
    st = os.stat(ccd_file)
    return Path(root) / f"ccd-biotite{biotite.__version__}-{st.st_size}-{st.st_mtime_ns}.npz"


@functools.cache
def _ccd() -> dict[str, np.ndarray]:
    """The CCD's compact tables: from the user cache when there, else read and cached."""
    import biotite.structure.info.ccd as ccd

    ccd_file = getattr(ccd, "_CCD_FILE", None)  # biotite's private path: without it, no cache
    try:
        path: Path | None = _cache_path(str(ccd_file)) if ccd_file else None
    except OSError:
        path = None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                got = {k: z[k] for k in z.files}
            if set(got) == set(_KEYS):
                return got
        except (OSError, ValueError):
            pass  # unreadable cache: read the dictionary again and rewrite it
    out = _read_ccd()
    if path is not None:
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.partial")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **cast(dict[str, Any], out))
            os.replace(tmp, path)
        except OSError:  # a read-only or full cache directory: keep the tables in memory only
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
    return out


_KEYS = ("a_ids", "a_runs", "b_ids", "b_runs", "a_name", "a_el", "b_1", "b_2", "b_order", "b_arom")


def _read_ccd() -> dict[str, np.ndarray]:
    """The CCD's atom and bond tables, compact: ~60 MB instead of ~340 MB of ``<U`` arrays.

    Ids become runs (distinct id + start row), names and elements one byte per character, bond
    orders and aromatic flags small integers. biotite's own cached block is used when something
    already loaded it; otherwise the file is read here and dropped, so it is not held for the
    life of the process (``get_ccd`` caches it forever).
    """
    import biotite.structure.info.ccd as ccd
    from biotite.structure.io.pdbx import BinaryCIFFile

    ccd_file = getattr(ccd, "_CCD_FILE", None)
    cached = ccd.get_ccd.cache_info().currsize > 0
    block = ccd.get_ccd() if cached or not ccd_file else BinaryCIFFile.read(ccd_file).block
    atom, bond = block["chem_comp_atom"], block["chem_comp_bond"]
    a_ids, a_runs = _runs(atom["comp_id"].as_array())
    b_ids, b_runs = _runs(bond["comp_id"].as_array())
    order = bond["value_order"].as_array()
    codes = np.zeros(order.shape, np.uint8)
    for name, code in BOND_ORDERS.items():
        codes[order == name] = code
    del order
    out = {
        "a_ids": a_ids, "a_runs": a_runs, "b_ids": b_ids, "b_runs": b_runs,
        "a_name": atom["atom_id"].as_array().astype("S"), "a_el": atom["type_symbol"].as_array().astype("S"),
        "b_1": bond["atom_id_1"].as_array().astype("S"), "b_2": bond["atom_id_2"].as_array().astype("S"),
        "b_order": codes, "b_arom": bond["pdbx_aromatic_flag"].as_array() == "Y",
    }
    del block, atom, bond
    return out


def _span(ids: np.ndarray, runs: np.ndarray, cid: str) -> tuple[int, int]:
    i = int(np.searchsorted(ids, cid))
    if i == ids.size or ids[i] != cid:
        return 0, 0
    return int(runs[i]), int(runs[i + 1])


def ccd_source() -> str:
    """Provenance string of the dictionary in use."""
    import biotite

    return f"wwPDB CCD as shipped with biotite {biotite.__version__}"


def templates_for(comp_ids: list[str]) -> dict[str, Template]:
    """Templates of the given components that the CCD knows (unknown ids are left out)."""
    if not comp_ids:
        return {}
    d = _ccd()
    out = {}
    for cid in sorted(set(comp_ids)):
        s, e = _span(d["a_ids"], d["a_runs"], cid)
        if s == e:
            continue
        bs, be = _span(d["b_ids"], d["b_runs"], cid)
        names = [n.decode() for n in d["a_name"][s:e].tolist()]
        index = {n: i for i, n in enumerate(names)}
        rows = [(index.get(a.decode()), index.get(b.decode()), int(o), int(f))
                for a, b, o, f in zip(d["b_1"][bs:be].tolist(), d["b_2"][bs:be].tolist(),
                                      d["b_order"][bs:be].tolist(), d["b_arom"][bs:be].tolist(), strict=True)]
        bonds = np.array([r for r in rows if r[0] is not None and r[1] is not None], dtype=np.int16).reshape(-1, 4)
        out[cid] = Template(cid, names, [el.decode() for el in d["a_el"][s:e].tolist()], bonds)
    return out
