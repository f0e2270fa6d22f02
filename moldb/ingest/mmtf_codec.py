"""MMTF 1.0 decoding: MessagePack container, binary codecs 1–15 and validation.

:func:`decode_mmtf` turns the bytes of an ``.mmtf`` file (optionally gzip/bzip2-compressed)
into a dict keyed by the MMTF field names. Binary fields are decoded with numpy
(no per-element Python loops) into arrays:

* integer codecs (2, 3, 4, 7, 8, 14, 15) → ``int32``;
* float codecs (1, 9–13) → ``float64``; integer-decoded values are the exact quotient
  ``int / divisor`` (so ``6011 / 1000`` is ``6.011``), which rounds to the spec's
  ``float32`` value;
* codec 5 → ``str`` array (trailing NUL bytes removed);
* codec 6 → ``<U1`` array, the NUL character becoming ``""``.

Every problem raises :class:`moldb.errors.ParseError` naming the file, the field and
what is wrong.
"""

from __future__ import annotations

import bz2
import gzip
import struct
import zlib
from typing import Any

import msgpack
import numpy as np

from moldb.errors import ParseError

__all__ = ["BINARY_FIELDS", "REQUIRED_FIELDS", "SUPPORTED_MAJOR", "decode_binary", "decode_mmtf"]

#: Major version of the MMTF specification this decoder reads (0.x drafts are accepted too).
SUPPORTED_MAJOR = 1

#: Required top-level fields and their MessagePack type.
REQUIRED_FIELDS: dict[str, type] = {
    "mmtfVersion": str, "mmtfProducer": str, "numBonds": int, "numAtoms": int, "numGroups": int,
    "numChains": int, "numModels": int, "groupList": list, "xCoordList": bytes, "yCoordList": bytes,
    "zCoordList": bytes, "groupIdList": bytes, "groupTypeList": bytes, "chainIdList": bytes,
    "groupsPerChain": list, "chainsPerModel": list,
}  # fmt: skip

#: Binary fields, the kind they must decode to, and the count they must have.
BINARY_FIELDS: dict[str, tuple[str, str]] = {
    "xCoordList": ("float", "numAtoms"), "yCoordList": ("float", "numAtoms"),
    "zCoordList": ("float", "numAtoms"), "bFactorList": ("float", "numAtoms"),
    "occupancyList": ("float", "numAtoms"), "atomIdList": ("int", "numAtoms"),
    "altLocList": ("char", "numAtoms"), "groupIdList": ("int", "numGroups"),
    "groupTypeList": ("int", "numGroups"), "secStructList": ("int", "numGroups"),
    "insCodeList": ("char", "numGroups"), "sequenceIndexList": ("int", "numGroups"),
    "chainIdList": ("str", "numChains"), "chainNameList": ("str", "numChains"),
    "bondAtomList": ("int", "bonds"), "bondOrderList": ("int", "bonds"),
}  # fmt: skip

# codec -> (big-endian dtype of the payload, kind of the result)
_CODECS: dict[int, tuple[str, str]] = {
    1: (">f4", "float"), 2: ("i1", "int"), 3: (">i2", "int"), 4: (">i4", "int"), 5: ("u1", "str"),
    6: (">i4", "char"), 7: (">i4", "int"), 8: (">i4", "int"), 9: (">i4", "float"), 10: (">i2", "float"),
    11: (">i2", "float"), 12: (">i2", "float"), 13: ("i1", "float"), 14: (">i2", "int"), 15: ("i1", "int"),
}  # fmt: skip
_INT32 = np.iinfo(np.int32)


class _Fail(Exception):
    """Internal: a problem found while decoding, turned into ParseError(path, ...) at the API."""


def _need(ok: Any, problem: str) -> None:
    if not ok:
        raise _Fail(problem)


def _run_length(a: np.ndarray, n: int) -> np.ndarray:
    _need(a.size % 2 == 0, f"run-length data has an odd number ({a.size}) of values")
    values, counts = a[0::2], a[1::2].astype(np.int64)
    _need(counts.size == 0 or counts.min() >= 0, "run-length data has a negative count")
    _need(int(counts.sum()) == n, f"run-length data expands to {int(counts.sum())} values, header says {n}")
    return np.repeat(values, counts)


