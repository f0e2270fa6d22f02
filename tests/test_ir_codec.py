"""Compact lossless packing of IR float parameters (``moldb.storage.ir_codec`` through ``pack_arrays``)."""

from __future__ import annotations

import math
import shutil
import struct
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import moldb
from moldb.errors import StorageError
from moldb.storage import ir_codec
from moldb.storage.ir_store import describe_packed, pack_arrays, unpack_arrays
from tests.conftest import data

V1 = Path(__file__).resolve().parent / "data" / "stores" / "v1"
DEG = math.pi / 180.0


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (NaN payloads and -0.0 included)."""
    return a.dtype == b.dtype and a.shape == b.shape and \
        np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def round_trip(a: np.ndarray) -> dict:
    buf = pack_arrays({"a": a})
    assert same_bits(unpack_arrays(buf)["a"], a)
    return describe_packed(buf)[0]


def legacy_pack(arrays: dict[str, np.ndarray]) -> bytes:
    """The pre-``fixed`` format: 7-item header rows, floats ``raw`` (shuffled + zstd)."""
    header, segs = [], []
    for name, a in arrays.items():
        if a.dtype.kind in "iub":
            body = ir_codec.narrow(np.diff(a.ravel().astype(np.int64), prepend=np.int64(0)))
            kind = "delta"
        else:
            body, kind = a.ravel(), "raw"
        raw = ir_codec.shuffle(body)
        comp = ir_codec.zstd(raw)
        header.append([name, a.dtype.str, list(a.shape), kind, body.dtype.str, len(comp), len(raw)])
        segs.append(comp)
    head = msgpack.packb(header)
    return struct.pack("<I", len(head)) + head + b"".join(segs)


# -- hypothesis: any float array, decimal or not, reads back bit for bit ----------------------------------------
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
anyfloat = st.floats(allow_nan=True, allow_infinity=True, width=64)
SHAPES = st.sampled_from([(7,), (0,), (1,), (5, 3), (4, 3, 3), (0, 3, 3), (3, 2, 5), ()])


@st.composite
def decimal_arrays(draw: st.DrawFn) -> np.ndarray:
    """Printed-decimal values (ints / 10**d, optionally in a unit scale), salted with specials."""
    shape = draw(SHAPES)
    n = int(np.prod(shape))
    d = draw(st.integers(0, 6))
    ints = np.array(draw(st.lists(st.integers(-10**9, 10**9), min_size=n, max_size=n)), dtype=np.int64)
    v = (ints / 10.0**d) * draw(st.sampled_from(ir_codec.SCALES))
    for i, x in draw(st.lists(st.tuples(st.integers(0, max(n - 1, 0)), anyfloat), max_size=3)):
        if n:
            v[i] = x if x == x else np.nan
    if n and draw(st.booleans()):
        v[0] = -0.0
    return v.reshape(shape)


@settings(max_examples=150, deadline=None)
@given(decimal_arrays())
def test_decimal_arrays_round_trip_bitwise(a: np.ndarray) -> None:
    round_trip(a)
    round_trip(a.astype(np.float32))


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(st.sampled_from([np.float64, np.float32]), SHAPES, elements=anyfloat.map(float)))
def test_arbitrary_floats_round_trip_bitwise(a: np.ndarray) -> None:
    round_trip(a)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**32 - 1), st.booleans())
def test_tls_tensors_reduce_and_round_trip(n: int, seed: int, printed: bool) -> None:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, 3, 3))
    if printed:
        m = np.rint(m * 1e4) / 1e4
    sym = m + m.transpose(0, 2, 1)
    s = m.copy()
    s[:, 2, 2] = -(s[:, 0, 0] + s[:, 1, 1])  # trace exactly 0 in floating point
    assert round_trip(sym)["encoding"].get("sym")
    enc = round_trip(s)["encoding"]
    assert enc.get("ftrace0") and not enc.get("trace0")  # the float-domain form: 8 components stored
    assert round_trip(sym * DEG**2)["encoding"].get("sym")


# -- what the encoder picks --------------------------------------------------------------------------------------
def test_printed_tls_is_fixed_point_in_its_unit() -> None:
    rng = np.random.default_rng(1)
    n = 500
    T = np.rint(rng.normal(size=(n, 3, 3)) * 300).astype(np.int64)
    L = (T * 7 + T.transpose(0, 2, 1) * 7) / 1e4 * DEG**2  # deg² printed at 4 decimals, converted like ingest
    T = (T + T.transpose(0, 2, 1)) / 1e4
    S = np.rint(rng.normal(size=(n, 3, 3)) * 300).astype(np.int64)
    S[:, 2, 2] = -(S[:, 0, 0] + S[:, 1, 1])
    S = S / 1e4 * DEG
    origin = np.rint(rng.normal(size=(n, 3)) * 3e5) / 1e4
    arrays = {"T": T, "L": L, "S": S, "origin": origin}
    buf = pack_arrays(arrays)
    got = unpack_arrays(buf)
    assert all(same_bits(got[k], v) for k, v in arrays.items())
    enc = {a["name"]: a for a in describe_packed(buf)}
    assert {k: a["kind"] for k, a in enc.items()} == dict.fromkeys(arrays, "fixed")
    assert enc["T"]["encoding"]["sym"] and enc["T"]["encoding"]["scale"] == 1.0 and enc["T"]["encoding"]["dec"] == 4
    assert enc["L"]["encoding"]["scale"] == DEG**2 and enc["L"]["encoding"]["dec"] == 4
    assert enc["S"]["encoding"]["trace0"] and enc["S"]["encoding"]["scale"] == DEG
    assert all(a["exceptions"] == 0 for a in enc.values())
    assert len(buf) < 0.3 * len(legacy_pack(arrays))


def test_specials_are_exceptions_and_noise_falls_back_to_raw() -> None:
    b = np.round(np.linspace(0, 80, 1000), 2)
    b[[3, 10, 500]] = [np.nan, -0.0, np.inf]
    info = round_trip(b)
    assert info["kind"] == "fixed" and info["exceptions"] == 3
    noise = np.random.default_rng(0).normal(size=1000)
    assert round_trip(noise)["kind"] == "float"  # no decimal form: raw float bits
    half = noise.copy()
    half[::2] = np.round(half[::2], 2)  # 50 % exceptions: more than 1/8, stays raw
    assert round_trip(half)["kind"] == "float"
    assert round_trip(np.array([1e300, -1e300, 5e-324]))["kind"] == "float"
    nonsym = np.round(np.random.default_rng(2).normal(size=(10, 3, 3)), 4)
    enc = round_trip(nonsym)["encoding"]
    assert not enc.get("sym") and not enc.get("trace0")


def test_mixed_arrays_in_one_cell_keep_their_kinds() -> None:
    arrays = {"rows": np.arange(10, dtype=np.int64), "flag": np.array([True, False]),
              "f": np.array([0.25, 0.5], dtype=np.float32), "c": np.array([1 + 2j])}
    got = unpack_arrays(pack_arrays(arrays, {"names": ["a", "b"]}))
    assert all(same_bits(got[k], v) for k, v in arrays.items())
    assert got["names"] == ["a", "b"]


# -- old cells, damaged cells ------------------------------------------------------------------------------------
def test_legacy_cells_still_read() -> None:
    arrays = {"T": np.random.default_rng(3).normal(size=(4, 3, 3)), "g": np.array([3, 1, 2], dtype=np.int32),
              "e": np.zeros((0, 3))}
    got = unpack_arrays(legacy_pack(arrays))
    assert all(same_bits(got[k], v) for k, v in arrays.items())


def test_v1_fixture_descriptors_equal_a_fresh_ingest(tmp_path: Path) -> None:
    """Cells written by the old packing (fixture store) read bit for bit like the new packing's."""
    copy = tmp_path / "v1"
    shutil.copytree(V1, copy)
    old = {d.id: d for d in moldb.open(copy).descriptors("1O1Z")}
    st_new = moldb.create(tmp_path / "new")
    st_new.ingest(data("mmcif/1o1z.cif.gz"), entry="1O1Z")
    new = {d.id: d for d in st_new.descriptors("1O1Z")}
    assert set(old) == set(new) >= {"tls", "altloc"}
    for key, d in old.items():
        for name, arr in d.arrays().items():
            assert same_bits(arr, new[key].arrays()[name]), (key, name)


