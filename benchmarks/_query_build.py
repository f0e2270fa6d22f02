"""The stores and peer files of ``bench_query.py`` (built once per ``--workdir``, then reused).

* ``store``: 4GXY, 4V5A, BIG8 (4V5A tiled 8 times: 2,323,896 atoms) and the mmCIF corpus
  committed again and again under new ids up to ``--entries`` entries, then ``maintain()``ed.
  Large blocks are chunked with the store's default settings.
* ``plain``: 4V5A and BIG8 with chunking switched off — the single-blob layout every store
  had before chunks, for the full-read and selection comparisons.
* peer files written by ``moldb.export``: ``4v5a.cif``, ``4v5a.bcif``, ``big8.cif``, ``big8.bcif``
  (gemmi reads mmCIF, biotite BinaryCIF; neither has another source for these entries).
"""

from __future__ import annotations

import glob
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from _common import DATA

import moldb
from moldb.export import write
from moldb.ingest.formats import read_file
from moldb.ingest.load import commit

#: Bump when the on-disk layout changes: a ``--workdir`` built for another layout is rebuilt.
LAYOUT = "chunks-64k/pages-8k/ligand-table"


def tile_entry(parsed: Any, copies: int) -> Any:
    """BIG8: ``copies`` copies of an entry as extra chains, as an assembly would have them.

    ``bench_foundation.tile_entry`` (chains suffixed ``_<copy>``, ids renumbered, x shifted
    400 Å per copy), and each copy also turned by ``45° × copy`` about (1, 1, 1) (coordinates rounded
    to the source's 3 decimals): shifted-only copies repeat every coordinate delta, which one
    zstd frame over the whole entry compresses away — no real 2M-atom entry does that.
    """
    from bench_foundation import tile_entry as tile

    big = tile(parsed, copies)
    n = parsed.n_atoms
    xyz = np.column_stack([big.atoms.column(c).to_numpy() for c in ("Cartn_x", "Cartn_y", "Cartn_z")])
    for c in range(1, copies):
        part = xyz[c * n:(c + 1) * n]
        centre = part.mean(0)
        a, u = np.deg2rad(45.0 * c), np.ones(3) / np.sqrt(3.0)  # about (1, 1, 1): every coordinate changes
        k = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
        rot = np.eye(3) + np.sin(a) * k + (1.0 - np.cos(a)) * (k @ k)
        xyz[c * n:(c + 1) * n] = np.round((part - centre) @ rot.T + centre, 3)
    atoms = big.atoms
    for i, c in enumerate(("Cartn_x", "Cartn_y", "Cartn_z")):
        atoms = atoms.set_column(atoms.column_names.index(c), c, pa.array(xyz[:, i]))
    return replace(big, atoms=atoms)


def _log(msg: str) -> None:
    print(msg, flush=True)


def build(work: Path, entries: int, copies: int, rebuild: bool = False) -> dict[str, Any]:
    """Build (or reuse) the stores and peer files under ``work``; return the build record."""
    marker = work / "build.json"
    want = {"entries": entries, "copies": copies, "layout": LAYOUT}
    if marker.exists() and not rebuild:
        rec = json.loads(marker.read_text())
        if rec.get("params") == want:
            _log(f"reusing {work} (built in {rec['build_s']:.0f} s)")
            return dict(rec)
    for name in ("store", "plain"):
        shutil.rmtree(work / name, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    big_src = read_file(DATA / "mmtf" / "4V5A.mmtf")
    big = tile_entry(big_src, copies)
    with moldb.create(work / "store") as st:
        st.ingest(DATA / "mmcif" / "4gxy.cif.gz")
        commit(st._backend, big_src, entry_id="4V5A")
        commit(st._backend, big, entry_id="BIG8")
        corpus = []
        for p in sorted(glob.glob(str(DATA / "mmcif" / "*.cif.gz"))):
            try:
                corpus.append((Path(p).name.split(".")[0], read_file(p)))
            except moldb.MoldbError:  # files moldb refuses are skipped
                continue
        n, k = 3, 0
        while n < entries:
            for stem, parsed in corpus:
                if n >= entries:
                    break
                commit(st._backend, parsed, entry_id=f"C{k}_{stem}")
                n += 1
                if n % 200 == 0:
                    el = time.perf_counter() - t0
                    _log(f"  {n}/{entries} entries in {el:.0f} s")
            k += 1
        ingest_s = time.perf_counter() - t0
        st.maintain(orphan_grace_s=0)
        n_atoms = int(st.entries().column("n_atoms").to_numpy().sum())
        size = sum(st.disk_usage().values())
    with moldb.create(work / "plain") as pl:
        pl._backend.chunk_rows = 0  # the single-blob layout
        commit(pl._backend, big_src, entry_id="4V5A")
        commit(pl._backend, big, entry_id="BIG8")  # not maintained: its 10 MB cells exceed the consolidation budget
    for name, parsed in (("4v5a", big_src), ("big8", big)):
        for suffix in ("cif", "bcif"):
            write(parsed, work / f"{name}.{suffix}")
    rec = {"params": want, "entries": n, "atoms": n_atoms, "big8_atoms": big.n_atoms, "ingest_s": ingest_s,
           "build_s": time.perf_counter() - t0, "store_bytes": size}
    marker.write_text(json.dumps(rec))
    _log(f"built {n} entries ({n_atoms:,} atoms, {size / 1e6:.0f} MB) in {rec['build_s']:.0f} s "
         f"(commits {ingest_s:.0f} s)")
    return rec
