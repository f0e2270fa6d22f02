"""Read MMTF files into a :class:`~moldb.schema.parsed.ParsedEntry`.

Decoding is done by :mod:`moldb.ingest.mmtf_codec`; this module maps the MMTF fields
onto the typed ``_atom_site`` columns and mmCIF categories. All per-atom arrays are
built with numpy: per-group values are expanded with ``np.repeat`` over the group
types, and strings become Arrow dictionary arrays.

Conventions
-----------
* ``group_PDB`` is ``ATOM`` for groups whose ``chemCompType`` is a polymer-linking
  type (peptide / DNA / RNA *linking* or *terminus*) in a polymer entity, else ``HETATM``.
* ``type_symbol`` is upper-cased (``Se`` → ``SE``) as in PDB mmCIF files.
* A column whose MMTF field is absent (e.g. ``occupancy`` without ``occupancyList``)
  is left out of ``atoms`` and ``atom_items``; MMTF cannot say what the value was.
* ``moldb_mmtf_bond`` atom indices are 0-based rows of ``atoms``; bond orders not
  given are null (``?``). ``moldb_mmtf_sec_struct`` keeps the DSSP code as written
  (``-1`` undefined) for each group index.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ParseError
from moldb.ingest.mmtf_codec import decode_mmtf
from moldb.schema.columns import ATOM_COLUMNS
from moldb.schema.parsed import MASK_DOT, MASK_QUESTION, MASK_VALUE, Category, ParsedEntry, SourceInfo

__all__ = ["read_mmtf"]

DECIMALS = {"Cartn_x": 3, "Cartn_y": 3, "Cartn_z": 3, "occupancy": 2, "B_iso_or_equiv": 2}
_LINKING = re.compile(r"(PEPTIDE|DNA|RNA).*(LINKING|TERMINUS)")
_REFINE = {"ls_d_res_high": "resolution", "ls_R_factor_R_free": "rFree", "ls_R_factor_R_work": "rWork"}
_BOND_ORDER = {1: "SING", 2: "DOUB", 3: "TRIP", 4: "QUAD"}
_OPER_ITEMS = [f"matrix[{i}][{j}]" if j < 4 else f"vector[{i}]" for i in (1, 2, 3) for j in (1, 2, 3, 4)]


def read_mmtf(path: str | Path) -> ParsedEntry:
    """Read an MMTF file (plain, gzip- or bzip2-compressed).

    Parameters
    ----------
    path : str or pathlib.Path
        The ``.mmtf`` / ``.mmtf.gz`` / ``.mmtf.bz2`` file.

    Returns
    -------
    ParsedEntry
        Atoms, masks and categories of the file.

    Raises
    ------
    ParseError
        The file cannot be read or is not valid MMTF 1.x; the message names the file.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ParseError(str(p), f"cannot read file ({exc.strerror or exc})") from None
    d = decode_mmtf(data, str(p))
    entry_id = str(d.get("structureId") or p.name.split(".")[0].upper())
    atoms, masks = _atoms(d)
    return ParsedEntry(
        entry_id=entry_id,
        atoms=atoms,
        atom_masks=masks,
        atom_items=list(atoms.column_names),
        decimals={k: v for k, v in DECIMALS.items() if k in atoms.column_names},
        categories=_categories(d, entry_id),
        source=SourceInfo(str(p), "mmtf", hashlib.sha256(data).hexdigest(), len(data)),
    )


def _dict_array(
    labels: Sequence[str] | np.ndarray, idx: np.ndarray, null: np.ndarray | None = None
) -> pa.Array:
    """Dictionary array whose row ``k`` is ``labels[idx[k]]`` (null where ``null``)."""
    uniq, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    indices = codes.ravel().astype(np.int32)[idx]
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=null), pa.array(uniq.tolist(), pa.string()))


