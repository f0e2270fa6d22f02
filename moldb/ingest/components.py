"""Chemical-component templates from the wwPDB Chemical Component Dictionary.

The CCD that biotite ships (``biotite/structure/info/components.bcif``) is read
once per process; its ``chem_comp_atom`` and ``chem_comp_bond`` categories are
sorted by ``comp_id``, so any set of components is looked up with one
``searchsorted``. A template is what MMTF stores once per group type: atom
names, elements and intra-residue bonds with their orders.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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


@functools.cache
def _ccd() -> dict[str, np.ndarray]:
    import biotite.structure.info.ccd as ccd

    block = ccd.get_ccd()
    atom, bond = block["chem_comp_atom"], block["chem_comp_bond"]
    return {
        "a_comp": atom["comp_id"].as_array(), "a_name": atom["atom_id"].as_array(),
        "a_el": atom["type_symbol"].as_array(),
        "b_comp": bond["comp_id"].as_array(), "b_1": bond["atom_id_1"].as_array(),
        "b_2": bond["atom_id_2"].as_array(), "b_order": bond["value_order"].as_array(),
        "b_arom": bond["pdbx_aromatic_flag"].as_array(),
    }


def ccd_source() -> str:
    """Provenance string of the dictionary in use."""
    import biotite

    return f"wwPDB CCD as shipped with biotite {biotite.__version__}"


def templates_for(comp_ids: list[str]) -> dict[str, Template]:
    """Templates of the given components that the CCD knows (unknown ids are left out)."""
    if not comp_ids:
        return {}
    d = _ccd()
    ids = np.asarray(sorted(set(comp_ids)))
    a_lo = np.searchsorted(d["a_comp"], ids, "left")
    a_hi = np.searchsorted(d["a_comp"], ids, "right")
    b_lo = np.searchsorted(d["b_comp"], ids, "left")
    b_hi = np.searchsorted(d["b_comp"], ids, "right")
    out = {}
    for cid, s, e, bs, be in zip(ids.tolist(), a_lo, a_hi, b_lo, b_hi, strict=True):
        if s == e:
            continue
        names = d["a_name"][s:e].tolist()
        index = {n: i for i, n in enumerate(names)}
        rows = [(index.get(a), index.get(b), BOND_ORDERS.get(o, 0), 1 if f == "Y" else 0)
                for a, b, o, f in zip(d["b_1"][bs:be], d["b_2"][bs:be], d["b_order"][bs:be],
                                      d["b_arom"][bs:be], strict=True)]
        bonds = np.array([r for r in rows if r[0] is not None and r[1] is not None], dtype=np.int16).reshape(-1, 4)
        out[cid] = Template(cid, names, d["a_el"][s:e].tolist(), bonds)
    return out
