"""Trajectory benchmark (issue 7): random frame reads, pushed-down CA selection, bytes per frame.

Builds an N-frame trajectory of the 5,067-atom prolif system (the 250 real frames cycled,
each with a small Gaussian perturbation, σ = 0.05 Å), writes it through MDAnalysis to XTC
and to H5MD, ingests the XTC into a moldb store, then measures (medians, peers in the same run):

1. random single-frame reads: moldb ``t.frame(i)`` vs MDAnalysis on the XTC, h5py on the
   H5MD (``position/value[i]``) and MDAnalysis on the H5MD;
2. CA atoms of every 10th frame: moldb ``t.frames(slice(0, N, 10), select="name CA")`` vs
   MDAnalysis (XTC) and h5py, with bytes read / decoded against bytes returned;
3. bytes per frame on disk: moldb's ``frames`` array vs the XTC and the H5MD file.

Run: ``python benchmarks/bench_traj.py`` (10,000 frames) or ``--quick`` (1,000 frames).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import DATA, median_time

import moldb
from moldb.storage import frames as fstore


def _dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def build(tmp: Path, n_frames: int, seed: int = 7) -> tuple[Path, Path, Path]:
    """Write the perturbed N-frame trajectory to XTC and H5MD; returns (topology, xtc, h5md)."""
    import MDAnalysis as mda

    top = DATA / "traj/prolif/top.pdb.gz"
    u = mda.Universe(str(top), str(DATA / "traj/prolif/traj.xtc"))
    real = np.stack([ts.positions.copy() for ts in u.trajectory])
    dims = np.stack([ts.dimensions.copy() for ts in u.trajectory])
    rng = np.random.default_rng(seed)
    xtc, h5 = tmp / "big.xtc", tmp / "big.h5md"
    with mda.Writer(str(xtc), n_atoms=u.atoms.n_atoms) as wx, \
            mda.Writer(str(h5), n_atoms=u.atoms.n_atoms) as wh:
        for k in range(n_frames):
            u.trajectory.ts.positions = real[k % len(real)] + rng.normal(0, 0.05, real.shape[1:]).astype(np.float32)
            u.trajectory.ts.dimensions = dims[k % len(real)]
            u.trajectory.ts.time = 10.0 * k
            u.trajectory.ts.data["step"] = 5000 * k
            wx.write(u.atoms)
            wh.write(u.atoms)
    return top, xtc, h5


def _build_and_ingest(tmp: Path, n_frames: int) -> None:
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    top, xtc, _ = build(tmp, n_frames)
    build_s = time.perf_counter() - t0
    store = moldb.create(tmp / "store")
    t0 = time.perf_counter()
    store.ingest(xtc, topology=top, entry="PROLIF-MD")
    ingest_s = time.perf_counter() - t0
    store.close()
    (tmp / "timings.txt").write_text(f"{build_s} {ingest_s}")


def _median(fn, args: list) -> float:  # type: ignore[no-untyped-def]
    fn(args[0])
    times = []
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 frames instead of 10,000")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--reads", type=int, default=300, help="random single-frame reads per reader")
    args = ap.parse_args()
    n_frames = args.frames or (1_000 if args.quick else 10_000)
    warnings.filterwarnings("ignore")
    import h5py
    import MDAnalysis as mda

    with tempfile.TemporaryDirectory(prefix="moldb-bench-traj-") as d:
        tmp = Path(d)
        # build and ingest in a child process: every reader is then measured in this fresh process
        # (after a multi-GB build the allocator state of the building process slows every reader)
        mp = multiprocessing.get_context("spawn")
        child = mp.Process(target=_build_and_ingest, args=(tmp, n_frames))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"building the trajectory failed (exit code {child.exitcode})")
        build_s, ingest_s = (float(x) for x in (tmp / "timings.txt").read_text().split())
        top, xtc, h5 = DATA / "traj/prolif/top.pdb.gz", tmp / "big.xtc", tmp / "big.h5md"
        print(f"built {n_frames} frames x 5067 atoms in {build_s:.1f} s "
              f"(XTC {xtc.stat().st_size / 1e6:.1f} MB, H5MD {h5.stat().st_size / 1e6:.1f} MB)")
        store = moldb.open(tmp / "store")
        t = store.trajectory("PROLIF-MD")
        print(f"moldb ingest {ingest_s:.1f} s; decimals {t.decimals}")

        rng = np.random.default_rng(0)
        idx = [int(i) for i in rng.integers(0, n_frames, args.reads)]
        u_xtc = mda.Universe(str(top), str(xtc))
        u_h5 = mda.Universe(str(top), str(h5))
        f = h5py.File(h5, "r")
        ds = f["particles/trajectory/position/value"]
        # correctness spot check against MDAnalysis on the XTC
        u_xtc.trajectory[idx[0]]
        err = float(np.abs(t.frame(idx[0]) - u_xtc.atoms.positions).max())

        rand = {
            "moldb t.frame(i)": _median(lambda i: t.frame(i), idx),
            "MDAnalysis XTC u.trajectory[i]": _median(lambda i: u_xtc.trajectory[i].positions.copy(), idx),
            "h5py H5MD position/value[i]": _median(lambda i: ds[i], idx),
            "MDAnalysis H5MD u.trajectory[i]": _median(lambda i: u_h5.trajectory[i].positions.copy(), idx),
        }
        base = rand["moldb t.frame(i)"]
        # where moldb's time goes: the one TileDB query per frame, and decoding the cells it returns
        parts = [p for p, pidx in enumerate(t._part_idx) if pidx.size]
        sizes = [int(t._part_idx[p].size) for p in parts]
        held = {i: [bytes(c) for c in t._reader.read([i], parts)[0]] for i in idx}
        split = {
            "  of which: the TileDB query": _median(lambda i: t._reader.read([i], parts), idx),
            "  of which: decoding its cells": _median(
                lambda i: [fstore.decode_cell(c, n) for c, n in zip(held[i], sizes, strict=True)], idx),
        }
        print(f"\n1. random single-frame read (median of {len(idx)}; max |moldb - MDAnalysis| = {err:.1e} Å)")
        print(f"   {'reader':36s} {'ms':>8s} {'vs moldb':>9s}")
        for k, v in rand.items():
            print(f"   {k:36s} {v * 1e3:8.3f} {v / base:8.2f}x")
            if k == "moldb t.frame(i)":
                for k2, v2 in split.items():
                    print(f"   {k2:36s} {v2 * 1e3:8.3f} {v2 / base:8.2f}x")

        ca_sel = u_xtc.select_atoms("name CA")
        ca_idx = ca_sel.indices
        sl = slice(0, n_frames, 10)
        n_sel = len(range(*sl.indices(n_frames)))

        def mda_ca() -> np.ndarray:
            return np.stack([ca_sel.positions.copy() for _ in u_xtc.trajectory[sl]])

        def h5_ca() -> np.ndarray:
            return np.stack([ds[i][ca_idx] for i in range(*sl.indices(n_frames))])

        reps = 3
        res = {}
        for name, fn in (("moldb t.frames(::10, 'name CA')", lambda: t.frames(sl, select="name CA")),
                         ("MDAnalysis XTC", mda_ca), ("h5py H5MD", h5_ca)):
            res[name] = median_time(fn, reps)
        ours = t.frames(sl, select="name CA")
        stats = dict(t.last_read)
        assert np.abs(ours - mda_ca()).max() < 1e-3
        returned = ours.nbytes
        base = res["moldb t.frames(::10, 'name CA')"]
        print(f"\n2. CA atoms ({len(ca_idx)}) of every 10th frame ({n_sel} frames), median of {reps}")
        print(f"   {'reader':36s} {'ms':>9s} {'vs moldb':>9s}")
        for k, v in res.items():
            print(f"   {k:36s} {v * 1e3:9.1f} {v / base:8.2f}x")
        full = n_sel * 5067 * 12
        ratio = stats["atoms_decoded"] / stats["atoms_returned"]
        print(f"   moldb: fetched {stats['bytes_read'] / 1e3:.0f} kB compressed, decoded {stats['atoms_decoded']} "
              f"atoms for {stats['atoms_returned']} returned (ratio {ratio:.2f}); "
              f"returned {returned / 1e3:.0f} kB float32")
        print(f"   peers read whole frames: XTC decodes {n_sel * 5067} atoms ({n_sel} x 5067), h5py reads "
              f"{full / 1e6:.1f} MB for {returned / 1e3:.0f} kB returned")

        frames_bytes = _dir_size(tmp / "store" / "frames")
        per = {"moldb frames array": frames_bytes / n_frames, "XTC": xtc.stat().st_size / n_frames,
               "H5MD (MDAnalysis writer)": h5.stat().st_size / n_frames}
        print(f"\n3. bytes per frame on disk ({n_frames} frames; moldb at {t.decimals} decimals in Å = XTC's 0.001 nm)")
        for k, v in per.items():
            print(f"   {k:36s} {v:10.0f} B {v / per['XTC']:6.2f}x XTC")
        store_total = _dir_size(tmp / "store")
        print(f"   whole moldb store (topology entry + frames + descriptors): {store_total / n_frames:.0f} B/frame")
        f.close()
        store.close()
        print(f"\nmachine: {os.cpu_count()} CPUs; moldb {moldb.__version__}; MDAnalysis {mda.__version__}; "
              f"h5py {h5py.__version__}")


if __name__ == "__main__":
    main()
