"""Detect a structure file's format from its content (and name as a hint).

Formats: ``mmcif``, ``pdb``, ``bcif``, ``mmtf``. Detection looks at the bytes,
not only the suffix, so a mislabelled file is still read or clearly refused.
"""

from __future__ import annotations

import bz2
import gzip
import zlib
from collections.abc import Callable
from pathlib import Path

from moldb.errors import ParseError, UnsupportedFormatError
from moldb.schema.parsed import ParsedEntry

__all__ = ["FORMATS", "detect_format", "read_file"]

FORMATS: tuple[str, ...] = ("mmcif", "pdb", "bcif", "mmtf")
FORMATS = (*FORMATS, "rmf")  # RMF3 (Avro) and the older HDF5 layout: moldb.ingest.rmf
_PDB_RECORDS = (b"HEADER", b"ATOM  ", b"HETATM", b"REMARK", b"CRYST1", b"MODEL ", b"TITLE ", b"COMPND",
                b"EXPDTA", b"SEQRES", b"AUTHOR", b"JRNL  ", b"SOURCE", b"KEYWDS", b"HELIX ", b"SHEET ")


def _head(path: Path, n: int = 4096) -> bytes:
    with path.open("rb") as fh:
        head = fh.read(n)
    try:
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                return gz.read(n)
        if head[:3] == b"BZh":
            with bz2.open(path, "rb") as bz:
                return bz.read(n)
    except (OSError, EOFError, zlib.error) as exc:
        raise ParseError(str(path), f"corrupt compressed stream ({exc})") from exc
    return head


def detect_format(path: str | Path) -> str:
    """Return the format name of ``path``.

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    UnsupportedFormatError
        If the content is none of the supported formats.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    head = _head(p)
    if not head.strip():
        raise UnsupportedFormatError(str(p), "the file is empty")
    first = head[:1]
    if head.startswith(b"Obj\x01") or (head.startswith(b"\x89HDF\r\n\x1a\n") and ".rmf" in p.name.lower()):
        return "rmf"  # RMF3 is an Avro container; the older RMF layout is HDF5 named *.rmf
    if first and (0x80 <= first[0] <= 0x8F or first in (b"\xde", b"\xdf")):  # msgpack map
        if b"mmtfVersion" in head or b"numAtoms" in head:
            return "mmtf"
        if b"dataBlocks" in head or b"encoder" in head:
            return "bcif"
        return "bcif" if ".bcif" in p.name.lower() else "mmtf"
    text = head.lstrip()
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith(b"#"):
            continue
        if s.lower().startswith(b"data_"):
            return "mmcif"
        break
    if any(line.startswith(r) for line in head.splitlines() for r in _PDB_RECORDS):
        return "pdb"
    raise UnsupportedFormatError(
        str(p), "unrecognised format: expected mmCIF, PDB, BinaryCIF or MMTF (plain, .gz or .bz2)"
    )


def _readers() -> dict[str, Callable[[Path], ParsedEntry]]:
    from moldb.ingest.bcif import read_bcif
    from moldb.ingest.mmcif import read_mmcif, read_pdb
    from moldb.ingest.mmtf import read_mmtf

    return {"mmcif": read_mmcif, "pdb": read_pdb, "bcif": read_bcif, "mmtf": read_mmtf}


def read_file(path: str | Path, format: str | None = None) -> ParsedEntry:
    """Parse a structure file into a :class:`ParsedEntry`.

    Parameters
    ----------
    path : str or pathlib.Path
    format : {"mmcif", "pdb", "bcif", "mmtf"}, optional
        Skip detection.

    Returns
    -------
    ParsedEntry
    """
    p = Path(path)
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise UnsupportedFormatError(str(p), f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "rmf":
        from moldb.ingest.rmf import read_rmf

        return read_rmf(p)
    try:
        return _readers()[fmt](p)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # damaged beyond the header
        raise ParseError(str(p), f"corrupt compressed stream ({exc}); re-export or re-download the file") from exc