def _unpack(a: np.ndarray, n: int) -> np.ndarray:
    """Recursive-index decoding, vectorised: a value ends where the packed item is no interval end."""
    info = np.iinfo(a.dtype)
    ends = (a != info.max) & (a != info.min)
    _need(a.size == 0 or ends[-1], "packed data ends inside a recursive-index run")
    total = np.cumsum(a, dtype=np.int64)[ends]
    _need(total.size == n, f"packed data unpacks to {total.size} values, header says {n}")
    return np.diff(total, prepend=np.int64(0))


def _int32(a: np.ndarray) -> np.ndarray:
    _need(a.size == 0 or _INT32.min <= a.min() <= a.max() <= _INT32.max, "decoded value outside int32 range")
    return a.astype(np.int32)


def decode_binary(buf: bytes, field: str = "?", path: str = "?") -> np.ndarray:
    """Decode one binary MMTF field (12-byte header + payload).

    Parameters
    ----------
    buf : bytes
        The field's binary value.
    field, path : str
        Field name and file path, used in error messages.

    Returns
    -------
    numpy.ndarray
        ``int32``, ``float64``, ``str`` or ``<U1`` array (see the module docstring).

    Raises
    ------
    ParseError
        Unknown codec, bad header, or payload inconsistent with the header.
    """
    try:
        return _decode_binary(bytes(buf))
    except _Fail as exc:
        raise ParseError(path, f"field {field!r}: {exc}") from None


def _decode_binary(buf: bytes) -> np.ndarray:
    _need(len(buf) >= 12, f"binary data of {len(buf)} bytes is shorter than the 12-byte codec header")
    codec, n, param = struct.unpack(">iii", buf[:12])
    _need(codec in _CODECS, f"unknown codec {codec} (MMTF 1.0 defines codecs 1 to 15)")
    _need(n >= 0, f"negative array length {n} in the codec header")
    dtype, body = _CODECS[codec][0], buf[12:]
    item = np.dtype(dtype).itemsize
    _need(len(body) % item == 0, f"codec {codec} payload of {len(body)} bytes is not a multiple of {item}")
    if codec == 5:
        _need(param > 0, f"codec 5 string length parameter is {param}, must be positive")
        _need(len(body) == n * param, f"codec 5 payload has {len(body)} bytes, header says {n} x {param}")
        try:
            return np.char.decode(np.frombuffer(body, dtype=f"S{param}"), "utf-8").astype(str)
        except UnicodeDecodeError as exc:
            raise _Fail(f"string is not valid UTF-8 ({exc.reason})") from None
    a = np.frombuffer(body, dtype=dtype)
    if codec in (1, 2, 3, 4, 11):
        _need(a.size == n, f"codec {codec} payload holds {a.size} values, header says {n}")
    _need(not 9 <= codec <= 13 or param != 0, f"codec {codec} divisor parameter is 0")
    if codec in (1, 2, 3, 4):
        return a.astype(np.float64 if codec == 1 else np.int32)
    if codec == 11:
        return a.astype(np.int64) / param
    if codec in (6, 7, 8, 9):
        v = _run_length(a.astype(np.int64), n)
        if codec == 6:
            _need(v.size == 0 or 0 <= v.min() <= v.max() <= 0x10FFFF, "character code outside Unicode range")
            return v.astype(np.uint32).view("<U1")
        if codec == 8:
            v = np.cumsum(v, dtype=np.int64)
        return _int32(v) if codec in (7, 8) else v / param
    v = _unpack(a, n)  # codecs 10, 12, 13, 14, 15
    if codec == 10:
        v = np.cumsum(v, dtype=np.int64)
    return _int32(v) if codec in (14, 15) else v / param


