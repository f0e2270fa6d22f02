"""Fast path for the ``_atom_site`` loop of an mmCIF file: tokenized with numpy, straight to Arrow.

gemmi parses an mmCIF document in C++, but handing the values to Python costs a ``str``
object per value and a conversion per column: about 60 % of moldb's mmCIF parse over the
corpus, almost all of it in ``_atom_site``. :func:`split_atom_site` cuts that loop out of
the text, splits it into whitespace-separated tokens with vectorised numpy, and builds each
column as an Arrow string array from the file's bytes (``.`` and ``?`` become nulls with
their null-kind mask, quotes are stripped). The rest of the document, with a one-value
placeholder where the loop was (so category order is kept), still goes through gemmi.

The path is taken only where it gives gemmi's values exactly; anything unusual returns
``None`` and the caller uses gemmi for the whole file:

- more than one data block, or not exactly one ``loop_`` of ``_atom_site`` items;
- a text field (``;`` at a line start) or a comment inside the loop, or a loop that does not
  end at a new category, ``loop_``, ``data_`` or the end of the file;
- a quoted value with whitespace inside, non-ASCII bytes, or a token count that is not a
  multiple of the item count.

``tests/test_cif_loop.py`` checks that every mmCIF file of the corpus parses to the same
entry both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from moldb.schema.parsed import MASK_DOT, MASK_QUESTION

__all__ = ["PLACEHOLDER_ITEM", "AtomSiteLoop", "split_atom_site"]

#: The one item of the placeholder loop left in the document where ``_atom_site`` was.
PLACEHOLDER_ITEM = "moldb_fast_path"
#: Control bytes gemmi refuses (all below space but tab, LF and CR).
_CONTROL = bytes(c for c in range(32) if c not in (9, 10, 13))
#: First letters of CIF's reserved words (loop_, data_, save_, global_, stop_; any case).
_KEYWORD_FIRST = np.frombuffer(b"ldsgLDSG", dtype=np.uint8)
_NEXT = re.compile(rb"(?:[ \t]*(?:#[^\n]*)?\r?\n)*")  # blank and comment lines
_SQ, _DQ, _HASH, _DOT, _QM, _US, _SC = (ord(c) for c in "'\"#.?_;")


@dataclass
class AtomSiteLoop:
    """The ``_atom_site`` loop, tokenized.

    Attributes
    ----------
    items : list of str
        Item names (without ``_atom_site.``), in file order.
    columns : dict
        item → (``pyarrow.StringArray`` of shape ``(n_rows,)``, ``uint8`` null-kind mask or None),
        as :func:`moldb.ingest.columns.text_column` gives for gemmi's values.
    n_rows : int
    aniso : AtomSiteLoop, optional
        The ``_atom_site_anisotrop`` loop, when it was tokenized apart too.
    """

    items: list[str]
    columns: dict[str, tuple[pa.Array, np.ndarray | None]]
    n_rows: int
    aniso: AtomSiteLoop | None = None


def split_atom_site(text: bytes, category: str = "atom_site") -> tuple[bytes, AtomSiteLoop] | None:
    """Cut the loop of ``category`` (default ``_atom_site``) out of an mmCIF document.

    Parameters
    ----------
    text : bytes
        The whole (decompressed) document.
    category : str
        Category name without the leading ``_`` (``atom_site``, ``atom_site_anisotrop``).

    Returns
    -------
    (bytes, AtomSiteLoop) or None
        The document with a placeholder loop in place of ``_atom_site``, and the loop's
        columns; None where the fast path does not apply (see the module docstring).
    """
    # plain byte searches: Python's re scans a 2.5 MB file for a line-anchored pattern in ~18 ms
    if text.count(b"\ndata_") + text.startswith(b"data_") != 1:
        return None
    prefix = f"_{category}.".encode()
    first = text.find(b"\n" + prefix)
    if first < 0 or not text[:first + 1].endswith((b"\nloop_\n", b"\nloop_\r\n")):
        return None
    items: list[str] = []
    pos = first + 1
    while text.startswith(prefix, pos):
        eol = text.find(b"\n", pos)
        if eol < 0:
            return None
        tag = text[pos:eol].strip()
        if not tag or b" " in tag or b"\t" in tag:
            return None
        items.append(tag.decode("ascii")[len(prefix):])
        pos = eol + 1
    if text.count(b"\n" + prefix) != len(items):
        return None  # another item of the category elsewhere
    # the loop ends at the first line starting with "#" or "_"; a text field or keyword before
    # that is a token _tokenize refuses, so two scans of the loop body do instead of eight
    end = text.find(b"\n#", pos - 1)
    end = len(text) if end < 0 else end
    i = text.find(b"\n_", pos - 1, end)
    end = i if i >= 0 else end
    if end < len(text):
        after = _NEXT.match(text, end + 1)
        at = after.end() if after else end + 1
        nxt = text[at:at + 8]
        if not (nxt == b"" or nxt[:1] == b"_" or nxt.startswith((b"loop_", b"data_"))):
            return None  # a comment or text field inside the loop, or a save frame after it
    loop = _tokenize(text[pos:end], items)
    if loop is None:
        return None
    placeholder = f"loop_\n_{category}.{PLACEHOLDER_ITEM}\n.\n".encode()
    loop_start = text.rfind(b"\nloop_", 0, first + 1) + 1
    return text[:loop_start] + placeholder + text[end:], loop


def _tokenize(body: bytes, items: list[str]) -> AtomSiteLoop | None:
    a = np.frombuffer(body, dtype=np.uint8)
    if a.size == 0 or bool((a >= 128).any()):
        return None
    if len(body.translate(None, _CONTROL)) != len(body):
        return None  # control characters: gemmi reports them
    ws = a <= 32
    edges = np.diff((~ws).view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    m = len(items)
    if starts.size == 0 or starts.size % m or int(ends[-1]) >= 2**31:
        return None
    first = a[starts]
    if bool(((first == _HASH) | (first == _US) | (first == _SC)).any()):
        return None  # a comment, a tag or a text field inside the loop
    if _has_keyword(body, first, starts, ends):
        return None  # loop_, data_, save_ ... inside the loop
    last = a[ends - 1]
    quoted = (first == _SQ) | (first == _DQ)
    if quoted.any() and bool((quoted & ((ends - starts < 2) | (last != first))).any()):
        return None  # a quoted value with whitespace inside
    starts = starts + quoted
    ends = ends - quoted
    single = (ends - starts == 1) & ~quoted
    dot = single & (first == _DOT)
    question = single & (first == _QM)
    n = starts.size // m
    columns: dict[str, tuple[pa.Array, np.ndarray | None]] = {}
    for j, item in enumerate(items):
        s, e, d, q = starts[j::m], ends[j::m], dot[j::m], question[j::m]
        null = d | q
        has_null = bool(null.any())
        lens = np.where(null, 0, e - s) if has_null else e - s
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        idx = np.repeat(s - offsets[:-1], lens) + np.arange(int(offsets[-1]), dtype=np.int64)
        validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if has_null else None
        arr = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(a[idx]),
                                          validity, int(null.sum()) if has_null else 0)
        mask = (d.astype(np.uint8) * MASK_DOT + q.astype(np.uint8) * MASK_QUESTION) if has_null else None
        columns[item] = (arr, mask)
    return AtomSiteLoop(items, columns, n)


def _has_keyword(body: bytes, first: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bool:
    """Whether any token is a CIF reserved word (``loop_``, ``data_name``, ``save_``, ``global_``, ``stop_``)."""
    cand = np.flatnonzero(np.isin(first, _KEYWORD_FIRST) & (ends - starts >= 5))
    for k in cand.tolist():  # few: atom names, residue and chain ids are shorter
        token = body[int(starts[k]):int(ends[k])].lower()
        if token in (b"loop_", b"global_", b"stop_") or token.startswith((b"data_", b"save_")):
            return True
    return False
