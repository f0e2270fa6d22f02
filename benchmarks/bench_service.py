#!/usr/bin/env python
"""moldb service load test: a real ``moldb serve`` on loopback, driven through ``moldb.connect``.

    python benchmarks/bench_service.py [--quick] [--workers W] [--clients 16] [--out bench_service.json]

1. Small-selection queries: ``select("chain A and resi 10-20", entries=E).to_arrow()`` over a few
   small entries from 16 concurrent clients (threads, one connection pool and one reader token each)
   for a fixed time. Queries/s, p50 and p99 latency (goal >= 300 q/s, p99 <= 100 ms).
2. 8 concurrent depositors x 50 depositions each (``--quick``: x 10) into one entry while 4 readers
   query it. Every deposition has its own B-factor shift; afterwards every version is read back and
   checked against what its depositor sent (message, content hash, author, B shift). Lost versions,
   duplicated versions and torn reads (a version whose atoms are not the ones deposited with it,
   seen by a concurrent reader or on read-back): 0 expected.
3. Arrow IPC transfer of 4V5A (290,487 atoms): ``connect(url).get("4V5A")`` against
   ``moldb.open(store).get("4V5A")`` in this process. Throughput ratio local time / remote time
   (goal >= 0.5x).

The service is started by this script (``moldb serve --workers W``, uvicorn, loopback) against a
temporary local store; the client and the service share this machine's cores. Every timing is a
median over repetitions after a discarded warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
from _common import DATA
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import moldb
from tests._service import Service, make_token

console = Console(width=150)

QUERY_ENTRIES = ["mmcif/1o1z.cif.gz", "mmcif/3o5r.cif.gz", "mmcif/1aki.cif.gz", "mmcif/1dix.cif.gz",
                 "mmcif/1k6p.cif.gz", "mmcif/4cxl.cif.gz"]
QUERY = "chain A and resi 10-20"
DEP_SRC = "mmcif/1crn.cif.gz"  # 327 atoms: the deposition target (B-factor re-refinements)
DEP_ENTRY = "1CRN"
BIG = "mmtf/4V5A.mmtf"
BIG_ENTRY = "4V5A"


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``."""
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# -- setup ----------------------------------------------------------------------------------------------
def build_store(root: Path) -> Path:
    """An empty local store."""
    path = root / "store"
    moldb.create(path).close()
    return path


def load_entries(url: str, token: str) -> list[str]:
    """Ingest the query entries, the deposition target and 4V5A through the service (lab of ``token``)."""
    ids = []
    with moldb.connect(url, token=token, timeout=300) as s:
        for rel in QUERY_ENTRIES:
            ids.append(s.ingest(DATA / rel).entry)
        s.ingest(DATA / DEP_SRC)
        s.ingest(DATA / BIG)
    return ids


def deposition_files(root: Path, n_dep: int, per_dep: int) -> tuple[np.ndarray, dict[tuple[int, int], Path]]:
    """The base B-factors of 1CRN and one mmCIF per (depositor, k) with B + shift(d, k)."""
    doc = gemmi.cif.read(str(DATA / DEP_SRC))
    block = doc.sole_block()
    col = block.find_values("_atom_site.B_iso_or_equiv")
    base = np.array([float(col[i]) for i in range(len(col))])
    out = {}
    d_dir = root / "deposits"
    d_dir.mkdir()
    for d in range(n_dep):
        for k in range(per_dep):
            b = base + shift(d, k)
            for i in range(len(col)):
                col[i] = f"{b[i]:.2f}"
            p = d_dir / f"1crn_d{d}_k{k}.cif"
            doc.write_file(str(p))
            out[(d, k)] = p
    return base, out


def shift(d: int, k: int) -> float:
    """The B-factor shift of deposition k of depositor d (unique per deposition)."""
    return round((d * 1000 + k + 1) * 0.01, 2)


