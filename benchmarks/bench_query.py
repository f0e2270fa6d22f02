"""Query-engine figures of issue 3 at full scale, with peers measured in the same run.

    python benchmarks/bench_query.py [--quick] [--workdir DIR] [--entries N] [--repeat R] [--out FILE]

Builds (or reuses, with ``--workdir``) a store of ``--entries`` entries — 4GXY, 4V5A, BIG8
(4V5A tiled 8 times, 2.3M atoms) and the mmCIF corpus committed again under new ids — plus a
copy of 4V5A and BIG8 in the single-blob layout (chunking off), then prints one table per
figure (medians, ms). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
from _query_build import build
from biotite import structure as struc
from biotite.structure.io import pdbx

import moldb
from moldb.storage import groups as groups_mod
from moldb.storage.block_cache import shared_cache
from moldb.storage.groups import fetch, open_groups

XYZ = ["Cartn_x", "Cartn_y", "Cartn_z"]
ONE_K = "chain AI_5"  # 1,011 atoms of BIG8's copy 5
SITE = "resname ZN and chain AD"  # one zinc site of 4V5A (copy 0 of BIG8)
OUT: dict[str, Any] = {}


def med(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` in ms (one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def table(key: str, title: str, rows: list[tuple[str, float | None, str]], note: str = "") -> None:
    """Print one figure as a markdown table and keep it for the JSON."""
    OUT[key] = {"title": title, "rows": [{"what": w, "value": v, "unit": u} for w, v, u in rows], "note": note}
    print(f"\n### {title}\n\n| measurement | value | |\n|---|---:|---|")
    for what, v, unit in rows:
        print(f"| {what} | {'-' if v is None else f'{v:,.2f}'} | {unit} |")
    if note:
        print(f"\n{note}")


# -- peers -----------------------------------------------------------------------------------------------
def gemmi_select(path: Path, cid: str) -> int:
    """gemmi: read the file, count the atoms of a selection (CID syntax)."""
    st = gemmi.read_structure(str(path))
    return sum(1 for _ in gemmi.Selection(cid).copy_model_selection(st[0]).all())


def biotite_load(path: Path) -> Any:
    return pdbx.get_structure(pdbx.BinaryCIFFile.read(str(path)), model=1)


def biotite_chain(path: Path, chain: str) -> int:
    """biotite: load the BinaryCIF, mask one chain."""
    arr = biotite_load(path)
    return int((arr.chain_id == chain).sum())


def gemmi_pocket(path: Path, lig: str, chain: str | None, r: float) -> int:
    """gemmi: read the file, NeighborSearch around the ligand's atoms."""
    st = gemmi.read_structure(str(path))
    ns = gemmi.NeighborSearch(st[0], st.cell, 6).populate()
    found = set()
    for ch in st[0]:
        if chain is not None and ch.name != chain:
            continue
        for res in ch:
            if res.name == lig:
                for a in res:
                    for m in ns.find_atoms(a.pos, "\0", radius=r):
                        found.add((m.chain_idx, m.residue_idx, m.atom_idx))
    return len(found)


def biotite_pocket(path: Path, lig: str, chain: str | None, r: float) -> int:
    """biotite: load the BinaryCIF, CellList around the ligand's atoms."""
    arr = biotite_load(path)
    sel = arr.res_name == lig if chain is None else (arr.res_name == lig) & (arr.chain_id == chain)
    cells = struc.CellList(arr, cell_size=r)
    idx = cells.get_atoms(arr.coord[sel], radius=r)
    return int(np.unique(idx[idx >= 0]).size)


def ratio(peer: float | None, mine: float) -> float | None:
    return None if peer is None else peer / mine


