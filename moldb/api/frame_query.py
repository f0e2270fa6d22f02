"""Queries over the frame axis: frame labels, ``frames_where`` and selections over chosen frames.

``store.frames_where("time >= 10 and cluster == 3")`` evaluates a comparison expression (the
selection language's ``and`` / ``or`` / ``not``, ``==`` ``<`` ``in`` ...) over the per-frame
columns of an entry's trajectory: ``time`` (ps), ``step``, ``frame`` (the index), its scalar
:class:`~moldb.ir.trajectory.FrameObservable` values (e.g. H5MD energies) and its
:class:`~moldb.ir.trajectory.FrameLabels`. On a name clash a label shadows an observable, and
both shadow the built-in ``time`` / ``step`` / ``frame``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moldb.errors import EntryNotFoundError, ValidationError
from moldb.ir.trajectory import FrameLabels, FrameObservable

__all__ = [
    "BUILTIN_COLUMNS",
    "FrameSelection",
    "check_frame_labels",
    "frame_columns",
    "frame_labels_target",
    "frames_where",
]

#: per-frame columns every trajectory has, with their kinds (shadowed by observables / labels of that name)
BUILTIN_COLUMNS = {"time": "float", "step": "int", "frame": "int"}


def _checked(store: Any, entry: str, d: FrameLabels) -> tuple[FrameLabels, int]:
    from moldb.api.trajectory import open_trajectory
    from moldb.ir.model import Edge

    if not d.name:
        raise ValidationError("FrameLabels needs a name, e.g. moldb.FrameLabels('cluster', labels)")
    if d.labels is None:
        raise ValidationError(f"FrameLabels {d.name!r}: no labels given")
    t = open_trajectory(store, entry)
    n = int(np.asarray(d.labels).shape[0])
    if n != t.n_frames:
        raise ValidationError(
            f"FrameLabels {d.name!r}: {n} labels for the {t.n_frames} frames of {t.entry}; give one label per frame"
        )
    d = d.model_copy(deep=True)
    if not any(e.kind == "derived_from" and e.parent == "trajectory" for e in d.edges):
        d.edges.append(Edge(kind="derived_from", parent="trajectory", function=d.derived_from, materialized=True))
    return d, t.version


def check_frame_labels(store: Any, entry: str, d: FrameLabels) -> FrameLabels:
    """Validate frame labels against the entry's trajectory; add the ``derived_from`` edge to it."""
    return _checked(store, entry, d)[0]


def frame_labels_target(store: Any, entry: str, d: FrameLabels) -> tuple[FrameLabels, int]:
    """:func:`check_frame_labels`, and the version to write them to: the one holding the trajectory.

    That is the latest version, or after a topology-only re-deposit the earlier version whose
    trajectory the latest one reads (``store.add_descriptor`` writes the labels there).
    """
    return _checked(store, entry, d)


def _label_mask(node: Any, cols: dict[str, np.ndarray], n: int) -> np.ndarray:
    from moldb.query.nodes import All, And, Cmp, IsIn, Not, Or, Range

    ops = {
        "==": np.equal,
        "!=": np.not_equal,
        "<": np.less,
        "<=": np.less_equal,
        ">": np.greater,
        ">=": np.greater_equal,
    }
    if isinstance(node, All):
        return np.ones(n, dtype=bool)
    if isinstance(node, Cmp):
        v = cols[node.column]
        val: Any = node.value
        if v.dtype == object:
            val = str(val)
        return np.asarray(ops[node.op](v, val), dtype=bool)
    if isinstance(node, IsIn):
        v = cols[node.column]
        return np.isin(v, [str(x) if v.dtype == object else x for x in node.values])
    if isinstance(node, Range):
        v = cols[node.column]
        return np.asarray((v >= node.lo) & (v <= node.hi), dtype=bool)
    if isinstance(node, And):
        m = np.ones(n, dtype=bool)
        for it in node.items:
            m &= _label_mask(it, cols, n)
        return m
    if isinstance(node, Or):
        m = np.zeros(n, dtype=bool)
        for it in node.items:
            m |= _label_mask(it, cols, n)
        return m
    if isinstance(node, Not):
        return ~_label_mask(node.item, cols, n)
    raise ValidationError(f"frame label expressions support comparisons, and/or/not; not {type(node).__name__}")


def _observable_column(d: FrameObservable) -> np.ndarray:
    """An observable's values; category strings for a frame label that came back through H5MD."""
    v = np.asarray(d.values)
    cats = d.attrs.get("categories")
    if cats and v.dtype.kind in "iu" and v.size and v.min() >= 0 and v.max() < len(cats):
        return np.asarray(cats, dtype=object)[v.astype(np.int64)]
    return v


