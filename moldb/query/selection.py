"""A PyMOL/MDAnalysis-style selection language, parsed by hand (never ``eval``) into a plan.

Grammar (keywords are case-insensitive, column names are not)::

    expr     := and_expr ("or" and_expr)*
    and_expr := unary ("and" unary)*
    unary    := "not" unary | "within" NUMBER "of" unary | primary
    primary  := "(" expr ")" | "all" | KEYWORD value+ | COLUMN OP literal
              | "box" NUMBER NUMBER NUMBER NUMBER NUMBER NUMBER

=====================  ======================  ======================================
keyword                column                  values
=====================  ======================  ======================================
``chain``              ``auth_asym_id``        chain ids (author, as PyMOL/gemmi)
``resname`` ``resn``   ``label_comp_id``       residue names
``resid`` ``resi``     ``auth_seq_id``         numbers and ranges ``10-50`` / ``10:50``
``name``               ``label_atom_id``       atom names
``altloc``             ``label_alt_id``        altloc ids
``model``              ``pdbx_PDB_model_num``  numbers and ranges
``element`` ``elem``   ``type_symbol``         element symbols
``entry``              (entry id)              entry ids
=====================  ======================  ======================================

``OP`` is one of ``== = != < <= > >=``; string literals are bare words or quoted
(``'H'``, ``"C1'"``). ``within R of X`` binds like ``not``: ``within 5 of resname GTP
and chain A`` is ``(within 5 of resname GTP) and chain A``. Errors are
:class:`SelectionSyntaxError` with the offending position and a caret line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moldb.errors import ValidationError
from moldb.query.nodes import All, And, Box, Cmp, Entry, IsIn, Node, Not, Or, Range, Scalar, Within
from moldb.schema.columns import COLUMN_BY_NAME

__all__ = ["ATOM_KEYWORDS", "SelectionError", "SelectionSyntaxError", "Token", "UnknownColumnError", "parse",
           "tokenize"]

#: keyword → (column, kind); kind "int" values accept ranges
ATOM_KEYWORDS: dict[str, tuple[str, str]] = {
    "chain": ("auth_asym_id", "str"), "resname": ("label_comp_id", "str"), "resn": ("label_comp_id", "str"),
    "resid": ("auth_seq_id", "int"), "resi": ("auth_seq_id", "int"), "name": ("label_atom_id", "str"),
    "altloc": ("label_alt_id", "str"), "model": ("pdbx_PDB_model_num", "int"),
    "element": ("type_symbol", "str"), "elem": ("type_symbol", "str"), "entry": ("entry", "entry"),
}
_RESERVED = {"and", "or", "not", "within", "of", "all", "box"}
_OPS = {"==": "==", "=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<op>==|!=|<=|>=|=|<|>)
  | (?P<lpar>\() | (?P<rpar>\))
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<word>-?[A-Za-z0-9_.][A-Za-z0-9_.'+*:\-]*)
""", re.VERBOSE)
_RANGE = re.compile(r"^(-?\d+)(?:-|:)(-?\d+)$")


class SelectionError(ValidationError):
    """A selection or ``where`` expression is not valid.

    Attributes
    ----------
    text : str
        The expression.
    pos : int
        0-based offset of the offending token.
    """

    def __init__(self, problem: str, text: str, pos: int) -> None:
        self.problem, self.text, self.pos = problem, text, pos
        super().__init__(f"{problem} at position {pos}\n  {text}\n  {' ' * pos}^")


class SelectionSyntaxError(SelectionError):
    """The expression does not follow the grammar."""


class UnknownColumnError(SelectionError):
    """A comparison names a column that does not exist."""


@dataclass(frozen=True)
class Token:
    """One lexical token: ``kind`` (op, lpar, rpar, string, word, end), text and offset."""

    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; anything else (``;``, backticks ...) is a syntax error."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SelectionSyntaxError(f"unexpected character {text[pos]!r}", text, pos)
        if m.lastgroup != "ws":
            out.append(Token(str(m.lastgroup), m.group(), pos))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


MAX_DEPTH = 100  # parentheses / not / within nesting; deeper input is refused, never a RecursionError