# -- figures ---------------------------------------------------------------------------------------------
def fig_full_read(s: moldb.Store, plain: moldb.Store, rep: int) -> None:
    """store.get of 4V5A and BIG8: single-blob layout vs chunked, calls interleaved (load drifts)."""
    rows: list[tuple[str, float | None, str]] = []
    threads = groups_mod.DECODE_THREADS
    for e in ("4V5A", "BIG8"):
        variants = {"old": (plain, threads), "new": (s, threads), "serial": (s, 1)}
        times: dict[str, list[float]] = {k: [] for k in variants}
        for st, _ in variants.values():
            st.get(e)
        for _ in range(max(5, rep // (4 if e == "BIG8" else 1))):
            for k, (st, n) in variants.items():
                groups_mod.DECODE_THREADS = n
                t = time.perf_counter()
                _ = st.get(e).atoms
                times[k].append((time.perf_counter() - t) * 1e3)
        groups_mod.DECODE_THREADS = threads
        old, new, serial = (statistics.median(times[k]) for k in ("old", "new", "serial"))
        low = {k: min(v) for k, v in times.items()}
        a, b = (_entry_bytes(st, e) for st in (plain, s))
        rows += [(f"{e}: single blob per group (chunking off), store.get(all columns)", old,
                  f"ms (fastest call {low['old']:.1f})"),
                 (f"{e}: chunked, store.get, chunks decoded on {threads} threads", new,
                  f"ms ({new / old:.2f}x; fastest {low['new']:.1f}, {low['new'] / low['old']:.2f}x)"),
                 (f"{e}: chunked, store.get, one thread", serial,
                  f"ms ({serial / old:.2f}x; fastest {low['serial']:.1f}, {low['serial'] / low['old']:.2f}x)"),
                 (f"{e}: bytes of its blocks, single blob -> chunked", b / 1e6, f"MB ({b / a:.2f}x of {a / 1e6:.2f})")]
    table("full_read", "Full read of a chunked entry vs the single-blob layout (same run, calls interleaved)", rows)


def _entry_bytes(st: moldb.Store, entry: str) -> int:
    rec = st._resolve(entry, None, None)
    srcs = open_groups(st._backend, [rec.blocks], ["topo", "xyz", "adp", "aniso"])[0]
    fetch(st._backend, [(src, None) for src in srcs.values() if src.chunked])
    own = st._backend.read_blocks(list(rec.blocks.values()))
    return sum(len(v["data"]) for v in own.values()) + sum(
        len(b) for src in srcs.values() if src.chunked for b in src.blobs.values())


def fig_selection(s: moldb.Store, plain: moldb.Store, work: Path, rep: int, peer_rep: int) -> None:
    sel = s.select(ONE_K, entries="BIG8")
    n = len(sel)
    rows_ms = med(lambda: sel.rows(), rep)
    xyz_ms = med(lambda: sel.to_numpy("xyz"), rep)
    arrow_ms = med(lambda: sel.to_arrow(), rep)
    old = med(lambda: plain.select(ONE_K, entries="BIG8").to_arrow(), max(3, rep // 4))
    g = med(lambda: gemmi_select(work / "big8.cif", "//AI_5"), peer_rep)
    b = med(lambda: biotite_chain(work / "big8.bcif", "AI_5"), peer_rep)
    assert gemmi_select(work / "big8.cif", "//AI_5") == n == biotite_chain(work / "big8.bcif", "AI_5")
    table("selection", f"Figure 1 — a {n:,}-atom selection (`{ONE_K}`) from the 2.3M-atom BIG8 "
          "(goal <= 5 ms, >= 100x the peers)", [
              ("moldb select(...).rows()", rows_ms, "ms"),
              ("moldb .to_numpy('xyz')", xyz_ms, "ms"),
              ("moldb .to_arrow() (all 21 columns)", arrow_ms, "ms"),
              ("moldb .to_arrow(), single-blob layout (chunking off)", old, "ms"),
              ("gemmi read_structure(big8.cif) + Selection", g, f"ms ({ratio(g, rows_ms):,.0f}x rows, "
                                                                 f"{ratio(g, arrow_ms):,.0f}x to_arrow)"),
              ("biotite BinaryCIF load + chain mask", b, f"ms ({ratio(b, rows_ms):,.0f}x rows, "
                                                          f"{ratio(b, arrow_ms):,.0f}x to_arrow)")])


def fig_search(s: moldb.Store, rep: int, n_entries: int) -> None:
    gtp = s.select("resname GTP")
    zn = s.select("element ZN and B_iso_or_equiv < 30")
    n_gtp, n_zn = len(gtp.entries()), len(zn)
    table("search", f"Figure 2 — searches over the whole store ({n_entries:,} entries) (goal <= 100 ms)", [
        (f"entries containing GTP ({n_gtp} entries)", med(lambda: gtp.entries(), rep), "ms"),
        (f"ZN atoms with B < 30 ({n_zn} atoms), rows", med(lambda: zn.rows(), rep), "ms"),
        ("same, to_arrow()", med(lambda: zn.to_arrow(), rep), "ms"),
        ("entry metadata: resolution < 2 and X-ray",
         med(lambda: s.query_entries("resolution < 2.0 and method == 'X-RAY DIFFRACTION'"), rep), "ms")])


def fig_pocket(s: moldb.Store, plain: moldb.Store, work: Path, rep: int, peer_rep: int) -> None:
    rows: list[tuple[str, float | None, str]] = []
    for what, q, lig, chain in (("one ZN site", SITE, "ZN", "AD"), ("every ZN (4 sites)", "resname ZN", "ZN", None)):
        sel = s.select(f"within 8 of ({q})", entries="4V5A")
        n = len(sel)
        mine = med(lambda sel=sel: sel.rows(), rep)
        old = med(lambda q=q: plain.select(f"within 8 of ({q})", entries="4V5A").rows(), rep)
        g = med(lambda lig=lig, chain=chain: gemmi_pocket(work / "4v5a.cif", lig, chain, 8.0), peer_rep)
        b = med(lambda lig=lig, chain=chain: biotite_pocket(work / "4v5a.bcif", lig, chain, 8.0), peer_rep)
        assert gemmi_pocket(work / "4v5a.cif", lig, chain, 8.0) == n == biotite_pocket(work / "4v5a.bcif", lig,
                                                                                        chain, 8.0)
        rows += [(f"4V5A (290,487 atoms), {what}, {n} atoms: moldb rows()", mine, "ms"),
                 ("  same, single-blob layout", old, "ms"),
                 ("  gemmi read_structure + NeighborSearch", g, f"ms ({ratio(g, mine):,.0f}x)"),
                 ("  biotite load + CellList", b, f"ms ({ratio(b, mine):,.0f}x)")]
    big = s.select(f"within 8 of ({SITE}_0)", entries="BIG8")  # the same site in copy 0
    rows.append((f"BIG8 (2.3M atoms), one ZN site, {len(big)} atoms: moldb rows()", med(lambda: big.rows(), rep), "ms"))
    gtp = s.select("within 8 of resname GTP", entries="4GXY")
    rows.append((f"4GXY (3,685 atoms), GTP, {len(gtp)} atoms: moldb rows()", med(lambda: gtp.rows(), rep), "ms"))
    table("pocket", "Figure 3 — atoms within 8 Å of a ligand (goal <= 10 ms, >= 10x the peers incl. file load)", rows)


def child_stream(store: str, size: int) -> None:
    """In a fresh interpreter: stream every coordinate in batches of ``size``; JSON of time and peak RSS."""
    shared_cache.max_bytes = 0
    st = moldb.open(store)
    st.entries()
    base = _hwm()
    t = time.perf_counter()
    n = sum(b.num_rows for b in st.select().batches(size, columns=XYZ))
    print(json.dumps({"atoms": n, "seconds": time.perf_counter() - t, "base": base, "peak": _hwm()}))


def _hwm() -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(ln.split()[1]) * 1024 for ln in status if ln.startswith("VmHWM:"))


def fig_stream(s: moldb.Store, work: Path, sizes: list[int]) -> None:
    rows: list[tuple[str, float | None, str]] = []
    cells = s._backend.versions_index()
    blocks = [{"xyz": int(json.loads(b)["xyz"])} for b in cells["blocks"]]
    total = int(np.asarray(cells["n_atoms"]).sum())
    t = time.perf_counter()
    nbytes = 0
    for lo in range(0, len(blocks), 64):  # raw: every xyz blob and chunk cell, no decode
        srcs = [d["xyz"] for d in open_groups(s._backend, blocks[lo:lo + 64], ["xyz"])]
        fetch(s._backend, [(x, None) for x in srcs if x.chunked])
        nbytes += sum(sum(len(b) for b in x.blobs.values()) for x in srcs)
    raw = time.perf_counter() - t
    t = time.perf_counter()
    for lo in range(0, len(blocks), 64):  # raw + decode to numpy
        srcs = [d["xyz"] for d in open_groups(s._backend, blocks[lo:lo + 64], ["xyz"])]
        fetch(s._backend, [(x, None) for x in srcs if x.chunked])
        for x in srcs:
            x.read(XYZ)
    dec = time.perf_counter() - t
    rows += [(f"read every xyz cell ({nbytes / 1e6:.0f} MB), no decode", total / raw / 1e6, "M atoms/s"),
             ("read + decode to numpy", total / dec / 1e6, "M atoms/s")]
    for size in sizes:
        proc = subprocess.run([sys.executable, __file__, "--child-stream", str(work / "store"), str(size)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append((f"select().batches({size:,}, xyz) in a fresh process: throughput", r["atoms"] / r["seconds"] / 1e6,
                     "M atoms/s"))
        rows.append(("  peak RSS over the opened store", (r["peak"] - r["base"]) / 1e6,
                     f"MB (one batch of xyz = {size * 24 / 1e6:.1f} MB as float64)"))
    table("stream", f"Figure 4 — streaming every coordinate of the store ({total:,} atoms)", rows,
          "Raw rows: the same cells the stream reads, fetched in one query per 64 entries.")


def fig_maintain(work: Path) -> None:
    """maintain() of a copy of the single-blob store: BIG8's coordinates are one 10.3 MB cell (issue 3's bug)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "plain"
        shutil.copytree(work / "plain", copy)
        st = moldb.open(copy)
        t = time.perf_counter()
        rep = st.maintain(orphan_grace_s=0)
        secs = time.perf_counter() - t
        blocks = rep["arrays"]["blocks"]
        ok = st.get("BIG8").atoms.num_rows
        st.close()
    table("maintain", "maintain() with a 10.3 MB blocks cell (chunking off)", [
        ("store.maintain() of the single-blob store", secs * 1e3,
         f"ms (blocks fragments {blocks['fragments_before']} -> {blocks['fragments_after']}; BIG8 reads back "
         f"{ok:,} atoms)")])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100 entries, few repeats (a few minutes)")
    ap.add_argument("--entries", type=int, default=None, help="entries in the store (default 1000; quick 100)")
    ap.add_argument("--repeat", type=int, default=None, help="timed calls per moldb measurement (default 25)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep and reuse the stores here")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the stores in --workdir")
    ap.add_argument("--out", type=Path, default=None, help="JSON with every number")
    ap.add_argument("--child-stream", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_stream:
        child_stream(args.child_stream[0], int(args.child_stream[1]))
        return
    shared_cache.max_bytes = 0  # measure the storage read path, not the in-process block cache
    entries = args.entries or (100 if args.quick else 1000)
    rep = args.repeat or (7 if args.quick else 25)
    peer_rep = 1 if args.quick else 3
    tmp = None if args.workdir else tempfile.TemporaryDirectory()
    work = args.workdir or Path(tmp.name)  # type: ignore[union-attr]
    rec = build(work, entries, 8, args.rebuild)
    s, plain = moldb.open(work / "store"), moldb.open(work / "plain")
    print(f"store: {rec['entries']:,} entries, {rec['atoms']:,} atoms, {rec['store_bytes'] / 1e6:.0f} MB; "
          f"BIG8 {rec['big8_atoms']:,} atoms; block cache off; machine load may vary")
    fig_selection(s, plain, work, rep, peer_rep)
    fig_search(s, max(5, rep // 3), rec["entries"])
    fig_pocket(s, plain, work, rep, peer_rep)
    fig_stream(s, work, [65_536, 262_144, 1_048_576])
    fig_full_read(s, plain, rep)
    fig_maintain(work)
    OUT["build"] = rec
    out = args.out or work / "bench_query.json"
    out.write_text(json.dumps(OUT, indent=1))
    print(f"\nnumbers: {out}")
    s.close()
    plain.close()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
