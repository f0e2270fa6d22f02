"""Typed ``_atom_site`` columns: names, logical types and storage groups.

The atom table of a :class:`~moldb.Structure` has one row per ``_atom_site`` row
(all models), and its columns carry the mmCIF item names:

=========================  =========  ==========  ==========================================
column                     kind       group       meaning
=========================  =========  ==========  ==========================================
group_PDB                  str        topo        ``ATOM`` / ``HETATM``
id                         int        topo        atom serial
type_symbol                str        topo        element
label_atom_id              str        topo        atom name (label)
label_alt_id               str        topo        alternate location id (null where none)
label_comp_id              str        topo        residue / component name
label_asym_id              str        topo        chain (label)
label_entity_id            str        topo        entity id
label_seq_id               int        topo        residue number (label; null for non-polymer)
pdbx_PDB_ins_code          str        topo        insertion code
Cartn_x, Cartn_y, Cartn_z  float      xyz         Cartesian coordinates, Å
occupancy                  float      adp         occupancy
B_iso_or_equiv             float      adp         isotropic B, Å²
pdbx_formal_charge         int        topo        formal charge
auth_seq_id                int        topo        residue number (author)
auth_comp_id               str        topo        residue name (author)
auth_asym_id               str        topo        chain (author)
auth_atom_id               str        topo        atom name (author)
pdbx_PDB_model_num         int        topo        model number
U11 … U23                  float      aniso       ``_atom_site_anisotrop.U[i][j]`` (null where absent)
=========================  =========  ==========  ==========================================

String columns come back as Arrow ``dictionary<int32, string>`` arrays; numeric
columns as ``int64`` / ``float64``. Any other ``_atom_site`` item of the source file
is kept verbatim (see :mod:`moldb.schema.parsed`) and appears as a string column.

The ``group`` decides which storage block holds the column: a re-deposition that
changes only B-factors rewrites only the ``adp`` block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

__all__ = [
    "ANISO_COLUMNS",
    "ATOM_COLUMNS",
    "COLUMN_BY_NAME",
    "GROUPS",
    "AtomColumn",
    "arrow_type",
]

Kind = Literal["str", "int", "float"]
Group = Literal["topo", "xyz", "adp", "aniso"]

GROUPS: tuple[Group, ...] = ("topo", "xyz", "adp", "aniso")


@dataclass(frozen=True)
class AtomColumn:
    """One typed atom column.

    Attributes
    ----------
    name : str
        mmCIF item name (without the ``_atom_site.`` prefix), or ``U11`` … ``U23``.
    kind : {"str", "int", "float"}
        Logical type.
    group : {"topo", "xyz", "adp", "aniso"}
        Storage group (one immutable block per group and version).
    decimals : int
        Default number of decimals written on export when the source gives none.
    """

    name: str
    kind: Kind
    group: Group
    decimals: int = 0


_C = AtomColumn
ATOM_COLUMNS: tuple[AtomColumn, ...] = (
    _C("group_PDB", "str", "topo"),
    _C("id", "int", "topo"),
    _C("type_symbol", "str", "topo"),
    _C("label_atom_id", "str", "topo"),
    _C("label_alt_id", "str", "topo"),
    _C("label_comp_id", "str", "topo"),
    _C("label_asym_id", "str", "topo"),
    _C("label_entity_id", "str", "topo"),
    _C("label_seq_id", "int", "topo"),
    _C("pdbx_PDB_ins_code", "str", "topo"),
    _C("Cartn_x", "float", "xyz", 3),
    _C("Cartn_y", "float", "xyz", 3),
    _C("Cartn_z", "float", "xyz", 3),
    _C("occupancy", "float", "adp", 2),
    _C("B_iso_or_equiv", "float", "adp", 2),
    _C("pdbx_formal_charge", "int", "topo"),
    _C("auth_seq_id", "int", "topo"),
    _C("auth_comp_id", "str", "topo"),
    _C("auth_asym_id", "str", "topo"),
    _C("auth_atom_id", "str", "topo"),
    _C("pdbx_PDB_model_num", "int", "topo"),
)

#: The six anisotropic U components (``_atom_site_anisotrop.U[1][1]`` …), Å².
ANISO_COLUMNS: tuple[AtomColumn, ...] = tuple(
    _C(n, "float", "aniso", 4) for n in ("U11", "U22", "U33", "U12", "U13", "U23")
)

#: mmCIF item names of ``_atom_site_anisotrop`` for each U column.
ANISO_ITEMS: dict[str, str] = {
    "U11": "U[1][1]",
    "U22": "U[2][2]",
    "U33": "U[3][3]",
    "U12": "U[1][2]",
    "U13": "U[1][3]",
    "U23": "U[2][3]",
}

COLUMN_BY_NAME: dict[str, AtomColumn] = {c.name: c for c in ATOM_COLUMNS + ANISO_COLUMNS}


def arrow_type(kind: Kind) -> pa.DataType:
    """Arrow type of a logical column kind.

    Parameters
    ----------
    kind : {"str", "int", "float"}

    Returns
    -------
    pyarrow.DataType
    """
    if kind == "str":
        return pa.dictionary(pa.int32(), pa.string())
    if kind == "int":
        return pa.int64()
    return pa.float64()
