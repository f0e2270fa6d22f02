"""Property tests of the block codec: every column kind round-trips exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from moldb.storage.blob import BlobWriter, _pack16, _unpack16, read_blob_columns

ints = hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-(2**40), 2**40))
small = hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-(2**20), 2**20))


@settings(deadline=None)
@given(small)
def test_pack16_round_trip(d: np.ndarray) -> None:
    assert np.array_equal(_unpack16(_pack16(d)), d)


@settings(max_examples=60, deadline=None)
@given(
    ints,
    st.integers(0, 4),
    st.lists(st.text(min_size=0, max_size=6), min_size=1, max_size=8),
    st.data(),
)
def test_blob_round_trip(values: np.ndarray, dec: int, vocab: list[str], data: st.DataObject) -> None:
    n = len(values)
    floats = values / 10.0**dec
    codes = np.asarray(data.draw(st.lists(st.integers(0, len(vocab) - 1), min_size=n, max_size=n)), dtype=np.int64)
    mask = np.asarray(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.uint8)
    w = BlobWriter(n)
    w.add_ints("i", "int", values)
    w.add_floats("f", floats, dec)
    w.add_strings("s", codes, vocab)
    w.add_mask("s", mask)
    got, masks, meta, _ = read_blob_columns(w.finish({"k": 1}))
    assert np.array_equal(got["i"], values)
    assert np.array_equal(got["f"], floats)
    assert np.array_equal(got["s"][0], codes) and got["s"][1] == vocab
    assert np.array_equal(masks["s"], mask)
    assert meta == {"k": 1, "n": n}
    sub, _, _, _ = read_blob_columns(w.finish(), columns=["f"])
    assert list(sub) == ["f"]
    gap, gap_masks, _, _ = read_blob_columns(w.finish(), columns=["i", "s"])  # not back to back: one call each
    assert np.array_equal(gap["i"], values) and np.array_equal(gap["s"][0], codes) and gap["s"][1] == vocab
    assert np.array_equal(gap_masks["s"], mask) and "f" not in gap


def test_a_full_read_decompresses_once(monkeypatch: Any) -> None:
    import moldb.storage.blob as blob

    w = BlobWriter(3)
    w.add_ints("i", "int", np.array([5, -7, 2**33]))
    w.add_strings("s", np.array([0, 1, 0]), ["ALA", "GLY"])
    w.add_bytes("b", b"categories")
    raw = w.finish()
    calls: list[int] = []
    real = blob._decompress
    monkeypatch.setattr(blob, "_decompress", lambda buf, size: calls.append(size) or real(buf, size))
    got, _, _, _ = read_blob_columns(raw)
    assert len(calls) == 1 and got["b"] == b"categories" and isinstance(got["b"], bytes)
    assert got["i"].tolist() == [5, -7, 2**33] and got["s"][1] == ["ALA", "GLY"]
    calls.clear()
    read_blob_columns(raw, columns=["i", "b"])  # "s" between them: one call per segment
    assert len(calls) == 2


def test_negative_zero_survives() -> None:
    x = np.array([-0.0, 0.0, 1.5, -0.0])
    w = BlobWriter(4)
    w.add_floats("x", x, 3)
    got, _, _, _ = read_blob_columns(w.finish())
    assert np.array_equal(np.signbit(got["x"]), np.signbit(x)) and np.array_equal(got["x"], x)


def test_a_plan_reads_the_same_and_keeps_only_short_dictionaries() -> None:
    from moldb.storage.blob_plan import BlobPlan
    from moldb.storage.codec import arrow_columns

    n = 5000
    w = BlobWriter(n)
    w.add_strings("res", np.arange(n) % 3, ["ALA", "GLY", "SER"])
    w.add_strings("note", np.arange(n), [f"n{i}" for i in range(n)], kind="text")  # one string per row
    w.add_floats("x", np.linspace(-5, 5, n).round(3), 3)
    mask = np.zeros(n, dtype=np.uint8)
    mask[::7] = 2
    w.add_mask("res", mask)
    raw = w.finish({"k": 1})
    plan = BlobPlan(raw)
    assert set(plan.dicts) == {"res"} and plan.layout is not None  # "note" (5,000 strings) is not kept
    assert len(plan) >= 80 * 3
    plain, pmasks, _, _ = read_blob_columns(raw)
    via, vmasks, _, _ = read_blob_columns(raw, plan=plan)
    assert via["res"][1] == ["ALA", "GLY", "SER"] and via["note"][1][4999] == "n4999"
    assert np.array_equal(via["x"], plain["x"]) and np.array_equal(vmasks["res"], pmasks["res"])
    arrays, decimals, text = arrow_columns(via, vmasks, plan.kinds, plan.arrow_dictionary)
    assert arrays["res"].to_pylist()[:3] == [None, "GLY", "SER"] and arrays["res"].null_count == 715
    assert arrays["note"].to_pylist()[-1] == "n4999" and text == ["note"] and decimals == {"x": 3}
    assert plan.arrow_dictionary("res") is plan.arrow_dictionary("res")  # built once
    assert plan.dictionary(raw, "res") == ["ALA", "GLY", "SER"] and plan.dictionary(raw, "x") is None
    assert plan.dictionary(raw, "note")[-1] == "n4999"  # not kept: decoded from the blob


def test_codes_beyond_the_dictionary_are_a_storage_error() -> None:
    import pytest

    from moldb.errors import StorageError
    from moldb.storage.codec import arrow_columns

    w = BlobWriter(3)
    w.add_strings("s", np.array([0, 1, 2]), ["A", "B"])  # code 2 has no string: a damaged block
    values, masks, _, cols = read_blob_columns(w.finish())
    with pytest.raises(StorageError, match="column s has codes beyond its dictionary of 2"):
        arrow_columns(values, masks, {c["name"]: c for c in cols})
    masks["s"] = np.array([0, 0, 2], dtype=np.uint8)  # the stray code under a null is harmless
    arrays, _, _ = arrow_columns(values, masks, {c["name"]: c for c in cols})
    assert arrays["s"].to_pylist() == ["A", "B", None]
