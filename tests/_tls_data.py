"""Test helper: TLS groups and atoms of a PHENIX-refined mmCIF, read with gemmi (not moldb)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mmcif"
_SEL = re.compile(r"chain '?(\w+)'? and \(resid (-?\d+) through (-?\d+) ?\)")


@dataclass
class TlsData:
    T: np.ndarray  # (G, 3, 3) Å²
    L: np.ndarray  # (G, 3, 3) deg²
    S: np.ndarray  # (G, 3, 3) Å·deg, S[i, j] = S[i+1][j+1] of the file
    origin: np.ndarray  # (G, 3)
    group: np.ndarray  # (n,) index into G, -1 outside every group
    xyz: np.ndarray  # (n, 3)
    b: np.ndarray  # (n,) B_iso
    u6: np.ndarray  # (n, 6) U11 U22 U33 U12 U13 U23, NaN where the file has no aniso row
    ids: list[str]  # TLS ids in G order


def _f(v: str) -> float:
    return float(v) if v not in ("?", ".") else 0.0


def read_tls(path: Path) -> TlsData:
    """Parse ``_pdbx_refine_tls`` by tag name (column order differs between programs) and the
    PHENIX selection strings of ``_pdbx_refine_tls_group``; atoms of model 1 via gemmi."""
    block = gemmi.cif.read(str(path)).sole_block()
    tls = block.find_mmcif_category("_pdbx_refine_tls.")
    cols = {tag.split(".", 1)[1]: i for i, tag in enumerate(tls.tags)}
    ids, T, L, S, O_ = [], [], [], [], []
    for row in tls:
        def v(name: str, row=row) -> float:
            return _f(row[cols[name]])
        ids.append(row[cols["id"]])
        O_.append([v("origin_x"), v("origin_y"), v("origin_z")])
        for mats, letter in ((T, "T"), (L, "L")):
            m = np.zeros((3, 3))
            for i in range(3):
                for j in range(i, 3):
                    m[i, j] = m[j, i] = v(f"{letter}[{i + 1}][{j + 1}]")
            mats.append(m)
        S.append([[v(f"S[{i + 1}][{j + 1}]") for j in range(3)] for i in range(3)])
    grp_cat = block.find_mmcif_category("_pdbx_refine_tls_group.")
    gcols = {tag.split(".", 1)[1]: i for i, tag in enumerate(grp_cat.tags)}
    ranges = []  # (chain, first, last, group index)
    for row in grp_cat:
        text = gemmi.cif.as_string(row[gcols["selection_details"]])
        m = _SEL.search(text)
        assert m, text
        ranges.append((m.group(1), int(m.group(2)), int(m.group(3)), ids.index(row[gcols["refine_tls_id"]])))
    st = gemmi.read_structure(str(path))
    xyz, b, u6, group = [], [], [], []
    for ch in st[0]:
        for res in ch:
            g = next((k for c, lo, hi, k in ranges if c == ch.name and lo <= res.seqid.num <= hi), -1)
            for at in res:
                xyz.append(at.pos.tolist())
                b.append(at.b_iso)
                a = at.aniso
                u6.append([a.u11, a.u22, a.u33, a.u12, a.u13, a.u23] if a.nonzero() else [np.nan] * 6)
                group.append(g)
    return TlsData(np.array(T), np.array(L), np.array(S), np.array(O_), np.array(group), np.array(xyz),
                   np.array(b), np.array(u6, dtype=np.float64), ids)