def frame_columns(store: Any, entry: str, version: int | str | None = None,
                  ) -> tuple[Any, dict[str, np.ndarray]] | None:
    """Per-frame columns of the trajectory that ``version`` (default: the latest) of ``entry`` reads.

    ``time``, ``step`` and ``frame``, scalar observables, then frame labels: a later kind
    shadows an earlier one of the same name. Returns (the version holding the trajectory,
    columns), or None when the entry has no trajectory.

    Raises
    ------
    EntryNotFoundError
        Unknown entry.
    TrajectoryTopologyError
        Only earlier versions with another atom count have a trajectory.
    """
    from moldb.api.trajectory_versions import find_trajectory
    from moldb.ir.store_ops import descriptor_objects
    from moldb.ir.trajectory import TrajectoryDescriptor

    got = find_trajectory(store, entry, version)
    if got is None:
        return None
    _, holder, cells = got
    wanted = {
        k: c for k, c in cells.items() if c["tag"] in (FrameLabels.TYPE, FrameObservable.TYPE) or k == "trajectory"
    }
    descs = descriptor_objects(store._backend, holder.entry, wanted)
    cols: dict[str, np.ndarray] = {}
    for d in descs:
        if isinstance(d, TrajectoryDescriptor):
            cols["time"] = np.asarray(d.time, dtype=np.float64)
            cols["step"] = np.asarray(d.step, dtype=np.int64)
            cols["frame"] = np.arange(int(d.n_frames), dtype=np.int64)
    for d in descs:
        if isinstance(d, FrameObservable) and np.asarray(d.values).ndim == 1:
            cols[d.name] = _observable_column(d)
    for d in descs:
        if isinstance(d, FrameLabels):
            cols[d.name] = d.values()
    return holder, cols


def frames_where(store: Any, expr: str, entry: str | None = None, version: int | str | None = None) -> np.ndarray:
    """Frame indices (int64, sorted) where an expression over per-frame data holds.

    The columns are ``time`` (ps), ``step`` and ``frame`` (the index) of every trajectory, the
    entry's scalar observables (H5MD ``/observables``: ``"energy < 1.5"``) and its frame labels
    (``"cluster == 3"``); a label shadows an observable of the same name, and both shadow the
    built-in columns. NaN (no sample at that frame) compares false. Without ``entry``, the one
    entry whose trajectory has every column named in ``expr``. ``version`` (a number or tag; needs
    ``entry``) queries the trajectory that version reads instead of the latest's.

    Raises
    ------
    ValidationError
        No trajectory to query, a column no trajectory has, several entries have them all, or
        ``version`` without ``entry``.
    EntryNotFoundError
        ``entry`` is not in the store.
    """
    from moldb.query import parse
    from moldb.query.nodes import columns

    if version is not None and entry is None:
        raise ValidationError(f"frames_where(version={version!r}) needs entry=...: versions are per entry")
    entries = [entry] if entry is not None else [str(e) for e in store.entries().column("entry").to_pylist()]
    found: list[tuple[str, dict[str, np.ndarray]]] = []
    for e in entries:
        try:
            got = frame_columns(store, e, version)
        except EntryNotFoundError:
            if entry is not None:
                raise
            continue
        if got is not None:
            found.append((got[0].entry, got[1]))
    if not found:
        what = (
            f"{entry} has no frame labels or observables to query: it has no trajectory"
            if entry is not None
            else "no entry has a trajectory whose frames could be queried"
        )
        raise ValidationError(f"{what}; ingest one with store.ingest('traj.xtc', topology='top.pdb', entry=...)")
    kinds = dict(BUILTIN_COLUMNS)
    for _, cols in found:
        for k, v in cols.items():
            kinds[k] = "str" if v.dtype == object else "float" if v.dtype.kind == "f" else "int"
    node = parse(expr, columns=kinds, keywords={})
    needed = columns(node)
    hits = [(e, cols) for e, cols in found if needed <= set(cols)]
    if not hits:
        raise ValidationError(
            f"no trajectory has frame labels or observables {sorted(needed)}"
            + (f" in {entry}" if entry else "")
            + "; add labels with store.add_descriptor("
            "entry, moldb.FrameLabels(name, labels))"
        )
    if len(hits) > 1:
        raise ValidationError(
            f"the frame columns {sorted(needed)} exist in the trajectories of several entries "
            f"({', '.join(e for e, _ in hits)}); pass entry=..."
        )
    _, cols = hits[0]
    n = len(cols["frame"])
    with np.errstate(invalid="ignore"):
        return np.flatnonzero(_label_mask(node, cols, n)).astype(np.int64)


class FrameSelection:
    """Atoms of a :class:`~moldb.query.Selection` over chosen frames of each entry's trajectory.

    ``rows()`` as for a selection; ``to_numpy()`` → entry → (n_frames, n_atoms, 3) float32.
    """

    def __init__(self, store: Any, selection: Any, frames: Any) -> None:
        self.store = store
        self.selection = selection
        self.frames = frames

    def __repr__(self) -> str:
        return f"<moldb FrameSelection {self.selection!r} frames={self.frames!r}>"

    def rows(self) -> dict[str, np.ndarray]:
        """Entry → selected atom rows."""
        return dict(self.selection.rows())

    def entries(self) -> list[str]:
        """Entries with selected atoms."""
        return list(self.selection.entries())

    def frame_indices(self) -> dict[str, np.ndarray]:
        """Entry → frame indices."""
        from moldb.api.trajectory import open_trajectory

        return {e: open_trajectory(self.store, e).frame_indices(self.frames) for e in self.entries()}

    def to_numpy(self, what: str = "xyz") -> dict[str, np.ndarray]:
        """Entry → coordinates of the selected atoms over the selected frames, (k, m, 3) float32."""
        if what != "xyz":
            raise ValidationError(f"FrameSelection.to_numpy({what!r}): only 'xyz'")
        from moldb.api.trajectory import open_trajectory

        out = {}
        for e, rows in self.rows().items():
            t = open_trajectory(self.store, e)
            if t._rows is None:
                idx = rows[rows < t.n_atoms]
            else:
                pos = np.searchsorted(t._rows, rows)
                idx = pos[(pos < t._rows.size) & (t._rows[np.minimum(pos, t._rows.size - 1)] == rows)]
            out[e] = t.frames(self.frames, select=idx)
        return out
