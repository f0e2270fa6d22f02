"""The numpy fast path for ``_atom_site`` (moldb.ingest.cif_loop) gives exactly what gemmi gives."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import moldb.ingest.mmcif as mmcif
from moldb.ingest.cif_loop import PLACEHOLDER_ITEM, split_atom_site
from moldb.schema.parsed import MASK_DOT, MASK_QUESTION, ParsedEntry
from tests.conftest import DATA

CIF_FILES = sorted(p for d in ("mmcif", "modelcif", "ihm") for p in (DATA / d).glob("*.cif*"))


def _slow(path: Path, monkeypatch: pytest.MonkeyPatch) -> ParsedEntry:
    with monkeypatch.context() as m:
        m.setattr(mmcif, "split_atom_site", lambda *a, **k: None)
        return mmcif.read_mmcif(path)


def _same(a: ParsedEntry, b: ParsedEntry) -> None:
    assert a.entry_id == b.entry_id
    assert a.atoms.schema == b.atoms.schema and a.atoms.equals(b.atoms)
    assert a.atom_items == b.atom_items and a.aniso_items == b.aniso_items and a.decimals == b.decimals
    assert a.atom_masks.keys() == b.atom_masks.keys()
    for k in a.atom_masks:
        np.testing.assert_array_equal(a.atom_masks[k], b.atom_masks[k])
    assert [c.name for c in a.categories] == [c.name for c in b.categories]
    for ca, cb in zip(a.categories, b.categories, strict=True):
        assert ca.table.equals(cb.table), ca.name
        assert ca.masks.keys() == cb.masks.keys(), ca.name
        for k in ca.masks:
            np.testing.assert_array_equal(ca.masks[k], cb.masks[k])
    assert a.source == b.source


def test_the_corpus_takes_the_fast_path() -> None:
    assert len(CIF_FILES) >= 45
    taken = 0
    for p in CIF_FILES:
        raw = p.read_bytes()
        text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        taken += split_atom_site(text) is not None
    assert taken >= 40  # wwPDB, PDBe and ModelCIF files; IHM sphere models have no _atom_site


@pytest.mark.parametrize("path", CIF_FILES, ids=lambda p: p.name)
def test_fast_and_gemmi_paths_parse_the_same(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        slow = _slow(path, monkeypatch)
    except Exception as exc:  # a file gemmi refuses must be refused the same way
        with pytest.raises(type(exc)):
            mmcif.read_mmcif(path)
        return
    _same(mmcif.read_mmcif(path), slow)
    raw = path.read_bytes()
    if split_atom_site(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw) is not None:
        assert mmcif._fast_document(raw)[0] is not None  # the fast path ran, not gemmi's fallback


DOC = """data_T
_entry.id T
loop_
_atom_site.group_PDB
_atom_site.id
_atom_site.label_atom_id
_atom_site.label_alt_id
_atom_site.auth_atom_id
_atom_site.Cartn_x
ATOM 1 "O5'" . '.' 1.500
ATOM 2 'it's' ? "?" -2.25
HETATM 3 N A X 0.000
#
loop_
_atom_site_anisotrop.id
_atom_site_anisotrop.U[1][1]
1 0.1
#
_cell.length_a 10.0
"""


def test_values_quotes_and_nulls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut = split_atom_site(DOC.encode())
    assert cut is not None
    rest, loop = cut
    assert mmcif._fast_document(DOC.encode())[0] is not None
    assert loop.items == ["group_PDB", "id", "label_atom_id", "label_alt_id", "auth_atom_id", "Cartn_x"]
    assert loop.n_rows == 3 and f"_atom_site.{PLACEHOLDER_ITEM}" in rest.decode()
    atom, mask = loop.columns["label_atom_id"]
    assert atom.to_pylist() == ["O5'", "it's", "N"] and mask is None
    alt, mask = loop.columns["label_alt_id"]
    assert alt.to_pylist() == [None, None, "A"] and mask is not None
    assert mask.tolist() == [MASK_DOT, MASK_QUESTION, 0]
    quoted, mask = loop.columns["auth_atom_id"]
    assert quoted.to_pylist() == [".", "?", "X"] and mask is None  # quoted . and ? are values
    path = tmp_path / "t.cif"
    path.write_text(DOC)
    _same(mmcif.read_mmcif(path), _slow(path, monkeypatch))
    crlf = tmp_path / "crlf.cif"  # Windows line ends
    crlf.write_bytes(DOC.replace("\n", "\r\n").encode())
    assert mmcif._fast_document(crlf.read_bytes())[0] is not None  # gemmi reads what the fast path leaves
    fast = mmcif.read_mmcif(crlf)
    _same(fast, _slow(crlf, monkeypatch))
    assert fast.atoms.column("label_atom_id").to_pylist() == ["O5'", "it's", "N"]


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda d: d.replace("'it's'", "'it is'"), "a quoted value with a space"),
        (lambda d: d.replace("HETATM 3", "# a comment\nHETATM 3"), "a comment inside the loop"),
        (lambda d: d.replace("HETATM 3 N A X 0.000", "HETATM 3\n;N\n;\nA X 0.000"), "a text field"),
        (lambda d: d + "data_U\n_entry.id U\n", "two data blocks"),
        (lambda d: d.replace("N A X", "N A \u00c5"), "non-ASCII bytes"),
        (lambda d: d.replace("-2.25", "-2.25 extra"), "a token count that is not a multiple of the items"),
        (lambda d: d.replace("_cell.length_a 10.0", "_atom_site.type_symbol C"), "another _atom_site item"),
        (lambda d: d.replace("0.000\n#\nloop_", "0.000\nloop_"), "a loop running into loop_ with no # line"),
        (lambda d: d.replace("X 0.000", "X 0.000\nGlobal_ a b c d e"), "a reserved word inside the loop"),
        (lambda d: d.replace("X 0.000", "X 0.000\nATOM 4 N data_x Y 1.0"), "a data_ word inside the loop"),
        (lambda d: d.replace("N A X", "N A ;X"), "a value starting with a semicolon"),
    ],
)
def test_unusual_loops_go_to_gemmi(edit, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    doc = edit(DOC)
    assert split_atom_site(doc.encode()) is None, why
    path = tmp_path / "t.cif"
    path.write_text(doc)
    try:
        slow = _slow(path, monkeypatch)
    except Exception as exc:  # as above
        with pytest.raises(type(exc)):
            mmcif.read_mmcif(path)
        return
    _same(mmcif.read_mmcif(path), slow)