def test_real_tls_is_stored_fixed_point(store: moldb.Store) -> None:
    """5EIL's 29 phenix TLS groups: T, L (deg² → rad²), S (deg·Å → rad·Å), origin all exact fixed point."""
    from moldb.storage import ir_store

    store.ingest(data("mmcif/5eil.cif.gz"))
    cell = next(c for c in ir_store.read_cells(store._backend, "descriptors", "5EIL") if c["name"] == "tls")
    buf = ir_store.read_cell(store._backend, "descriptors", "5EIL", cell["version"], "tls")
    enc = {a["name"]: a for a in describe_packed(buf)}
    assert all(a["kind"] == "fixed" for a in enc.values())
    assert enc["L"]["encoding"]["scale"] == DEG**2 and enc["S"]["encoding"]["scale"] == DEG
    tls = next(d for d in store.descriptors("5EIL") if d.id == "tls")
    assert len(tls.groups) == 29 and tls.L.shape == (29, 3, 3)
    assert tls.L[0, 0, 0] == 7.4609 * DEG**2  # 5EIL group 1: L[1][1] 7.4609 deg², as ingest converts it


@pytest.mark.parametrize("damage", [lambda b: b[:-3], lambda b: b[:3], lambda b: b"\x05\x00\x00\x00" + b"\xc1" * 9,
                                    lambda b: b[:4] + b"\x93\x01\x02" + b[7:],
                                    lambda b: b[:-100] + bytes(10) + b[-90:]])  # zstd frame damaged
def test_damaged_cell_raises_storage_error(damage) -> None:  # type: ignore[no-untyped-def]
    buf = pack_arrays({"T": np.round(np.random.default_rng(4).normal(size=(6, 3, 3)), 4),
                       "x": np.random.default_rng(0).normal(size=500)})
    with pytest.raises(StorageError, match="corrupt IR cell"):
        unpack_arrays(damage(buf))
