"""Exporters: turn a :class:`~moldb.schema.parsed.ParsedEntry` back into files.

=========  ==============================  =================================
format     suffixes                        writer
=========  ==============================  =================================
mmcif      ``.cif`` ``.mmcif`` (``.gz``)   :func:`write_mmcif`
bcif       ``.bcif`` (``.gz``)             :func:`write_bcif`
pdb        ``.pdb`` ``.ent`` (``.gz``)     :func:`write_pdb`
=========  ==============================  =================================

:func:`write` picks the writer from the suffix (or ``format``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from moldb.errors import ValidationError
from moldb.export.bcif import to_bcif_block, to_bcif_file, write_bcif
from moldb.export.cif import to_cif_document, write_mmcif
from moldb.export.pdb import to_biotite, to_gemmi, write_pdb
from moldb.schema.parsed import ParsedEntry

__all__ = [
    "EXPORT_FORMATS",
    "format_for_path",
    "to_bcif_block",
    "to_bcif_file",
    "to_biotite",
    "to_cif_document",
    "to_gemmi",
    "write",
    "write_bcif",
    "write_mmcif",
    "write_pdb",
]

_WRITERS: dict[str, Callable[[ParsedEntry, str | Path], Path]] = {
    "mmcif": write_mmcif,
    "bcif": write_bcif,
    "pdb": write_pdb,
}
#: Format names accepted by :func:`write`.
EXPORT_FORMATS: tuple[str, ...] = tuple(_WRITERS)

_SUFFIXES = {
    ".cif": "mmcif",
    ".mmcif": "mmcif",
    ".bcif": "bcif",
    ".pdb": "pdb",
    ".ent": "pdb",
}


def format_for_path(path: str | Path) -> str:
    """Export format implied by a file name (``.gz`` is looked through).

    Parameters
    ----------
    path : str or pathlib.Path

    Returns
    -------
    str
        One of :data:`EXPORT_FORMATS`.

    Raises
    ------
    ValidationError
        If the suffix is not one moldb writes.
    """
    name = Path(path).name.lower()
    stem = name[:-3] if name.endswith(".gz") else name
    suffix = Path(stem).suffix
    fmt = _SUFFIXES.get(suffix)
    if fmt is None:
        known = ", ".join(sorted({*_SUFFIXES, *(s + ".gz" for s in _SUFFIXES)}))
        raise ValidationError(
            f"{path}: cannot tell the export format from the suffix {suffix or '(none)'!r}; "
            f"use one of {known} or pass format= ({', '.join(EXPORT_FORMATS)})"
        )
    return fmt


def write(entry: ParsedEntry, path: str | Path, format: str | None = None) -> Path:
    """Write ``entry`` to ``path`` in the format given or implied by the suffix.

    Parameters
    ----------
    entry : ParsedEntry
    path : str or pathlib.Path
        A ``.gz`` suffix gzips the output.
    format : {"mmcif", "bcif", "pdb"}, optional
        Overrides the suffix.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValidationError
        If the format is unknown or cannot be told from the suffix.
    """
    fmt = format_for_path(path) if format is None else format.lower()
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ValidationError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    return writer(entry, path)
