"""TLS group selections in the three dialects real files use.

- **REFMAC residue ranges**: ``beg_auth_asym_id``/``beg_auth_seq_id`` to
  ``end_auth_asym_id``/``end_auth_seq_id`` items of ``_pdbx_refine_tls_group``.
- **phenix selection strings** (``selection_details``): ``chain 'A' and (resid 0
  through 13 )``, ``resseq 2:25``, with ``and``/``or``/``not``/parentheses and
  ``resid``, ``resseq``, ``resname``, ``name``, ``altloc``, ``element``, ``all``.
- **BUSTER ranges**: ``{ E|1 - E|162 E|168 - E|172 }``, ``{ A|* }``, ``{ E|1023 }``.

Each parser returns a boolean mask over the atom rows or raises
:class:`SelectionError` with the reason; nothing is dropped silently.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["AtomView", "SelectionError", "buster_mask", "phenix_mask", "range_mask", "selection_mask"]

AtomView = dict[str, np.ndarray]  # auth_asym_id, auth_seq_id (int64), label_comp_id, label_atom_id, ...


class SelectionError(ValueError):
    """A TLS selection moldb cannot read."""


def _seq(view: AtomView) -> np.ndarray:
    return view["auth_seq_id"]


def range_mask(view: AtomView, beg_chain: str, beg_seq: int, end_chain: str, end_seq: int) -> np.ndarray:
    """Rows from residue ``beg_chain``/``beg_seq`` to ``end_chain``/``end_seq`` (REFMAC ranges, inclusive)."""
    chain, seq = view["auth_asym_id"], _seq(view)
    if beg_chain == end_chain:
        return (chain == beg_chain) & (seq >= beg_seq) & (seq <= end_seq)
    first = np.flatnonzero((chain == beg_chain) & (seq == beg_seq))
    last = np.flatnonzero((chain == end_chain) & (seq == end_seq))
    if not len(first) or not len(last):
        raise SelectionError(f"range {beg_chain}{beg_seq}-{end_chain}{end_seq}: end residue not found")
    mask = np.zeros(len(chain), dtype=bool)
    mask[first[0]:last[-1] + 1] = True
    return mask


def buster_mask(view: AtomView, text: str) -> np.ndarray:
    """BUSTER ``{ A|1 - A|50 B|* C|7 }`` selections."""
    body = text.strip().strip("'\"").strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise SelectionError(f"not a BUSTER selection: {text!r}")
    inner = body[1:-1]
    tokens = re.findall(r"[^\s|{}]+\|(?:\*|-?\d+)|-", inner)
    if not tokens or "".join(tokens).replace("-", "") == "":
        raise SelectionError(f"empty BUSTER selection: {text!r}")
    mask = np.zeros(len(view["auth_asym_id"]), dtype=bool)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "-":
            raise SelectionError(f"BUSTER selection {text!r}: dangling '-'")
        ch, num = tok.split("|")
        if num == "*":
            mask |= view["auth_asym_id"] == ch
            i += 1
            continue
        if i + 1 < len(tokens) and tokens[i + 1] == "-":
            if i + 2 >= len(tokens):
                raise SelectionError(f"BUSTER selection {text!r}: range without an end")
            ch2, num2 = tokens[i + 2].split("|")
            mask |= range_mask(view, ch, int(num), ch2, int(num2))
            i += 3
        else:
            mask |= (view["auth_asym_id"] == ch) & (_seq(view) == int(num))
            i += 1
    leftover = re.sub(r"[^\s|{}]+\|(?:\*|-?\d+)|-", "", inner).strip()
    if leftover:
        raise SelectionError(f"BUSTER selection {text!r}: cannot read {leftover!r}")
    return mask


_TOKEN = re.compile(r"\s*(\(|\)|'[^']*'|\"[^\"]*\"|[^\s()]+)")
_KEYWORDS = {"chain": "auth_asym_id", "resname": "label_comp_id", "name": "label_atom_id",
             "altloc": "label_alt_id", "element": "type_symbol"}


class _Phenix:
    def __init__(self, view: AtomView, text: str) -> None:
        self.view, self.text = view, text
        self.toks = [t.strip("'\"") if t[0] in "'\"" else t for t in _TOKEN.findall(text) if t.strip()]
        self.i = 0
        self.n = len(view["auth_asym_id"])

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        t = self.peek()
        if t is None:
            raise SelectionError(f"phenix selection {self.text!r}: ends early")
        self.i += 1
        return t

    def parse(self) -> np.ndarray:
        m = self.expr()
        if self.peek() is not None:
            raise SelectionError(f"phenix selection {self.text!r}: cannot read from {self.peek()!r}")
        return m

    def expr(self) -> np.ndarray:
        m = self.term()
        while (self.peek() or "").lower() == "or":
            self.take()
            m = m | self.term()
        return m

    def term(self) -> np.ndarray:
        m = self.factor()
        while (self.peek() or "").lower() == "and":
            self.take()
            m = m & self.factor()
        return m

    def factor(self) -> np.ndarray:
        t = self.take()
        low = t.lower()
        if t == "(":
            m = self.expr()
            if self.take() != ")":
                raise SelectionError(f"phenix selection {self.text!r}: unbalanced parentheses")
            return m
        if low == "not":
            return ~self.factor()
        if low == "all":
            return np.ones(self.n, dtype=bool)
        if low in _KEYWORDS:
            col = self.view.get(_KEYWORDS[low])
            if col is None:
                raise SelectionError(f"phenix selection {self.text!r}: no {_KEYWORDS[low]} column")
            return np.asarray(col == self.take())
        if low in ("resid", "resseq"):
            return self.resid()
        raise SelectionError(f"phenix selection {self.text!r}: unsupported keyword {t!r}")

    def resid(self) -> np.ndarray:
        a = self.take()
        seq = _seq(self.view)
        if ":" in a:
            lo, hi = a.split(":", 1)
            return (seq >= _num(lo, self.text)) & (seq <= _num(hi, self.text))
        if (self.peek() or "").lower() == "through":
            self.take()
            return (seq >= _num(a, self.text)) & (seq <= _num(self.take(), self.text))
        return np.asarray(seq == _num(a, self.text))


def _num(s: str, text: str) -> int:
    m = re.match(r"^-?\d+", s)
    if not m:
        raise SelectionError(f"phenix selection {text!r}: {s!r} is not a residue number")
    return int(m.group(0))


def phenix_mask(view: AtomView, text: str) -> np.ndarray:
    """phenix selection string → mask."""
    return _Phenix(view, text.strip()).parse()


def selection_mask(view: AtomView, text: str) -> np.ndarray:
    """Dispatch on the dialect of a ``selection_details`` string (BUSTER braces or phenix syntax)."""
    t = text.strip().strip("'\"").strip()
    return buster_mask(view, t) if t.startswith("{") else phenix_mask(view, t)
