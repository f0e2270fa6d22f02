"""Write batches: many entries committed in one TileDB fragment per array.

Every commit writes about eight small fragments (blocks, spatial index, groupings,
descriptors, components, versions ...), each costing 10–20 ms of TileDB fixed cost
on a local disk and far more on object storage. A :class:`WriteBatch` collects the
cells that the commits of a bulk ingest write at one timestamp, then writes each
array once. ``versions`` is written last, so the commit protocol is unchanged: the
batch becomes visible in one step, or (after an error or a crash) not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["COMMIT_POINTS", "WriteBatch"]

#: Arrays whose write publishes a commit; a batch writes them after every other array.
COMMIT_POINTS = ("versions", "tags")


class WriteBatch:
    """Cells buffered per array, all at timestamp ``ts``.

    Parameters
    ----------
    ts : int
        The batch's write timestamp (ms); every buffered write must use it.
    versions : dict
        Cells of the whole ``versions`` array read under the writer lock when the batch
        began: reads of an entry's versions during the batch are answered from it.
    components : set of str
        Ids of the component templates stored when the batch began.
    flags : dict, optional
        The handle's flags (:meth:`Backend.handle_flags`); the batch works on a copy.
    """

    def __init__(self, ts: int, versions: dict[str, Any], components: set[str],
                 flags: dict[str, Any] | None = None) -> None:
        self.ts = ts
        self.versions = versions
        self.components = set(components)
        self.flags = dict(flags or {})
        self._cells: dict[str, list[tuple[list[np.ndarray], dict[str, Any]]]] = {}

    def add(self, name: str, ts: int, coords: Sequence[np.ndarray], cells: dict[str, Any]) -> None:
        """Buffer one write of ``cells`` at ``coords`` into array ``name``.

        Raises
        ------
        ValueError
            If ``ts`` is not the batch's timestamp, or the attributes differ from an
            earlier write to the same array (both are programming errors).
        """
        if ts != self.ts:
            raise ValueError(f"a write batch holds timestamp {self.ts}; a write at {ts} cannot join it")
        held = self._cells.setdefault(name, [])
        if held and set(held[0][1]) != set(cells):
            raise ValueError(f"writes to {name!r} in one batch must set the same attributes "
                             f"({sorted(held[0][1])} vs {sorted(cells)})")
        held.append(([np.asarray(c) for c in coords], {k: np.asarray(v) for k, v in cells.items()}))

    def mark(self) -> tuple[dict[str, int], set[str], dict[str, Any]]:
        """A savepoint: what the batch holds now (see :meth:`rollback`)."""
        return {k: len(v) for k, v in self._cells.items()}, set(self.components), dict(self.flags)

    def rollback(self, mark: tuple[dict[str, int], set[str], dict[str, Any]]) -> None:
        """Drop every write buffered since ``mark`` was taken."""
        sizes, components, self.flags = mark
        for name in list(self._cells):
            del self._cells[name][sizes.get(name, 0):]
            if not self._cells[name]:
                del self._cells[name]
        self.components = components

    def read_versions(self, entry: str, attrs: Sequence[str] | None) -> dict[str, Any]:
        """An entry's cells of ``versions`` as they were when the batch began."""
        mask = self.versions["entry"] == entry
        keep = ("entry", "version", *(attrs if attrs is not None else
                                      [k for k in self.versions if k not in ("entry", "version")]))
        return {k: np.asarray(self.versions[k])[mask] for k in keep}

    def arrays(self) -> list[str]:
        """Names of the arrays with buffered cells, commit points last."""
        return sorted(self._cells, key=lambda n: (n in COMMIT_POINTS, n == "versions"))

    def merged(self, name: str) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        """Every buffered write of ``name`` as one set of coordinates and attributes."""
        held = self._cells[name]
        coords = [np.concatenate([h[0][d] for h in held]) for d in range(len(held[0][0]))]
        cells = {k: np.concatenate([h[1][k] for h in held]) for k in held[0][1]}
        return coords, cells
