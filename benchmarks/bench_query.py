"""Query-engine timings (issue 3): pocket, box, entry search and streaming, with peers in the same run.

    python benchmarks/bench_query.py [--repeat N] [--copies K]

Builds a store in a temporary directory from ../shared/data (4GXY, 4V5A, and the mmCIF
corpus ingested ``--copies`` times under distinct ids), then prints median milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gemmi
import numpy as np

import moldb

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
XYZ = ["Cartn_x", "Cartn_y", "Cartn_z"]


def ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in ms (one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def gemmi_pocket(path: Path, lig: str, r: float) -> int:
    """gemmi: read the file, NeighborSearch around the ligand's atoms (the peer of a pocket query)."""
    st = gemmi.read_structure(str(path))
    ns = gemmi.NeighborSearch(st[0], st.cell, 6).populate()
    found = set()
    for ch in st[0]:
        for res in ch:
            if res.name == lig:
                for a in res:
                    for m in ns.find_atoms(a.pos, "\0", radius=r):
                        found.add((m.chain_idx, m.residue_idx, m.atom_idx))
    return len(found)


def decode_then_mask(store: moldb.Store, entry: str, lo: np.ndarray, hi: np.ndarray) -> int:
    """moldb without the index: decode the entry's coordinates, then mask."""
    a = store.get(entry, columns=XYZ).atoms
    xyz = np.column_stack([a.column(c).to_numpy() for c in XYZ])
    return int(np.all((xyz >= lo) & (xyz <= hi), axis=1).sum())


def main() -> None:
    from moldb.storage.block_cache import shared_cache

    shared_cache.max_bytes = 0  # measure the storage read path, not the in-process block cache
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--no-maintain", dest="maintain", action="store_false", help="query the unconsolidated store")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        s = moldb.create(Path(tmp) / "store")
        s.ingest(DATA / "mmcif/4gxy.cif.gz")
        s.ingest(DATA / "mmtf/4V5A.mmtf")
        corpus = [p for p in sorted(glob.glob(str(DATA / "mmcif/*.cif.gz"))) if "4gxy" not in p]
        for k in range(args.copies):
            for p in corpus:
                with contextlib.suppress(moldb.MoldbError):  # files moldb refuses are skipped
                    s.ingest(p, entry=f"C{k}_{Path(p).name.split('.')[0]}")
        if args.maintain:
            s.maintain(orphan_grace_s=0)  # consolidated fragments, as a served store would be
        n_entries = len(s)
        print(f"store: {n_entries} entries, {int(s.entries().column('n_atoms').to_numpy().sum()):,} atoms")
        rows = []
        pocket = s.select("within 8 of resname GTP", entries="4GXY")
        rows.append(("pocket 8 Å of GTP, 4GXY (3,685 atoms): moldb select", ms(lambda: pocket.rows(), args.repeat)))
        rows.append(("  same, store.get (all columns) + numpy", ms(lambda: s.get("4GXY"), args.repeat)))
        rows.append(("  gemmi read_structure + NeighborSearch", ms(
            lambda: gemmi_pocket(DATA / "mmcif/4gxy.cif.gz", "GTP", 8.0), args.repeat)))
        big = s.select("within 8 of resname ZN", entries="4V5A")
        rows.append((f"pocket 8 Å of ZN, 4V5A (290,487 atoms; {len(big)} atoms): moldb select",
                     ms(lambda: big.rows(), args.repeat)))
        rows.append(("  same, forcing the decode path (xyz predicate)", ms(
            lambda: s.select("within 8 of resname ZN and Cartn_x > -1e6", entries="4V5A").rows(), args.repeat)))
        a = s.get("4V5A", columns=XYZ).atoms
        c = np.array([a.column(x)[5000].as_py() for x in XYZ])
        lo, hi = c - 12, c + 12
        box = s.select(box=(tuple(lo), tuple(hi)), entries="4V5A")
        rows.append((f"box 24 Å on 4V5A ({len(box)} atoms): moldb select rows", ms(lambda: box.rows(), args.repeat)))
        rows.append(("  box + to_numpy('xyz') (coordinates from the index)", ms(lambda: box.to_numpy(), args.repeat)))
        rows.append(("  store.get(xyz columns) + numpy mask", ms(lambda: decode_then_mask(s, "4V5A", lo, hi),
                                                                  args.repeat)))
        rows.append((f"entries containing GTP ({n_entries} entries)", ms(
            lambda: s.select("resname GTP").entries(), max(3, args.repeat // 4))))
        rows.append((f"ZN atoms with B < 30 ({n_entries} entries)", ms(
            lambda: len(s.select("element ZN and B_iso_or_equiv < 30")), max(3, args.repeat // 4))))
        rows.append(("entry metadata: resolution < 2 and X-ray", ms(
            lambda: s.query_entries("resolution < 2.0 and method == 'X-RAY DIFFRACTION'"), args.repeat)))
        t = time.perf_counter()
        n = sum(b.num_rows for b in s.select().batches(200_000, columns=XYZ))
        dt = time.perf_counter() - t
        for label, v in rows:
            print(f"{label:<70} {v:9.2f} ms")
        print(f"{'stream all coordinates in 200k-row batches':<70} {n / dt / 1e6:9.2f} M atoms/s ({n:,} atoms)")
        s.close()


if __name__ == "__main__":
    main()