def parse_message(msg: str) -> tuple[int, int] | None:
    """(depositor, k) from a deposition message ``bench d{d} k{k}``."""
    parts = msg.split()
    if len(parts) == 3 and parts[0] == "bench":
        return int(parts[1][1:]), int(parts[2][1:])
    return None


# -- figure 1 -------------------------------------------------------------------------------------------
def query_load(url: str, tokens: list[str], entries: list[str], seconds: float) -> dict[str, Any]:
    """Closed-loop query load: each client sends its next query as soon as the last one answered."""
    lat: list[list[float]] = [[] for _ in tokens]
    errors: Counter[str] = Counter()
    rows: list[int] = []
    start = threading.Barrier(len(tokens) + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        with moldb.connect(url, token=tokens[i]) as s:
            for e in entries:  # warm-up: connection, caches
                rows.append(s.select(QUERY, entries=e).to_arrow().num_rows)
            start.wait()
            j = i
            while time.perf_counter() < stop_at[0]:
                e = entries[j % len(entries)]
                j += 1
                t0 = time.perf_counter()
                try:
                    s.select(QUERY, entries=e).to_arrow()
                except moldb.MoldbError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                lat[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 1e9
    start.wait()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    all_lat = [x for part in lat for x in part]
    return {"clients": len(tokens), "seconds": wall, "queries": len(all_lat), "qps": len(all_lat) / wall,
            "p50_ms": pct(all_lat, 50) * 1e3, "p99_ms": pct(all_lat, 99) * 1e3, "errors": dict(errors),
            "rows_per_query": sorted(set(rows))}


# -- figure 2 -------------------------------------------------------------------------------------------
def deposit_load(url: str, dep_tokens: list[tuple[str, str]], reader_tokens: list[str], base: np.ndarray,
                 files: dict[tuple[int, int], Path], per_dep: int) -> dict[str, Any]:
    """Concurrent depositions with readers; then verify every version."""
    sent: dict[tuple[int, int], moldb.VersionInfo] = {}
    dep_errors: Counter[str] = Counter()
    torn_live: list[str] = []
    reads = Counter[str]()
    done = threading.Event()
    lock = threading.Lock()
    dep_lat: list[float] = []

    def depositor(d: int) -> None:
        _user, token = dep_tokens[d]
        with moldb.connect(url, token=token, timeout=120) as s:
            for k in range(per_dep):
                msg = f"bench d{d} k{k}"
                for _attempt in range(20):
                    t0 = time.perf_counter()
                    try:
                        v = s.deposit(files[(d, k)], entry=DEP_ENTRY, message=msg)
                    except (moldb.ConcurrencyError, moldb.RateLimitedError) as exc:  # nothing committed: retry
                        with lock:
                            dep_errors[type(exc).__name__] += 1
                        time.sleep(0.05)
                        continue
                    except moldb.ServiceError as exc:  # ambiguous: look before retrying
                        with lock:
                            dep_errors[type(exc).__name__] += 1
                        hit = [h for h in s.history(DEP_ENTRY) if h.message == msg]
                        if hit:
                            v = hit[0]
                        else:
                            continue
                    with lock:
                        dep_lat.append(time.perf_counter() - t0)
                        sent[(d, k)] = v
                    break

    def check(s: Any, v: moldb.VersionInfo, b: np.ndarray) -> str | None:
        key = parse_message(v.message)
        if v.version == 1:
            want = base
        elif key is None:
            return f"v{v.version}: unexpected message {v.message!r}"
        else:
            want = base + shift(*key)
        if b.shape != want.shape or not np.allclose(b, want, atol=0.006):
            return f"v{v.version} ({v.message}): B-factors are not the ones deposited with it"
        return None

    def reader(i: int) -> None:
        with moldb.connect(url, token=reader_tokens[i]) as s:
            while not done.is_set():
                st = s.get(DEP_ENTRY, columns=["B_iso_or_equiv"])
                problem = check(s, st.version, st.atoms.column("B_iso_or_equiv").to_numpy())
                s.select(QUERY, entries=DEP_ENTRY).to_arrow()
                with lock:
                    reads["get+select"] += 1
                    if problem:
                        torn_live.append(problem)

    deps = [threading.Thread(target=depositor, args=(d,)) for d in range(len(dep_tokens))]
    rds = [threading.Thread(target=reader, args=(i,)) for i in range(len(reader_tokens))]
    t0 = time.perf_counter()
    for t in deps + rds:
        t.start()
    for t in deps:
        t.join()
    wall = time.perf_counter() - t0
    done.set()
    for t in rds:
        t.join()

    # verification: history against what was sent, then every version read back
    with moldb.connect(url, token=reader_tokens[0]) as s:
        hist = s.history(DEP_ENTRY)
        numbers = [h.version for h in hist]
        by_msg = Counter(h.message for h in hist)
        expected = {(d, k) for d in range(len(dep_tokens)) for k in range(per_dep)}
        lost = sorted(key for key in expected if by_msg[f"bench d{key[0]} k{key[1]}"] == 0)
        duplicated = sorted(m for m, n in by_msg.items() if n > 1)
        dup_numbers = len(numbers) - len(set(numbers))
        gaps = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        mismatched = []
        by_version = {h.version: h for h in hist}
        users = dict(dep_tokens)
        for (d, _k), v in sent.items():
            h = by_version.get(v.version)
            if h is None or h.message != v.message or h.content_hash != v.content_hash:
                mismatched.append(f"{v.message}: sent v{v.version} {v.content_hash[:12]}, history has "
                                  f"{None if h is None else (h.message, h.content_hash[:12])}")
            elif h.author and h.author != f"dep{d}" and users:
                mismatched.append(f"{v.message}: author {h.author!r}, expected dep{d}")
        torn_back = []
        for h in hist:
            st = s.get(DEP_ENTRY, version=h.version, columns=["B_iso_or_equiv"])
            if st.version.content_hash != h.content_hash:
                torn_back.append(f"v{h.version}: content hash {st.version.content_hash[:12]} != history's")
            problem = check(s, h, st.atoms.column("B_iso_or_equiv").to_numpy())
            if problem:
                torn_back.append(problem)
    return {"depositors": len(dep_tokens), "per_depositor": per_dep, "readers": len(reader_tokens),
            "seconds": wall, "deposits_committed": len(sent), "deposits_per_s": len(sent) / wall,
            "deposit_p50_ms": pct(dep_lat, 50) * 1e3, "deposit_p99_ms": pct(dep_lat, 99) * 1e3,
            "versions_in_history": len(hist), "lost": len(lost), "duplicated": len(duplicated) + dup_numbers,
            "gaps": len(gaps), "mismatched": len(mismatched), "torn_reads_live": len(torn_live),
            "torn_reads_readback": len(torn_back), "reads_during_load": reads["get+select"],
            "deposit_errors_retried": dict(dep_errors),
            "problems": (lost[:5] and [f"lost {x}" for x in lost[:5]]) + duplicated[:5] + mismatched[:5]
            + torn_live[:5] + torn_back[:5]}


# -- figure 3 -------------------------------------------------------------------------------------------
def transfer(url: str, token: str, store_path: Path, reps: int) -> dict[str, Any]:
    """Remote ``get`` of 4V5A over Arrow IPC against a local ``get`` (medians after a warm-up)."""
    local = moldb.open(store_path)
    remote = moldb.connect(url, token=token)

    # interleaved, so that both sides see the same load on this shared machine
    s_local, s_remote = local.get(BIG_ENTRY), remote.get(BIG_ENTRY)  # warm-up
    tl, tr = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        s_local = local.get(BIG_ENTRY)
        tl.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        s_remote = remote.get(BIG_ENTRY)
        tr.append(time.perf_counter() - t0)
    t_local, t_remote = statistics.median(tl), statistics.median(tr)
    same = s_local.atoms.num_rows == s_remote.atoms.num_rows and s_local.atoms.column_names == \
        s_remote.atoms.column_names
    if same:
        same = all(s_local.atoms.column(c).equals(s_remote.atoms.column(c)) for c in s_local.atoms.column_names)
    nbytes = s_remote.atoms.nbytes
    local.close()
    remote.close()
    return {"atoms": s_remote.atoms.num_rows, "columns": s_remote.atoms.num_columns, "table_mb": nbytes / 1e6,
            "local_s": t_local, "remote_s": t_remote, "local_mb_s": nbytes / 1e6 / t_local,
            "remote_mb_s": nbytes / 1e6 / t_remote, "ratio": t_local / t_remote, "identical": bool(same)}


# -- main -------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 s query load, 8 x 10 depositions, 3 transfer reps")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes of `moldb serve`")
    ap.add_argument("--clients", type=int, default=16, help="concurrent query clients (figure 1)")
    ap.add_argument("--seconds", type=float, default=None, help="query load duration (default 20, quick 5)")
    ap.add_argument("--depositions", type=int, default=None, help="per depositor (default 50, quick 10)")
    ap.add_argument("--reps", type=int, default=None, help="transfer repetitions (default 10, quick 3)")
    ap.add_argument("--serve-args", default="", help="extra `moldb serve` flags, space separated")
    ap.add_argument("--only", choices=["query", "deposit", "transfer"], default=None)
    ap.add_argument("--out", default="bench_service.json", help="JSON with every number")
    ap.add_argument("--workdir", default=None, help="keep the store and service log here")
    args = ap.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    per_dep = args.depositions or (10 if args.quick else 50)
    reps = args.reps or (3 if args.quick else 10)
    n_dep, n_readers = 8, 4

    tmp = None
    if args.workdir:
        root = Path(args.workdir)
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="moldb-bench-service-")
        root = Path(tmp.name)
    t0 = time.perf_counter()
    store_path = build_store(root)
    base, files = deposition_files(root, n_dep, per_dep)
    readers = [make_token(store_path, f"reader{i}", lab="bench", role="reader")
               for i in range(max(args.clients, n_readers))]
    deps = [(f"dep{d}", make_token(store_path, f"dep{d}", lab="bench", role="depositor")) for d in range(n_dep)]
    console.print(f"setup: {time.perf_counter() - t0:.1f} s ({len(readers)} reader and {n_dep} depositor tokens, "
                  f"{n_dep * per_dep} deposition files)")
    serve_args = ["--workers", str(args.workers), *args.serve_args.split()]
    res: dict[str, Any] = {"config": {"workers": args.workers, "serve_args": serve_args, "clients": args.clients,
                                      "python": platform.python_version(), "cpus": os.cpu_count(),
                                      "quick": args.quick}}
    with Service(store_path, root / "serve.log", args=serve_args) as svc:
        res["config"]["url"] = svc.url
        t1 = time.perf_counter()
        ids = load_entries(svc.url, deps[0][1])
        console.print(f"ingested {', '.join(ids)}, {DEP_ENTRY}, {BIG_ENTRY} through the service in "
                      f"{time.perf_counter() - t1:.1f} s")
        if args.only in (None, "query"):
            res["query"] = query_load(svc.url, readers[:args.clients], ids, seconds)
        if args.only in (None, "deposit"):
            res["deposit"] = deposit_load(svc.url, deps, readers[:n_readers], base, files, per_dep)
        if args.only in (None, "transfer"):
            res["transfer"] = transfer(svc.url, readers[0], store_path, reps)
    if args.only in (None, "query", "transfer"):  # figures 1 and 3 again with the service's response cache off:
        # every request re-reads and re-encodes, as the first request for a (query, version) does
        with Service(store_path, root / "serve-nocache.log",
                     args=[*serve_args, "--response-cache-mb", "0"]) as svc:
            if args.only in (None, "query"):
                res["query_uncached"] = query_load(svc.url, readers[:args.clients], ids, seconds)
            if args.only in (None, "transfer"):
                res["transfer_uncached"] = transfer(svc.url, readers[0], store_path, reps)
    report(res)
    Path(args.out).write_text(json.dumps(res, indent=2, default=str))
    console.print(f"every number: {args.out}")
    if tmp is not None:
        tmp.cleanup()


def report(res: dict[str, Any]) -> None:
    """Print one table of figures, goals and verdicts."""
    t = Table(title=f"moldb service on loopback ({res['config']['workers']} uvicorn worker(s), "
                    f"{res['config']['cpus']} CPUs shared with the client)", title_justify="left")
    for c, just in (("figure", "left"), ("measured", "right"), ("goal", "right"), ("", "left")):
        t.add_column(c, justify=just)  # type: ignore[arg-type]

    def ok(b: bool) -> str:
        return "[green]met[/]" if b else "[red]missed[/]"

    if "query" in res:
        q = res["query"]
        t.add_row(f"1. small selections, {q['clients']} clients: queries/s", f"{q['qps']:.0f}", ">= 300",
                  ok(q["qps"] >= 300))
        t.add_row("   p50 latency (ms)", f"{q['p50_ms']:.1f}", "", "")
        t.add_row("   p99 latency (ms)", f"{q['p99_ms']:.1f}", "<= 100", ok(q["p99_ms"] <= 100))
        t.add_row("   errors", str(sum(q["errors"].values())), "0", ok(not q["errors"]))
    if "query_uncached" in res:
        q = res["query_uncached"]
        t.add_row("   same, service response cache off: queries/s", f"{q['qps']:.0f}", "", "")
        t.add_row("   p50 / p99 latency (ms), cache off", f"{q['p50_ms']:.1f} / {q['p99_ms']:.1f}", "", "")
    if "deposit" in res:
        d = res["deposit"]
        t.add_row(f"2. {d['depositors']} depositors x {d['per_depositor']}, {d['readers']} readers: committed",
                  f"{d['deposits_committed']}", f"{d['depositors'] * d['per_depositor']}",
                  ok(d["deposits_committed"] == d["depositors"] * d["per_depositor"]))
        t.add_row("   deposits/s; p50 / p99 deposit latency (ms)",
                  f"{d['deposits_per_s']:.1f}; {d['deposit_p50_ms']:.0f} / {d['deposit_p99_ms']:.0f}", "", "")
        for k in ("lost", "duplicated", "gaps", "mismatched", "torn_reads_live", "torn_reads_readback"):
            t.add_row(f"   {k.replace('_', ' ')}", str(d[k]), "0", ok(d[k] == 0))
        t.add_row("   reads during the load", str(d["reads_during_load"]), "", "")
    if "transfer" in res:
        x = res["transfer"]
        t.add_row(f"3. 4V5A ({x['atoms']:,} atoms, {x['table_mb']:.0f} MB Arrow): local get (s)",
                  f"{x['local_s']:.3f}", "", f"{x['local_mb_s']:.0f} MB/s")
        t.add_row("   remote get over Arrow IPC (s)", f"{x['remote_s']:.3f}", "", f"{x['remote_mb_s']:.0f} MB/s")
        t.add_row("   throughput remote / local", f"{x['ratio']:.2f}x", ">= 0.5x", ok(x["ratio"] >= 0.5))
        t.add_row("   remote table identical to local", str(x["identical"]), "True", ok(x["identical"]))
    if "transfer_uncached" in res:
        x = res["transfer_uncached"]
        t.add_row("   same, service response cache off: remote (s)", f"{x['remote_s']:.3f}", "",
                  f"{x['remote_mb_s']:.0f} MB/s")
        t.add_row("   throughput remote / local (cache off)", f"{x['ratio']:.2f}x", "", "")
    console.print(t)
    if res.get("deposit", {}).get("problems"):
        console.print("problems:", res["deposit"]["problems"])


if __name__ == "__main__":
    main()