def _char_array(chars: np.ndarray, idx: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Dictionary array of MMTF characters (``<U1``) at ``idx``; NUL and blank become null."""
    code = chars.view(np.uint32)
    blank = (code == 0) | (code == 32)
    uniq = np.unique(code[~blank])
    pos = np.minimum(np.searchsorted(uniq, code), max(uniq.size - 1, 0)).astype(np.int32)
    null = blank[idx]
    values = pa.array([chr(c) for c in uniq.tolist()], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(pos[idx], mask=null), values), null


def _chain_entities(d: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Entity index of each chain (-1 when none) and whether the chain is a polymer."""
    entity = np.full(d["numChains"], -1, dtype=np.int64)
    polymer = np.ones(d["numChains"], dtype=bool)
    for i, e in enumerate(d.get("entityList") or []):
        chains = np.asarray(e.get("chainIndexList", []), dtype=np.int64)
        entity[chains] = i
        polymer[chains] = str(e.get("type", "")).lower() == "polymer"
    return entity, polymer


def _atoms(d: dict[str, Any]) -> tuple[pa.Table, dict[str, np.ndarray]]:
    groups, gtype = d["groupList"], d["groupTypeList"].astype(np.int64)
    n_atoms = d["numAtoms"]
    per_type = np.array([len(g["atomNameList"]) for g in groups], dtype=np.int64)
    per_group = per_type[gtype]
    group = np.repeat(np.arange(gtype.size), per_group)
    local = np.arange(n_atoms) - np.repeat(np.cumsum(per_group) - per_group, per_group)
    flat = (np.cumsum(per_type) - per_type)[gtype[group]] + local  # row in concatenated group lists
    chain_of_group = np.repeat(np.arange(d["numChains"]), d["groupsPerChain"])
    chain = chain_of_group[group]
    model = np.repeat(np.arange(d["numModels"]), d["chainsPerModel"])[chain]
    entity, polymer = _chain_entities(d)
    has_entities = "entityList" in d

    def cat_lists(key: str) -> list[Any]:
        return [x for g in groups for x in g[key]]

    linking = np.array([bool(_LINKING.search(str(g.get("chemCompType", "")).upper())) for g in groups], bool)
    hetatm = ~(linking[gtype[group]] & polymer[chain])
    names = [g["groupName"] for g in groups]
    chain_ids = d["chainIdList"]
    cols: dict[str, pa.Array] = {}
    masks: dict[str, np.ndarray] = {}

    def nullable(name: str, values: Any, null: np.ndarray, kind: int, as_int: bool = False) -> None:
        cols[name] = pa.array(values, pa.int64(), mask=null) if as_int else values
        if null.any():
            masks[name] = np.where(null, kind, MASK_VALUE).astype(np.uint8)

    cols["group_PDB"] = _dict_array(["ATOM", "HETATM"], hetatm.astype(np.int64))
    if "atomIdList" in d:
        cols["id"] = pa.array(d["atomIdList"].astype(np.int64))
    cols["type_symbol"] = _dict_array([str(e).upper() for e in cat_lists("elementList")], flat)
    atom_names = _dict_array([str(a) for a in cat_lists("atomNameList")], flat)
    cols["label_atom_id"] = atom_names
    if "altLocList" in d:
        nullable("label_alt_id", *_char_array(d["altLocList"], np.arange(n_atoms)), MASK_DOT)
    comp = _dict_array(names, gtype[group])
    cols["label_comp_id"] = comp
    cols["label_asym_id"] = _dict_array(chain_ids, chain)
    if has_entities:
        null = entity[chain] < 0
        labels = [str(i + 1) for i in range(len(d["entityList"]))] or [""]
        ent = _dict_array(labels, np.where(null, 0, entity[chain]), null)
        nullable("label_entity_id", ent, null, MASK_QUESTION)
    if "sequenceIndexList" in d:
        seq = d["sequenceIndexList"].astype(np.int64)[group]
        null = (seq < 0) | ~polymer[chain] if has_entities else seq < 0
        nullable("label_seq_id", seq + 1, null, MASK_DOT, as_int=True)
    if "insCodeList" in d:
        nullable("pdbx_PDB_ins_code", *_char_array(d["insCodeList"], group), MASK_QUESTION)
    for axis in "xyz":
        cols[f"Cartn_{axis}"] = pa.array(d[f"{axis}CoordList"].astype(np.float64))
    for name, key in (("occupancy", "occupancyList"), ("B_iso_or_equiv", "bFactorList")):
        if key in d:
            cols[name] = pa.array(d[key].astype(np.float64))
    charges = np.asarray(cat_lists("formalChargeList"), dtype=np.int64)
    cols["pdbx_formal_charge"] = pa.array(charges[flat])
    cols["auth_seq_id"] = pa.array(d["groupIdList"].astype(np.int64)[group])
    cols["auth_comp_id"] = comp
    cols["auth_asym_id"] = (
        _dict_array(d["chainNameList"], chain) if "chainNameList" in d else cols["label_asym_id"]
    )
    cols["auth_atom_id"] = atom_names
    cols["pdbx_PDB_model_num"] = pa.array((model + 1).astype(np.int64))
    order = [c.name for c in ATOM_COLUMNS if c.name in cols]
    return pa.table({name: cols[name] for name in order}), masks


def _num(v: Any) -> str | None:
    """Text of an MMTF number: float32 values print their shortest float32 form."""
    if v is None or isinstance(v, int):
        return None if v is None else str(v)
    return str(np.float32(v)) if float(np.float32(v)) == v else repr(float(v))


def _cat(name: str, cols: dict[str, Any]) -> Category:
    """Category of string columns; nulls (``None``) are unknown (mask ``?``)."""
    arrays = {k: (v if isinstance(v, pa.Array) else pa.array(list(v), pa.string())) for k, v in cols.items()}
    arrays = {k: a.cast(pa.string()) for k, a in arrays.items()}
    nulls = {k: a.is_null().to_numpy(zero_copy_only=False) for k, a in arrays.items() if a.null_count}
    masks = {k: np.where(n, MASK_QUESTION, MASK_VALUE).astype(np.uint8) for k, n in nulls.items()}
    return Category(name, pa.table(arrays), masks)


def _rows(name: str, items: Sequence[str], rows: Sequence[Sequence[Any]]) -> Category:
    """Category from rows of values (``None`` → null)."""
    return _cat(name, {item: [r[i] for r in rows] for i, item in enumerate(items)})


def _oper(oper_id: str, m: Sequence[float]) -> list[str | None]:
    """Row ``id, matrix[1][1] … vector[3]`` of a row-major 4x4 matrix."""
    return [oper_id, *(_num(m[4 * i + j]) for i in range(3) for j in range(4))]


def _categories(d: dict[str, Any], entry_id: str) -> list[Category]:
    out = [_rows("entry", ["id"], [[entry_id]])]
    if d.get("title") is not None:
        out.append(_rows("struct", ["entry_id", "title"], [[entry_id, d["title"]]]))
    if d.get("experimentalMethods"):
        out.append(
            _rows("exptl", ["entry_id", "method"], [[entry_id, str(m)] for m in d["experimentalMethods"]])
        )
    refine = [(item, _num(d[key])) for item, key in _REFINE.items() if d.get(key) is not None]
    if refine:
        out.append(
            _rows("refine", ["entry_id"] + [k for k, _ in refine], [[entry_id] + [v for _, v in refine]])
        )
    if d.get("depositionDate"):
        items = ["entry_id", "recvd_initial_deposition_date"]
        out.append(_rows("pdbx_database_status", items, [[entry_id, d["depositionDate"]]]))
    if d.get("releaseDate"):
        out.append(
            _rows("pdbx_audit_revision_history", ["ordinal", "revision_date"], [["1", d["releaseDate"]]])
        )
    if d.get("unitCell"):
        items = ["entry_id", "length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma"]
        out.append(_rows("cell", items, [[entry_id, *map(_num, d["unitCell"])]]))
    if d.get("spaceGroup"):
        out.append(_rows("symmetry", ["entry_id", "space_group_name_H-M"], [[entry_id, d["spaceGroup"]]]))
    return out + _entity_categories(d) + _assembly_categories(d) + _bond_categories(d)


def _entity_categories(d: dict[str, Any]) -> list[Category]:
    entities = d.get("entityList") or []
    if not entities:
        return []
    rows = [[str(i + 1), e.get("type"), e.get("description")] for i, e in enumerate(entities)]
    out = [_rows("entity", ["id", "type", "pdbx_description"], rows)]
    auth = d.get("chainNameList", d["chainIdList"])
    strands = [",".join(dict.fromkeys(str(auth[c]) for c in e.get("chainIndexList", []))) for e in entities]
    poly = [[str(i + 1), strands[i], e["sequence"]] for i, e in enumerate(entities)
            if e.get("type") == "polymer" and e.get("sequence")]  # fmt: skip
    if poly:
        out.append(
            _rows("entity_poly", ["entity_id", "pdbx_strand_id", "pdbx_seq_one_letter_code_can"], poly)
        )
    return out


def _assembly_categories(d: dict[str, Any]) -> list[Category]:
    out: list[Category] = []
    oper_items = ["id", *_OPER_ITEMS]
    if d.get("bioAssemblyList"):
        opers: dict[tuple[float, ...], str] = {}
        names = [str(a.get("name") or i + 1) for i, a in enumerate(d["bioAssemblyList"])]
        gen = []
        for name, a in zip(names, d["bioAssemblyList"], strict=True):
            for t in a.get("transformList", []):
                oper = opers.setdefault(tuple(t["matrix"]), str(len(opers) + 1))
                asyms = dict.fromkeys(str(d["chainIdList"][c]) for c in t.get("chainIndexList", []))
                gen.append([name, oper, ",".join(asyms)])
        out.append(_rows("pdbx_struct_assembly", ["id"], [[n] for n in names]))
        out.append(_rows("pdbx_struct_assembly_gen", ["assembly_id", "oper_expression", "asym_id_list"], gen))
        out.append(_rows("pdbx_struct_oper_list", oper_items, [_oper(i, m) for m, i in opers.items()]))
    if d.get("ncsOperatorList"):
        rows = [_oper(str(i + 1), m) for i, m in enumerate(d["ncsOperatorList"])]
        out.append(_rows("struct_ncs_oper", oper_items, rows))
    return out


def _bond_categories(d: dict[str, Any]) -> list[Category]:
    out: list[Category] = []
    comps: dict[str, list[str | None]] = {}
    bonds: dict[tuple[str, str, str], str | None] = {}
    for g in d["groupList"]:
        name, atoms, code = str(g["groupName"]), g["atomNameList"], g.get("singleLetterCode")
        comps.setdefault(name, [name, g.get("chemCompType"), None if code in (None, "?") else code])
        pairs = g.get("bondAtomList", [])
        for k, order in enumerate(g.get("bondOrderList", [])):
            bonds.setdefault((name, atoms[pairs[2 * k]], atoms[pairs[2 * k + 1]]), _BOND_ORDER.get(order))
    if comps:
        out.append(_rows("chem_comp", ["id", "type", "one_letter_code"], list(comps.values())))
    if bonds:
        items = ["comp_id", "atom_id_1", "atom_id_2", "value_order"]
        out.append(_rows("chem_comp_bond", items, [[*k, v] for k, v in bonds.items()]))
    if "bondAtomList" in d:
        pairs = d["bondAtomList"].astype(np.int64).reshape(-1, 2)
        order = d.get("bondOrderList")
        orders = pa.nulls(len(pairs), pa.int64()) if order is None else pa.array(order.astype(np.int64))
        cols = {"atom_index_1": pa.array(pairs[:, 0]), "atom_index_2": pa.array(pairs[:, 1]), "order": orders}
        out.append(_cat("moldb_mmtf_bond", cols))
    if "secStructList" in d:
        ss = d["secStructList"].astype(np.int64)
        cols = {"group_index": pa.array(np.arange(ss.size)), "dssp_code": pa.array(ss)}
        out.append(_cat("moldb_mmtf_sec_struct", cols))
    return out
