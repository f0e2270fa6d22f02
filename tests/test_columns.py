"""Typing of mmCIF text columns: the numpy canonical-number test agrees with the regex it replaces."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from moldb.ingest.columns import canonical_numbers, text_to_typed

# short strings over the characters that matter, plus realistic numbers
_tokens = st.one_of(
    st.text(alphabet="-.0123456789+e /", min_size=0, max_size=7),
    st.from_regex(r"-?(0|[1-9][0-9]{0,3})\.[0-9]{3}", fullmatch=True),
    st.from_regex(r"-?[0-9]{1,4}", fullmatch=True),
)


def _regex_says(values: list[str | None], decimals: int) -> bool:
    frac = rf"\.[0-9]{{{decimals}}}" if decimals > 0 else ""
    pattern = re.compile(rf"-?(0|[1-9][0-9]*){frac}")
    return all(pattern.fullmatch(v) is not None for v in values if v is not None)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.none(), _tokens), min_size=1, max_size=12), st.integers(0, 4))
def test_the_numpy_test_is_the_regex(values: list[str | None], decimals: int) -> None:
    arr = pa.array(values, type=pa.string())
    assert canonical_numbers(arr, decimals) == _regex_says(values, decimals)


def test_edge_cases_and_layouts_it_leaves_to_the_regex() -> None:
    cases = {("-0.000", "12.500", "0.001"): True, ("5.",): False, ("05.000",): False, ("-",): False,
             (".500",): False, ("1.0", "1.00"): False, ("1e3",): False, ("",): False, ("+1.000",): False}
    for values, want in cases.items():
        dec = 3 if values[0] not in ("5.", "-", "") else 0
        dec = 1 if values == ("1.0", "1.00") else dec
        assert canonical_numbers(pa.array(list(values)), dec) is want, values
    assert canonical_numbers(pa.array(["1.000", "2.000"])[1:], 3) is None  # sliced
    odd = pa.Array.from_buffers(pa.string(), 2, [pa.py_buffer(np.packbits([1, 0], bitorder="little")),
                                                 pa.py_buffer(np.array([0, 1, 3], dtype=np.int32)),
                                                 pa.py_buffer(b"7xx")])
    assert canonical_numbers(odd, 0) is None  # a null slot holding bytes


def test_typed_columns_keep_their_decimals_or_stay_text() -> None:
    got = text_to_typed(["1.250", None, False, "-0.500"], "float")
    assert got.decimals == 3 and got.array.to_pylist() == [1.25, None, None, -0.5]
    assert got.mask.tolist() == [0, 2, 1, 0]
    assert text_to_typed(["1.25", "1.250"], "float").array is None  # decimals differ: kept as text
    assert text_to_typed(["007"], "int").array is None
    assert text_to_typed(["-7", "0"], "int").array.to_pylist() == [-7, 0]