def _container(data: bytes) -> dict[str, Any]:
    for magic, kind, unpack in ((b"\x1f\x8b", "gzip", gzip.decompress), (b"BZh", "bzip2", bz2.decompress)):
        if data.startswith(magic):
            try:
                data = unpack(data)
            except (OSError, EOFError, ValueError, zlib.error) as exc:
                raise _Fail(f"{kind}-compressed MMTF could not be decompressed ({exc})") from None
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises many types (ExtraData, ValueError, ...)
        raise _Fail(f"not a valid MessagePack MMTF container ({type(exc).__name__}: {exc})") from None
    _need(isinstance(raw, dict), f"MMTF container must be a map, found {type(raw).__name__}")
    return {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}


def _check_version(version: Any) -> None:
    _need(isinstance(version, str), "required field 'mmtfVersion' is missing or not a string")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise _Fail(f"field 'mmtfVersion' {version!r} is not a MAJOR.MINOR version") from None
    _need(major <= SUPPORTED_MAJOR, f"mmtfVersion {version!r} is not supported: this reader handles "
          f"MMTF {SUPPORTED_MAJOR}.x")  # fmt: skip


def decode_mmtf(data: bytes, path: str) -> dict[str, Any]:
    """Decode and validate an MMTF file.

    Parameters
    ----------
    data : bytes
        File contents: MessagePack, or gzip / bzip2-compressed MessagePack.
    path : str
        File name, used in error messages.

    Returns
    -------
    dict[str, Any]
        MMTF field name → value; binary fields decoded into numpy arrays.

    Raises
    ------
    ParseError
        Not MMTF, unsupported version, missing required field, unknown codec, or
        inconsistent counts; the message names the file and the field.
    """
    try:
        d = _container(data)
        _check_version(d.get("mmtfVersion"))
        for name, typ in REQUIRED_FIELDS.items():
            _need(name in d, f"required field {name!r} is missing")
            ok = isinstance(d[name], typ) and not (typ is int and isinstance(d[name], bool))
            _need(ok, f"field {name!r} must be {typ.__name__}, found {type(d[name]).__name__}")
        counts = {k: d[k] for k in ("numAtoms", "numGroups", "numChains", "numModels", "numBonds")}
        _need(min(counts.values()) >= 0, "negative count in numAtoms/numGroups/numChains/numModels/numBonds")
        for name, (kind, count) in BINARY_FIELDS.items():
            if d.get(name) is None:
                d.pop(name, None)
                continue
            _need(isinstance(d[name], bytes), f"field {name!r} must be binary")
            codec = struct.unpack(">i", d[name][:4])[0] if len(d[name]) >= 4 else 0
            _need(_CODECS.get(codec, ("", kind))[1] == kind, f"field {name!r} uses codec {codec}, "
                  f"which does not decode to {kind} values")  # fmt: skip
            try:
                d[name] = _decode_binary(d[name])
            except _Fail as exc:
                raise _Fail(f"field {name!r}: {exc}") from None
            size = d[name].size
            if count != "bonds" and name != "secStructList":  # secStructList: see _check_topology
                _need(size == counts[count], f"{name} has {size} entries, {count} is {counts[count]}")
        _check_topology(d, counts)
    except _Fail as exc:
        raise ParseError(path, str(exc)) from None
    return d


