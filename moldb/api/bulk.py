"""Bulk ingest: many files committed in batches (``Store.ingest_many``, ``moldb ingest``).

Files are committed in batches (:func:`moldb.ingest.load.commit_many`): one timestamp and one
TileDB fragment per array for the whole batch instead of about eight fragments per file. A batch
is cut when it holds ``batch_entries`` files or ``batch_atoms`` atoms, which bounds the memory it
needs (the parsed entries of one batch).

Parsing and encoding run ahead of the commits on ``workers`` threads (the readers and encoders
spend much of their time in gemmi, zlib, numpy, zstd and Arrow, which release the GIL), at most
``2 × workers`` files ahead, so a batch is being committed while the next files are read.
Results stay in input order whatever the thread timing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moldb.errors import MoldbError
from moldb.ingest.load import commit_many, prepare
from moldb.schema.records import IngestFailure, IngestReport, VersionInfo

if TYPE_CHECKING:
    from moldb.api.store import Store

__all__ = ["DEFAULT_BATCH_ATOMS", "DEFAULT_BATCH_ENTRIES", "default_workers", "ingest_many"]

#: Files per batch commit.
DEFAULT_BATCH_ENTRIES = 64
#: Atoms per batch commit: about 150 bytes of parsed entry per atom are held until the batch commits.
DEFAULT_BATCH_ATOMS = 1_000_000


def default_workers() -> int:
    """Parse threads: ``MOLDB_INGEST_WORKERS``, else the machine's cores (at most 4)."""
    env = os.environ.get("MOLDB_INGEST_WORKERS")
    if not env:
        return min(4, os.cpu_count() or 1)
    if not env.strip().isdigit() or int(env) < 1:
        raise ValueError(f"MOLDB_INGEST_WORKERS={env!r} is not a thread count; set it to an integer ≥ 1 or unset it")
    return int(env)


def ingest_many(
    store: Store,
    paths: Iterable[str | Path],
    *,
    author: str = "",
    namespace: str | None = None,
    format: str | None = None,
    batch_entries: int = DEFAULT_BATCH_ENTRIES,
    batch_atoms: int = DEFAULT_BATCH_ATOMS,
    progress: Callable[[Path], None] | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Ingest files as new entries, committing them in batches; see :meth:`moldb.Store.ingest_many`."""
    from moldb.api.store import _read_source
    from moldb.api.trajectory import is_trajectory

    if batch_entries < 1 or batch_atoms < 1:
        raise ValueError(f"batch_entries and batch_atoms must be ≥ 1 (got {batch_entries}, {batch_atoms})")
    n_workers = default_workers() if workers is None else workers
    if n_workers < 1:
        raise ValueError(f"workers must be ≥ 1 (got {workers})")
    store._check_writable()
    report = IngestReport()
    results: dict[int, VersionInfo | IngestFailure] = {}
    pending: list[tuple[int, Path, Any]] = []
    n_files = 0

    def flush() -> None:
        if not pending:
            return
        batch = [(parsed, None, f"ingest {path.name}") for _, path, parsed in pending]
        try:
            got: list[VersionInfo | MoldbError] = commit_many(store._backend, batch, author=author,
                                                              namespace=namespace)
        except MoldbError as exc:  # the whole batch was refused (e.g. the writer lock): none of it is visible
            got = [exc] * len(pending)
        report.batches += 1
        for (i, path, _), res in zip(pending, got, strict=True):
            results[i] = (res if isinstance(res, VersionInfo) else IngestFailure(str(path), res))
        pending.clear()

    def parse(path: Path) -> Any:
        if is_trajectory(path, format):
            return None  # frames are written in place: ingested in order, one commit each
        return prepare(store._backend, _read_source(path, format, None), None)  # parse and encode

    atoms = 0
    pool = ThreadPoolExecutor(n_workers, thread_name_prefix="moldb-parse")
    try:
        for i, path, job in _ahead(pool, parse, paths, 2 * n_workers):
            n_files += 1
            try:
                parsed = job.result()
                if parsed is None:
                    results[i] = store.ingest(path, format=format, author=author)
                    report.batches += 1
            except (MoldbError, OSError) as exc:
                results[i] = IngestFailure(str(path), exc)
            if progress is not None:
                progress(path)
            if i in results:
                continue
            pending.append((i, path, parsed))
            atoms += parsed.entry.n_atoms
            if len(pending) >= batch_entries or atoms >= batch_atoms:
                flush()
                atoms = 0
    finally:  # on an error or an interrupt, parses not yet started are dropped
        pool.shutdown(wait=True, cancel_futures=True)
    flush()
    for i in range(n_files):
        res = results[i]
        (report.ingested if isinstance(res, VersionInfo) else report.failed).append(res)  # type: ignore[arg-type]
    return report


def _ahead(pool: ThreadPoolExecutor, fn: Callable[[Path], Any], paths: Iterable[str | Path],
           depth: int) -> Iterator[tuple[int, Path, Future[Any]]]:
    """``(index, path, future of fn(path))`` in input order, with ``depth`` calls submitted ahead."""
    queue: list[tuple[int, Path, Future[Any]]] = []
    for i, raw in enumerate(paths):
        path = Path(raw)
        queue.append((i, path, pool.submit(fn, path)))
        if len(queue) > depth:
            yield queue.pop(0)
    yield from queue