class _Parser:
    def __init__(self, text: str, columns: dict[str, str], keywords: dict[str, tuple[str, str]]) -> None:
        self.text, self.columns, self.keywords = text, columns, keywords
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    # -- helpers ----------------------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def fail(self, problem: str, tok: Token | None = None, cls: type[SelectionError] = SelectionSyntaxError
             ) -> SelectionError:
        t = tok or self.tok
        what = "end of input" if t.kind == "end" else repr(t.text)
        return cls(problem.replace("{tok}", what), self.text, t.pos)

    def word(self, tok: Token) -> str:
        return tok.text.lower() if tok.kind == "word" else ""

    def is_value(self, tok: Token) -> bool:
        return tok.kind == "string" or (tok.kind == "word" and self.word(tok) not in _RESERVED
                                        and self.word(tok) not in self.keywords)

    def number(self) -> float:
        t = self.tok
        try:
            v = float(t.text) if t.kind == "word" else None
        except ValueError:
            v = None
        if v is None:
            raise self.fail("expected a number, got {tok}")
        self.i += 1
        return v

    # -- grammar ----------------------------------------------------------------------------------------
    def parse(self) -> Node:
        if self.tok.kind == "end":
            return All()
        node = self.expr()
        if self.tok.kind != "end":
            raise self.fail("unexpected {tok} (expected 'and', 'or' or the end)")
        return node

    def expr(self) -> Node:
        items = [self.and_expr()]
        while self.word(self.tok) == "or":
            self.i += 1
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.word(self.tok) == "and":
            self.i += 1
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.fail(f"selection nested deeper than {MAX_DEPTH} levels at {{tok}}; simplify it")
            return self._unary()
        finally:
            self.depth -= 1

    def _unary(self) -> Node:
        w = self.word(self.tok)
        if w == "not":
            self.i += 1
            return Not(self.unary())
        if w == "within" and "within" not in self.columns:
            self.i += 1
            radius = self.number()
            if radius < 0:
                raise self.fail("the radius must be >= 0", self.toks[self.i - 1])
            if self.word(self.tok) != "of":
                raise self.fail("expected 'of', got {tok}")
            self.i += 1
            return Within(radius, of=self.unary())
        return self.primary()

    def primary(self) -> Node:
        t = self.tok
        if t.kind == "lpar":
            self.i += 1
            node = self.expr()
            if self.tok.kind != "rpar":
                raise self.fail("expected ')', got {tok}")
            self.i += 1
            return node
        w = self.word(t)
        if w == "all":
            self.i += 1
            return All()
        if w == "box" and "box" not in self.columns:
            self.i += 1
            v = [self.number() for _ in range(6)]
            return Box((v[0], v[1], v[2]), (v[3], v[4], v[5]))
        if w in self.keywords and self.toks[self.i + 1].kind != "op":
            return self.keyword(t)
        if t.kind == "word" and self.toks[self.i + 1].kind == "op":
            return self.comparison()
        if t.kind == "end":
            raise self.fail("the expression ends too early")
        raise self.fail("expected a selection keyword, a column comparison or '(', got {tok}")

    def keyword(self, kw: Token) -> Node:
        column, kind = self.keywords[self.word(kw)]
        self.i += 1
        values: list[Scalar] = []
        ranges: list[Range] = []
        while self.is_value(self.tok):
            t = self.tok
            raw = t.text[1:-1] if t.kind == "string" else t.text
            if kind == "int":
                m = _RANGE.match(raw)
                if m:
                    ranges.append(Range(column, float(m.group(1)), float(m.group(2))))
                elif re.fullmatch(r"-?\d+", raw):
                    values.append(int(raw))
                else:
                    raise self.fail(f"{kw.text} expects numbers or ranges like 10-50, got {{tok}}")
            else:
                values.append(raw.upper() if kind == "entry" else raw)
            self.i += 1
        if not values and not ranges:
            raise self.fail(f"{kw.text} needs at least one value, got {{tok}}")
        if kind == "entry":
            return Entry(tuple(str(v) for v in values))
        parts: list[Node] = list(ranges)
        if values:
            parts.append(IsIn(column, tuple(values)) if len(values) > 1 else Cmp(column, "==", values[0]))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def comparison(self) -> Node:
        col_tok = self.tok
        if col_tok.text not in self.columns:
            known = ", ".join(sorted(self.columns))
            raise self.fail(f"unknown column {{tok}} (columns: {known})", col_tok, UnknownColumnError)
        kind = self.columns[col_tok.text]
        op = _OPS[self.toks[self.i + 1].text]
        self.i += 2
        t = self.tok
        if t.kind not in ("word", "string"):
            raise self.fail("expected a value, got {tok}")
        self.i += 1
        raw = t.text[1:-1] if t.kind == "string" else t.text
        value: Scalar
        if kind in ("int", "float"):
            try:
                value = float(raw) if t.kind == "word" else float("nan")
            except ValueError:
                value = float("nan")
            if value != value:
                raise self.fail(f"{col_tok.text} is numeric; expected a number, got {{tok}}", t)
        elif kind == "bool":
            if raw.lower() not in ("true", "false"):
                raise self.fail(f"{col_tok.text} is true/false; got {{tok}}", t)
            value = raw.lower() == "true"
        else:
            value = raw
        if kind in ("str", "list", "bool") and op not in ("==", "!="):
            raise self.fail(f"{col_tok.text} can only be compared with == or !=", self.toks[self.i - 2])
        return Cmp(col_tok.text, op, value)


def parse(text: str, columns: dict[str, str] | None = None,
          keywords: dict[str, tuple[str, str]] | None = None) -> Node:
    """Parse a selection / ``where`` expression into a plan node.

    Parameters
    ----------
    text : str
        The expression (empty: every atom).
    columns : dict[str, str], optional
        Column name → kind (``str``, ``int``, ``float``, ``bool``, ``list``) allowed in
        comparisons; default: the typed ``_atom_site`` columns.
    keywords : dict, optional
        Selection keywords; default :data:`ATOM_KEYWORDS` (pass ``{}`` for plain expressions).

    Raises
    ------
    SelectionSyntaxError, UnknownColumnError
        With the offending token's position and a caret line.
    """
    if not isinstance(text, str):
        raise ValidationError(f"a selection must be a string, got {type(text).__name__}")
    cols: dict[str, str] = dict(columns) if columns is not None else {c.name: str(c.kind) for c in
                                                                       COLUMN_BY_NAME.values()}
    return _Parser(text, cols, ATOM_KEYWORDS if keywords is None else keywords).parse()