def _check_groups(groups: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Validate groupList; return atoms and intra-group bonds per group type."""
    natoms = np.zeros(len(groups), dtype=np.int64)
    nbonds = np.zeros(len(groups), dtype=np.int64)
    for i, g in enumerate(groups):
        where = f"groupList[{i}]"
        _need(isinstance(g, dict), f"{where} is not a map")
        for key in ("atomNameList", "elementList", "formalChargeList"):
            _need(isinstance(g.get(key), list), f"{where} lacks the list {key!r}")
        _need(isinstance(g.get("groupName"), str), f"{where} lacks the string 'groupName'")
        n = len(g["atomNameList"])
        _need(len(g["elementList"]) == n == len(g["formalChargeList"]),
              f"{where}: atomNameList, elementList and formalChargeList differ in length")  # fmt: skip
        bonds, orders = g.get("bondAtomList", []), g.get("bondOrderList", [])
        _need(isinstance(bonds, list) and isinstance(orders, list), f"{where}: bond lists are not arrays")
        _need(len(bonds) == 2 * len(orders), f"{where}: bondAtomList is not 2 x bondOrderList long")
        _need(all(isinstance(b, int) and 0 <= b < n for b in bonds), f"{where}: bond atom index out of range")
        natoms[i], nbonds[i] = n, len(orders)
    return natoms, nbonds


def _check_topology(d: dict[str, Any], counts: dict[str, int]) -> None:
    cpm, gpc = d["chainsPerModel"], d["groupsPerChain"]
    _need(all(isinstance(c, int) and c >= 0 for c in cpm + gpc),
          "chainsPerModel/groupsPerChain must hold non-negative integers")  # fmt: skip
    _need(len(cpm) == counts["numModels"], f"chainsPerModel has {len(cpm)} entries, numModels is "
          f"{counts['numModels']}")  # fmt: skip
    for name, have in (("sum(chainsPerModel)", sum(cpm)), ("groupsPerChain length", len(gpc))):
        _need(have == counts["numChains"], f"{name} is {have}, numChains is {counts['numChains']}")
    _need(
        sum(gpc) == counts["numGroups"],
        f"sum(groupsPerChain) is {sum(gpc)}, numGroups is {counts['numGroups']}",
    )
    natoms, nbonds = _check_groups(d["groupList"])
    types = d["groupTypeList"]
    _need(
        types.size == 0 or 0 <= types.min() <= types.max() < len(natoms),
        "groupTypeList points outside groupList",
    )
    total = int(natoms[types].sum())
    _need(
        total == counts["numAtoms"],
        f"groups of groupTypeList hold {total} atoms, numAtoms is {counts['numAtoms']}",
    )
    bonds, orders = d.get("bondAtomList"), d.get("bondOrderList")
    _need(orders is None or bonds is not None, "bondOrderList is present without bondAtomList")
    n_inter = 0
    if bonds is not None:
        _need(bonds.size % 2 == 0, f"bondAtomList has an odd number ({bonds.size}) of entries")
        n_inter = bonds.size // 2
        ok = bonds.size == 0 or 0 <= bonds.min() <= bonds.max() < counts["numAtoms"]
        _need(ok, "bondAtomList holds an atom index outside 0..numAtoms-1")
        _need(orders is None or orders.size == n_inter, "bondOrderList length is not half of bondAtomList's")
    n_bonds = int(nbonds[types].sum()) + n_inter
    _need(n_bonds == counts["numBonds"], f"groups and bondAtomList hold {n_bonds} bonds, numBonds is "
          f"{counts['numBonds']}")  # fmt: skip
    if "secStructList" in d:  # one entry per group, of all models or of the first model only
        first, size = (sum(gpc[: cpm[0]]) if cpm else 0), d["secStructList"].size
        _need(size in (counts["numGroups"], first), f"secStructList has {size} entries, numGroups is "
              f"{counts['numGroups']} ({first} in the first model)")  # fmt: skip
    for name in ("entityList", "bioAssemblyList"):
        _check_chain_refs(d.get(name), name, counts["numChains"])
    if d.get("unitCell") is not None:
        cell = d["unitCell"]
        _need(
            isinstance(cell, list) and len(cell) == 6, f"field 'unitCell' must hold 6 numbers, found {cell!r}"
        )
    if d.get("ncsOperatorList") is not None:
        ncs = d["ncsOperatorList"]
        ok = isinstance(ncs, list) and all(isinstance(m, list) and len(m) == 16 for m in ncs)
        _need(ok, "field 'ncsOperatorList' must hold 16-number matrices")


def _check_chain_refs(items: Any, name: str, n_chains: int) -> None:
    if items is None:
        return
    _need(isinstance(items, list) and all(isinstance(x, dict) for x in items), f"{name!r} must be maps")
    holders = items if name == "entityList" else [t for a in items for t in a.get("transformList", [])]
    for i, h in enumerate(holders):
        idx = h.get("chainIndexList", [])
        ok = isinstance(idx, list) and all(isinstance(c, int) and 0 <= c < n_chains for c in idx)
        _need(ok, f"{name}: chainIndexList of item {i} points outside the {n_chains} chains")
        if name == "bioAssemblyList":
            m = h.get("matrix")
            _need(isinstance(m, list) and len(m) == 16, f"{name}: transform {i} matrix is not 16 numbers")
