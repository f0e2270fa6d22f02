#!/usr/bin/env python
"""moldb versioning benchmarks: old-version reads, re-deposition cost on disk and in time, diff speed.

    python benchmarks/bench_versions.py [--reps R] [--versions N] [--out bench_versions.json]

1. Read latency of version 1 of 5EIL with N (default 100) later versions on top, before and after
   ``store.maintain()``, against reading its latest version (goal ≤ 1.2×).
2. Disk growth of a B-factor-only re-deposition of 5EIL as a fraction of the entry's own size
   (goal ≤ 0.25×); sizes measured after ``maintain()`` (consolidated, vacuumed).
3. Deposit latency of a B-factor-only re-deposition of 1GYT (24,984 atoms, PDB) against its plain
   ingest into an empty store (goal ≤ 2×).
4. Diff of two versions of 4V5A (290,487 atoms; coordinates and B perturbed): ``diff_structures``
   alone and ``Store.diff`` including both reads (goal ≤ 1 s).

Every timing is a median over ``--reps`` calls after one discarded warm-up call.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tiledb
from _common import DATA, median_time
from rich.console import Console
from rich.table import Table

import moldb
from moldb.ingest.formats import read_file
from moldb.ingest.load import commit
from moldb.versioning.diff import diff_structures

console = Console(width=150)




def with_b(parsed: Any, delta: float) -> Any:
    """A copy of ``parsed`` whose B-factors are shifted by ``delta`` (2 decimals, as the source prints)."""
    a = parsed.atoms
    i = a.column_names.index("B_iso_or_equiv")
    b = np.round(a.column(i).to_numpy() + delta, 2)
    out = type(parsed)(**{**parsed.__dict__, "atoms": a.set_column(i, "B_iso_or_equiv", pa.array(b))})
    return out


def pdb_b_shift(src: Path, dst: Path, delta: float) -> Path:
    """Rewrite the B-factor field (columns 61–66) of every ATOM/HETATM record; nothing else changes."""
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt") as fh:
        lines = fh.read().splitlines(keepends=True)
    out = []
    for ln in lines:
        if ln.startswith(("ATOM  ", "HETATM")) and len(ln) >= 66:
            ln = f"{ln[:60]}{float(ln[60:66]) + delta:6.2f}{ln[66:]}"
        out.append(ln)
    dst.write_text("".join(out))
    return dst


def total_bytes(st: moldb.Store) -> int:
    return sum(st.disk_usage().values())


# -- 1: old versions read as fast as the latest ------------------------------------------------------------
def bench_old_version_reads(work: Path, n_versions: int, reps: int) -> dict[str, Any]:
    st = moldb.create(work / "hist")
    parsed = read_file(DATA / "mmcif" / "5eil.cif.gz")
    t0 = time.perf_counter()
    commit(st._backend, parsed, mode="new")
    for k in range(1, n_versions + 1):
        commit(st._backend, with_b(parsed, 0.01 * k), mode="deposit", message=f"refit {k}")
    build = time.perf_counter() - t0
    frags = {n: len(tiledb.array_fragments(str(work / "hist" / n))) for n in ("versions", "blocks")}
    out: dict[str, Any] = {"versions": n_versions + 1, "build_s": build, "fragments_before": frags}
    for phase in ("before", "after"):
        if phase == "after":
            rep = st.maintain()
            out["maintain_s"] = rep["seconds"]
            out["fragments_after"] = {n: rep["arrays"][n]["fragments_after"] for n in ("versions", "blocks")}
        reader = moldb.open(work / "hist")
        out[f"v1_{phase}"] = median_time(lambda r=reader: r.get("5EIL", version=1).atoms, reps)
        out[f"latest_{phase}"] = median_time(lambda r=reader: r.get("5EIL").atoms, reps)
        reader.close()
    st.close()
    return out


# -- 2: bytes of a B-only re-deposition --------------------------------------------------------------------
def bench_disk_growth(work: Path, tmp: Path) -> dict[str, Any]:
    empty = moldb.create(work / "empty")
    empty.maintain()
    base = total_bytes(empty)
    st = moldb.create(work / "growth")
    st.ingest(DATA / "mmcif" / "5eil.cif.gz")
    st.maintain()
    one = total_bytes(st)
    import gemmi

    doc = gemmi.cif.read(str(DATA / "mmcif" / "5eil.cif.gz"))
    col = doc.sole_block().find_values("_atom_site.B_iso_or_equiv")
    for i in range(len(col)):
        col[i] = f"{float(col[i]) + 1.5:.2f}"
    refit = tmp / "5eil_refit.cif"
    doc.write_file(str(refit))
    v = st.deposit(refit, entry="5EIL", message="B re-fit")
    raw = total_bytes(st)
    st.maintain()
    two = total_bytes(st)
    entry = one - base
    return {"empty_store": base, "entry_bytes": entry, "growth_bytes": two - one, "growth_unconsolidated": raw - one,
            "ratio": (two - one) / entry, "new_blocks": [g for g, b in v.blocks.items()
                                                          if b != st.get("5EIL", version=1).version.blocks[g]]}


# -- 3: deposit latency of a re-deposition -----------------------------------------------------------------
def bench_redeposit(work: Path, tmp: Path, reps: int) -> dict[str, Any]:
    src = DATA / "pdb" / "1gyt.pdb.gz"
    base = pdb_b_shift(src, tmp / "1gyt_0.pdb", 0.0)
    variants = [pdb_b_shift(src, tmp / f"1gyt_{k}.pdb", 0.5 * k) for k in range(1, reps + 2)]
    n_atoms = read_file(base).n_atoms
    times_ingest = []
    for k in range(reps + 1):
        st = moldb.create(work / f"ing{k}")
        t0 = time.perf_counter()
        st.ingest(base, entry="1GYT")
        times_ingest.append(time.perf_counter() - t0)
        st.close()
    st = moldb.create(work / "redep")
    st.ingest(base, entry="1GYT")
    times_dep, written = [], []
    for f in variants:
        t0 = time.perf_counter()
        v = st.deposit(f, entry="1GYT")
        times_dep.append(time.perf_counter() - t0)
        written.append(sorted(g for g in v.blocks if v.blocks[g] != st.history("1GYT")[v.version - 2].blocks[g]))
    t_parse = median_time(lambda: read_file(base), reps)
    return {"n_atoms": n_atoms, "ingest": statistics.median(times_ingest[1:]),
            "deposit": statistics.median(times_dep[1:]), "parse": t_parse, "groups_written": written[-1]}


# -- 4: diff of a 290k-atom entry --------------------------------------------------------------------------
def bench_diff(work: Path, reps: int) -> dict[str, Any]:
    parsed = read_file(DATA / "mmtf" / "4V5A.mmtf")
    st = moldb.create(work / "diff")
    commit(st._backend, parsed, mode="new")
    a = parsed.atoms
    rng = np.random.default_rng(0)
    i = a.column_names.index("Cartn_x")
    x = np.round(a.column(i).to_numpy() + rng.normal(0, 0.05, a.num_rows), 3)
    b = a.set_column(i, "Cartn_x", pa.array(x))
    j = b.column_names.index("B_iso_or_equiv")
    b = b.set_column(j, "B_iso_or_equiv", pc.add(b.column(j), 1.0))
    moved = type(parsed)(**{**parsed.__dict__, "atoms": b})
    commit(st._backend, moved, mode="deposit", message="perturbed")
    sa, sb = st.get("4V5A", version=1), st.get("4V5A", version=2)
    ca, cb = sa.categories, sb.categories
    pure = median_time(lambda: diff_structures(sa.atoms, ca, sb.atoms, cb), reps)
    reader = moldb.open(work / "diff")
    full = median_time(lambda: reader.diff("4V5A", 1, 2), reps)
    d = reader.diff("4V5A", 1, 2)
    return {"n_atoms": a.num_rows, "diff_structures": pure, "store_diff": full, "moved": d.moved, "rmsd": d.rmsd,
            "changed_columns": d.changed_columns}


def main() -> None:
    from moldb.storage.block_cache import shared_cache

    shared_cache.max_bytes = 0  # measure the storage read path, not the in-process block cache
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15, help="timed repetitions per measurement")
    ap.add_argument("--versions", type=int, default=100, help="later versions stacked on version 1 in (1)")
    ap.add_argument("--out", default="bench_versions.json", help="JSON with every number")
    ap.add_argument("--workdir", default=None, help="keep scratch stores here (default: a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="moldb-bench-versions-") as tmpd:
        work = Path(args.workdir) if args.workdir else Path(tmpd)
        work.mkdir(parents=True, exist_ok=True)
        tmp = Path(tmpd)
        console.print(f"[dim]moldb {moldb.__version__}, tiledb-py {tiledb.__version__} (core "
                      f"{'.'.join(map(str, tiledb.libtiledb.version()))}), {platform.machine()}, "
                      f"{os.cpu_count()} CPUs; medians of {args.reps}[/]")
        r1 = bench_old_version_reads(work, args.versions, args.reps)
        r2 = bench_disk_growth(work, tmp)
        r3 = bench_redeposit(work, tmp, max(5, args.reps // 2))
        r4 = bench_diff(work, max(3, args.reps // 3))

    t = Table(title="moldb versioning", title_justify="left")
    for c, just in (("measurement", "left"), ("moldb", "right"), ("reference", "right"), ("ratio", "right"),
                    ("goal", "right"), ("", "left")):
        t.add_column(c, justify=just)  # type: ignore[arg-type]

    def row(name: str, val: str, ref: str, ratio: float | None, goal: str, ok: bool) -> None:
        t.add_row(name, val, ref, "-" if ratio is None else f"{ratio:.2f}×", goal, "[green]✓[/]" if ok else "[red]✗[/]")

    n = r1["versions"]
    for ph in ("before", "after"):
        q = r1[f"v1_{ph}"] / r1[f"latest_{ph}"]
        row(f"read 5EIL v1 of {n}, {ph} maintain()", f"{r1[f'v1_{ph}'] * 1e3:.2f} ms",
            f"latest {r1[f'latest_{ph}'] * 1e3:.2f} ms", q, "≤ 1.2×", q <= 1.2)
    row("5EIL B-only re-deposit, disk growth", f"{r2['growth_bytes'] / 1e3:.1f} kB",
        f"entry {r2['entry_bytes'] / 1e3:.1f} kB", r2["ratio"], "≤ 0.25×", r2["ratio"] <= 0.25)
    q3 = r3["deposit"] / r3["ingest"]
    row(f"1GYT ({r3['n_atoms']:,} atoms) B-only re-deposit", f"{r3['deposit'] * 1e3:.0f} ms",
        f"ingest {r3['ingest'] * 1e3:.0f} ms", q3, "≤ 2×", q3 <= 2.0)
    row(f"diff 4V5A v1→v2 ({r4['n_atoms']:,} atoms), diff_structures", f"{r4['diff_structures'] * 1e3:.0f} ms",
        "1000 ms", r4["diff_structures"], "≤ 1 s", r4["diff_structures"] <= 1.0)
    row("  … store.diff incl. reading both versions", f"{r4['store_diff'] * 1e3:.0f} ms", "1000 ms",
        r4["store_diff"], "≤ 1 s", r4["store_diff"] <= 1.0)
    console.print(t)
    console.print(
        f"[dim](1) {n} versions built in {r1['build_s']:.1f} s; fragments versions/blocks "
        f"{r1['fragments_before']['versions']}/{r1['fragments_before']['blocks']} → "
        f"{r1['fragments_after']['versions']}/{r1['fragments_after']['blocks']} by maintain() in "
        f"{r1['maintain_s']:.2f} s. (2) groups written: {', '.join(r2['new_blocks'])}; growth before maintain "
        f"{r2['growth_unconsolidated'] / 1e3:.1f} kB; empty store {r2['empty_store'] / 1e3:.1f} kB. "
        f"(3) parse alone {r3['parse'] * 1e3:.0f} ms; groups written: {', '.join(r3['groups_written'])}. "
        f"(4) moved {r4['moved']:,} atoms, RMSD {r4['rmsd']:.4f} Å.[/]")
    Path(args.out).write_text(json.dumps({"old_version_reads": r1, "disk_growth": r2, "redeposit": r3,
                                          "diff": r4}, indent=2, default=str))
    console.print(f"[dim]wrote {args.out}[/]")


if __name__ == "__main__":
    main()
