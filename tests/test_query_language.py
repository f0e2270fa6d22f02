"""The selection language: parse trees, error positions, injection-looking input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldb.errors import ValidationError
from moldb.query import SelectionSyntaxError, UnknownColumnError, compile_keywords, parse
from moldb.query.nodes import And, Box, Cmp, Entry, IsIn, Not, Or, Range, Within


def test_keywords_compile_to_column_predicates() -> None:
    assert parse("chain A and resname HEM") == And((Cmp("auth_asym_id", "==", "A"),
                                                     Cmp("label_comp_id", "==", "HEM")))
    assert parse("name CA") == Cmp("label_atom_id", "==", "CA")
    assert parse("resid 10-50") == Range("auth_seq_id", 10.0, 50.0)
    assert parse("resid -5--1") == Range("auth_seq_id", -5.0, -1.0)
    assert parse("altloc A") == Cmp("label_alt_id", "==", "A")
    assert parse("model 3") == Cmp("pdbx_PDB_model_num", "==", 3)
    assert parse("element C N") == IsIn("type_symbol", ("C", "N"))
    assert parse("entry 4zxb") == Entry(("4ZXB",))
    assert parse("name \"C1'\"") == Cmp("label_atom_id", "==", "C1'")


def test_precedence_not_and_or_parentheses() -> None:
    a, b, c = Cmp("label_atom_id", "==", "CA"), Cmp("auth_asym_id", "==", "A"), Cmp("label_comp_id", "==", "HEM")
    assert parse("name CA or chain A and resname HEM") == Or((a, And((b, c))))
    assert parse("(name CA or chain A) and resname HEM") == And((Or((a, b)), c))
    assert parse("not name CA and chain A") == And((Not(a), b))
    assert parse("within 5 of resname GTP and chain A") == And((Within(5.0, of=Cmp("label_comp_id", "==", "GTP")),
                                                                 b))
    assert parse("box 0 0 0 1 2 3") == Box((0.0, 0.0, 0.0), (1.0, 2.0, 3.0))


def test_where_comparisons_are_typed() -> None:
    assert parse("B_iso_or_equiv < 40 and type_symbol != 'H'") == And((Cmp("B_iso_or_equiv", "<", 40.0),
                                                                        Cmp("type_symbol", "!=", "H")))
    with pytest.raises(SelectionSyntaxError) as e:
        parse("B_iso_or_equiv < 'x'")
    assert e.value.pos == 17


def test_keyword_api_compiles_to_the_same_plan() -> None:
    text = parse("chain A and resid 10-50 and name CA")
    kw = compile_keywords(chains="A", residues=(10, 50), atoms="CA").where
    assert kw == text


@pytest.mark.parametrize(("text", "pos", "cls"), [
    ("name CA; import os", 7, SelectionSyntaxError),
    ("name CA and", 11, SelectionSyntaxError),
    ("(name CA", 8, SelectionSyntaxError),
    ("resid abc", 6, SelectionSyntaxError),
    ("chain A and bogus_col < 3", 12, UnknownColumnError),
    ("__import__('os').system('x')", 0, SelectionSyntaxError),
    ("name CA`rm`", 7, SelectionSyntaxError),
    ("within of name CA", 7, SelectionSyntaxError),
    ("name CA name CB", 8, SelectionSyntaxError),
])
def test_errors_point_at_the_offending_token(text: str, pos: int, cls: type) -> None:
    with pytest.raises(cls) as e:
        parse(text)
    assert isinstance(e.value, ValidationError)
    assert e.value.pos == pos
    caret = str(e.value).splitlines()[-1]
    assert caret.index("^") - 2 == pos  # the caret line sits under the text (two-space indent)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_validation_error(text: str) -> None:
    with contextlib.suppress(ValidationError):
        parse(text)


def test_deep_nesting_is_a_syntax_error_not_a_recursion_error() -> None:
    from moldb.query import SelectionSyntaxError, parse

    with pytest.raises(SelectionSyntaxError, match="nested deeper than 100"):
        parse("(" * 5000 + "name CA" + ")" * 5000)
    with pytest.raises(SelectionSyntaxError, match="nested deeper"):
        parse("not " * 300 + "name CA")
    assert parse("(" * 50 + "name CA" + ")" * 50) == parse("name CA")
