"""PyTorch data loading of rendered structures: :class:`RenderDataset`.

``torch`` is imported inside functions only, so ``import moldb.torch`` works without PyTorch until
a tensor is made. The dataset holds the store **URI** (and ``as_of``), never an open handle: each
``DataLoader`` worker opens its own store and builds its own renderers on first use, so it works
with ``num_workers > 0``. Prefer ``multiprocessing_context="spawn"`` (or ``"forkserver"``): a child
forked from a process whose TileDB thread pools are busy can crash, as with any threaded library.

Item ``i`` is draw ``i % n_samples`` of entry ``entries[i // n_samples]``, rendered with the seed
``SeedSequence([seed, i])``: the same ``(seed, i)`` gives the same coordinates whichever worker,
batch or epoch it lands in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moldb.errors import ValidationError

if TYPE_CHECKING:
    from moldb.api.render import EntryRenderer
    from moldb.api.store import Store

__all__ = ["RenderDataset", "collate_renders"]


class RenderDataset:
    """Map-style dataset of rendered structures (``mean + one N(0, U_total) draw per atom``).

    Parameters
    ----------
    store_or_uri : Store, str or pathlib.Path
        A store (its URI and ``as_of`` are kept, not the handle) or a store URI.
    entries : sequence of str
        Entry ids to render; each contributes ``n_samples`` items.
    n_samples : int
        Draws per entry (the epoch length is ``len(entries) * n_samples``).
    seed : int
        Base seed; item ``i`` uses ``SeedSequence([seed, i])``.
    state : mapping or None, optional
        Joint state for every entry (``None``: each entry's default state). A mapping of
        entry → state gives each entry its own.
    dtype : {"float32", "float64"}
        dtype of the returned coordinates.
    descriptors, adp : optional
        Passed to :meth:`moldb.Store.renderer`.

    Notes
    -----
    A map-style dataset (``__len__`` / ``__getitem__``) that ``torch.utils.data.DataLoader`` takes as
    is; it does not subclass ``torch.utils.data.Dataset`` so that importing it does not import torch.
    Items are dicts ``{"coords": Tensor (n_atoms, 3), "entry": str, "index": int, "sample": int}``.
    Entries differ in atom count, so batch them with :func:`collate_renders` (pads and adds a mask),
    or use ``batch_size=None``. Rendering runs on the CPU in the workers (CUDA in forked workers is
    not supported by PyTorch); move batches to the GPU in the training loop.
    """

    def __init__(self, store_or_uri: Store | str | Path, entries: Sequence[str], n_samples: int = 1, seed: int = 0,
                 state: Mapping[str, Any] | None = None, dtype: str = "float32",
                 descriptors: Sequence[str] | None = None, adp: str = "deposited") -> None:
        if isinstance(store_or_uri, str | Path):
            self.uri, self.as_of = str(store_or_uri), None
        elif hasattr(store_or_uri, "uri"):
            self.uri, self.as_of = str(store_or_uri.uri), getattr(store_or_uri, "as_of", None)
        else:
            raise ValidationError("store_or_uri must be a moldb Store or a store URI, not "
                                  f"{type(store_or_uri).__name__}")
        if isinstance(entries, str) or not len(entries):
            raise ValidationError("entries must be a non-empty list of entry ids, e.g. entries=['5EIL', '1O1Z']")
        if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples <= 0:
            raise ValidationError(f"n_samples={n_samples!r}: use a positive integer (draws per entry)")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValidationError(f"seed={seed!r}: use a non-negative integer")
        if dtype not in ("float32", "float64"):
            raise ValidationError(f"dtype={dtype!r}: use 'float32' or 'float64'")
        self.entries = [str(e).upper() for e in entries]
        self.n_samples, self.seed, self.dtype = int(n_samples), int(seed), dtype
        self.state = dict(state) if state is not None else None
        self.descriptors = list(descriptors) if descriptors is not None else None
        self.adp = adp
        self._store: Store | None = None
        self._pid = 0  # process that opened self._store (a forked worker reopens)
        self._renderers: dict[str, EntryRenderer] = {}

    # -- pickling: workers get the URI, never the handle ---------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_store"], d["_renderers"] = None, {}
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)

    def __len__(self) -> int:
        return len(self.entries) * self.n_samples

    def _state_for(self, entry: str) -> Mapping[str, str] | None:
        if self.state is None:
            return None
        per = {str(k).upper(): v for k, v in self.state.items()}
        if entry in per and (isinstance(per[entry], Mapping) or per[entry] is None):
            return per[entry]
        if any(isinstance(v, Mapping) for v in self.state.values()):
            return None  # per-entry states, none given for this entry
        return self.state

    def renderer(self, entry: str) -> EntryRenderer:
        """This process's renderer of ``entry`` (opens the store on first use)."""
        r = self._renderers.get(entry)
        if r is None:
            if self._store is None or self._pid != os.getpid():
                import moldb

                # a handle inherited through fork() shares TileDB state with the parent: never reuse it
                self._store, self._pid = moldb.open(self.uri, as_of=self.as_of), os.getpid()
            r = self._store.renderer(entry, descriptors=self.descriptors, adp=self.adp)
            self._renderers[entry] = r
        return r

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise ValidationError(f"index {index!r}: RenderDataset takes integer indices")
        i = int(index) + (len(self) if index < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        entry = self.entries[i // self.n_samples]
        item_seed = int(np.random.SeedSequence([self.seed, i]).generate_state(1, np.uint32)[0])
        x = self.renderer(entry).sample(1, state=self._state_for(entry), seed=item_seed)[0]
        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        return {"coords": t.to(dtype=getattr(torch, self.dtype)), "entry": entry, "index": i,
                "sample": i % self.n_samples}


def collate_renders(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate :class:`RenderDataset` items of different sizes: pad ``coords`` with zeros, add ``mask``.

    Returns
    -------
    dict
        ``coords`` (B, N_max, 3), ``mask`` (B, N_max) bool, ``n_atoms`` (B,), ``index`` (B,),
        ``entry`` list of str.
    """
    import torch

    if not batch:
        raise ValidationError("collate_renders got an empty batch")
    n = [int(b["coords"].shape[0]) for b in batch]
    nmax = max(n)
    coords = batch[0]["coords"].new_zeros((len(batch), nmax, 3))
    mask = torch.zeros((len(batch), nmax), dtype=torch.bool)
    for k, b in enumerate(batch):
        coords[k, : n[k]] = b["coords"]
        mask[k, : n[k]] = True
    return {"coords": coords, "mask": mask, "n_atoms": torch.tensor(n),
            "index": torch.tensor([b["index"] for b in batch]), "entry": [b["entry"] for b in batch]}
