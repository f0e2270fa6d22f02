#!/usr/bin/env python
"""moldb foundation benchmarks: bytes on disk, full-entry read, ingest throughput, peak memory.

    python benchmarks/bench_foundation.py [--quick] [--entries N] [--reps R] [--out results.json] [--profile]

Timings are medians over repeated runs; every peer (gzip'd BinaryCIF/MMTF, gemmi, biotite,
mmtf-python) is measured in the same run. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import hashlib
import io
import json
import os
import pickle
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tiledb
from _common import DATA, median_time
from biotite.structure.io import pdbx
from rich.console import Console
from rich.table import Table

import moldb
from moldb.api.bulk import default_workers
from moldb.ingest.formats import read_file
from moldb.schema.parsed import Category, ParsedEntry

READ_TARGETS = ("5eil", "1o1z", "1xnr")
INGEST_FILES = ("mmcif/5eil.cif.gz", "mmcif/1xnr.cif.gz", "mmcif/4zxb.cif.gz", "mmtf/4V5A.mmtf")
BIG_SOURCE = DATA / "mmtf" / "4V5A.mmtf"
REPEAT_MAX_ATOMS = 100_000  # corpus files above this are ingested once into the read store, not repeated
console = Console(width=150)


# -- helpers ------------------------------------------------------------------------------------------------


def stem(path: Path) -> str:
    return path.name.split(".")[0].lower()


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def ms(x: float | None) -> float | None:
    return None if x is None else x * 1e3


def show(title: str, cols: Sequence[str], rows: list[list[Any]], specs: Sequence[str], note: str = "") -> None:
    table = Table(title=title, caption=note or None, caption_justify="left", title_justify="left")
    for i, c in enumerate(cols):
        table.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*["-" if v is None else format(v, s) if s else str(v) for v, s in zip(r, specs, strict=True)])
    console.print(table)


def consolidate(store: Path) -> float:
    """Consolidate + vacuum fragments, then consolidate fragment metadata, on every array of the store."""
    t0 = time.perf_counter()
    meta = tiledb.Config({"sm.consolidation.mode": "fragment_meta"})
    for name in store_bytes(store):  # the store's arrays, whatever the storage layout
        uri = str(store / name)
        tiledb.consolidate(uri)
        tiledb.vacuum(uri)
        tiledb.consolidate(uri, config=meta)
    return time.perf_counter() - t0


def store_bytes(store: Path) -> dict[str, int]:
    with moldb.open(store) as st:
        return st.disk_usage()


def gz_size(path: Path) -> int:
    data = path.read_bytes()
    return len(data) if data[:2] == b"\x1f\x8b" else len(gzip.compress(data, compresslevel=9))


def code_version() -> dict[str, Any]:
    """Which moldb was measured: the imported package's path and source hash, and the repository's HEAD."""
    pkg, h = Path(moldb.__file__).parent, hashlib.sha256()
    for p in sorted(pkg.rglob("*.py")):
        h.update(p.read_bytes())
    git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run([*git, "status", "--porcelain", "moldb"], capture_output=True, text=True, check=False)
    return {"moldb_path": str(pkg), "moldb_sources_sha256": h.hexdigest()[:16], "git_head": head.stdout.strip(),
            "git_uncommitted": dirty.stdout.split("\n")[:-1]}


def maxrss() -> int:
    """Peak RSS of this process so far, in bytes.

    Linux carries a parent's peak across fork + exec into the child's ``ru_maxrss`` (a child of a
    4 GB parent starts at 4 GB), so read the address space's own high-water mark (VmHWM) where it exists.
    """
    status = Path("/proc/self/status")
    if status.exists():
        return next(int(ln.split()[1]) * 1024 for ln in status.read_text().splitlines() if ln.startswith("VmHWM:"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


# -- figure 1: bytes on disk -----------------------------------------------------------------------------
def store_of(paths: Sequence[Path], d: Path, base: dict[str, int],
             per_entry: list[int] | None = None) -> tuple[dict[str, int], list[int]]:
    """Ingest ``paths`` into a fresh store, consolidate; bytes per array over the empty store, atom counts.

    With ``per_entry``, also append each entry's share of the consolidated store: the store's bytes
    split in proportion to the entries' own block payloads (derived data — spatial index,
    groupings — scales with the entry; shared TileDB metadata is spread the same way).
    """
    try:
        with moldb.create(d) as st:
            versions = [st.ingest(p, entry=f"e{i}") for i, p in enumerate(paths)]
        consolidate(d)
        arrays = {k: v - base[k] for k, v in store_bytes(d).items()}
        if per_entry is not None:  # every cell of an entry, chunk cells of large entries included
            with tiledb.open(str(d / "blocks")) as arr:
                cells = arr.query(attrs=["entry", "data"])[:]
            by_entry: dict[str, int] = {}
            for e, blob in zip(cells["entry"], cells["data"], strict=True):
                key = e.decode() if isinstance(e, bytes) else str(e)
                by_entry[key] = by_entry.get(key, 0) + len(blob)
            own = [by_entry.get(v.entry, 0) for v in versions]
            scale = sum(arrays.values()) / max(1, sum(own))
            per_entry.extend(int(o * scale) for o in own)
        return arrays, [v.n_atoms for v in versions]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def fig_bytes(work: Path) -> dict[str, Any]:
    empty = work / "empty"
    shutil.rmtree(empty, ignore_errors=True)  # a reused --workdir
    moldb.create(empty).close()
    consolidate(empty)
    base = store_bytes(empty)
    mmtf_by_id = {stem(p).split("-")[0]: p for p in sorted((DATA / "mmtf").glob("*.mmtf"), reverse=True)}
    out: dict[str, Any] = {"empty_store": base}
    for fig, key, fmt in (("1a", "bcif", "BinaryCIF"), ("1b", "mmtf", "MMTF")):
        rows: list[dict[str, Any]] = []
        skipped: list[str] = []
        for path in sorted((DATA / key).glob(f"*.{key}*")):
            if path.name.startswith("empty"):  # mmtf/empty-*: 0-atom edge cases
                continue
            try:
                arrays, (atoms,) = store_of([path], work / "size_one", base)
            except moldb.MoldbError as exc:
                skipped.append(f"{path.name}: {str(exc).splitlines()[0][:150]}")
                continue
            twin = mmtf_by_id.get(stem(path).split("_")[0]) if key == "bcif" else None
            rows.append({"file": path.name, "atoms": atoms, "moldb": sum(arrays.values()), "arrays": arrays,
                         "ref_gz": gz_size(path), "mmtf_gz": gz_size(twin) if twin else None})
        shared: list[int] = []
        arrays, counts = store_of([DATA / key / r["file"] for r in rows], work / "size_all", base, shared)
        for r, b in zip(rows, shared, strict=True):
            r["shared"] = b
        rows.append({"file": f"all {len(rows)} in one store", "atoms": sum(counts), "moldb": sum(arrays.values()),
                     "arrays": arrays, "ref_gz": sum(r["ref_gz"] for r in rows), "mmtf_gz": None,
                     "shared": sum(arrays.values())})
        for r in rows:
            r["ratio"], r["ratio_mmtf_gz"] = r["moldb"] / r["ref_gz"], ratio(r["moldb"], r["mmtf_gz"])
            r["ratio_shared"] = r["shared"] / r["ref_gz"]
        med = statistics.median(r["ratio"] for r in rows[:-1])
        med_shared = statistics.median(r["ratio_shared"] for r in rows[:-1])
        share = {a: v / rows[-1]["moldb"] for a, v in arrays.items()}
        out[key] = {"rows": rows, "median_ratio": med, "median_ratio_shared": med_shared,
                    "one_store_ratio": rows[-1]["ratio"], "array_share": share, "skipped": skipped}
        twins = key == "bcif" and any(r["mmtf_gz"] for r in rows)
        keys = ["file", "atoms", "moldb", "ref_gz", "ratio", "shared", "ratio_shared"]
        keys += ["mmtf_gz", "ratio_mmtf_gz"] if twins else []
        note = (f"moldb = bytes of a store holding only that entry (ingested from its {fmt}) after consolidate + "
                f"vacuum + fragment_meta consolidation, minus the empty store;\nin store = the entry's share of "
                f"one consolidated store holding all of them (store bytes split by the entries' own blocks);\n"
                f"{key}.gz = the file if gzipped, "
                f"else gzip -9 of it. Last row: all entries above in one store; its bytes by array: "
                + ", ".join(f"{a} {v:.0%}" for a, v in share.items()))
        if key == "bcif" and not twins:
            note += "\nNo BinaryCIF entry has an MMTF twin in mmtf/ (the ids differ), so MMTF gets figure 1b."
        note += "".join(f"\nSkipped (moldb cannot ingest it): {s}" for s in skipped)
        show(f"Figure {fig} — bytes on disk per entry vs {fmt}.gz (goal ≤ 1.0× BinaryCIF.gz)",
             ["file", "atoms", "alone B", f"{key}.gz B", f"alone/{key}.gz", "in store B", f"in store/{key}.gz",
              "mmtf.gz B", "moldb/mmtf.gz"][:len(keys)],
             [[r[k] for k in keys] for r in rows] + [["median (per entry)", None, None, None, med, None, med_shared,
                                                     None, None][:len(keys)]],
             ["", ",d", ",d", ",d", ".2f", ",d", ".2f", ",d", ".2f"][:len(keys)], note)
    return out


# -- figure 2: full-entry read -----------------------------------------------------------------------------
def build_store(path: Path, n: int) -> dict[str, Any]:
    """Ingest 4V5A once, then the mmCIF + BinaryCIF corpus round-robin under new ids up to ``n`` entries."""
    files = sorted((DATA / "mmcif").glob("*.cif*")) + sorted((DATA / "bcif").glob("*.bcif*"))
    skipped: dict[str, str] = {}
    src_gz: dict[Path, int] = {}
    t0 = time.perf_counter()
    with moldb.create(path) as st:
        atoms, count, k, ingested_gz = st.ingest(BIG_SOURCE, entry="4V5A").n_atoms, 1, 0, gz_size(BIG_SOURCE)
        while count < n and files:
            for f in list(files):
                if count >= n:
                    break
                try:
                    info = st.ingest(f, entry=f"{stem(f)}_{'b' if '.bcif' in f.name else 'c'}{k}")
                except moldb.MoldbError as exc:
                    skipped[f.name] = str(exc).splitlines()[0][:150]
                    files.remove(f)
                    continue
                count, atoms = count + 1, atoms + info.n_atoms
                ingested_gz += src_gz.setdefault(f, gz_size(f))
                if info.n_atoms > REPEAT_MAX_ATOMS:
                    files.remove(f)
                if count % 100 == 0:
                    el = time.perf_counter() - t0
                    console.print(f"  {count}/{n} entries in {el:.0f} s (eta {el / count * (n - count):.0f} s)")
            k += 1
    build_s = time.perf_counter() - t0
    cons_s = consolidate(path)
    size = sum(store_bytes(path).values())
    console.print(f"built {count} entries ({atoms:,} atoms) in {build_s:.0f} s ({build_s / count:.2f} s/entry); "
                  f"consolidated in {cons_s:.1f} s; {size / 1e6:.1f} MB on disk = {size / ingested_gz:.2f}× the "
                  f"ingested files gzipped ({ingested_gz / 1e6:.1f} MB); skipped: {skipped or 'none'}")
    return {"entries": count, "atoms": atoms, "build_s": build_s, "consolidate_s": cons_s, "bytes": size,
            "ingested_files_gz_bytes": ingested_gz, "skipped": skipped}


def exported(parsed: ParsedEntry, path: Path) -> Path | None:
    """Write ``parsed`` with moldb's exporter (peer input where no such file exists), if it is available."""
    try:
        from moldb.export import write
    except ImportError:
        return None
    return write(parsed, path)


def get_atoms(st: moldb.Store, eid: str) -> pa.Table:
    return st.get(eid).atoms


def warm_time(st: moldb.Store, eid: str, reps: int) -> float:
    """Median ``store.get(eid).atoms`` with the block cache at its default size (256 MB)."""
    from moldb.storage.block_cache import shared_cache

    shared_cache.max_bytes = 256 << 20
    try:
        return median_time(partial(get_atoms, st, eid), reps)
    finally:
        shared_cache.clear()
        shared_cache.max_bytes = 0


def ingest_next(st: moldb.Store, path: Path, ids: Iterator[int]) -> moldb.VersionInfo:
    return st.ingest(path, entry=f"e{next(ids)}")


def biotite_read(path: Path) -> Any:
    return pdbx.get_structure(pdbx.BinaryCIFFile.read(str(path)), model=1)


def fig_read(work: Path, n: int, reps: int) -> dict[str, Any]:
    store = work / "read_store"
    build = build_store(store, n)
    targets: list[tuple[str, str, Path | None, Path | None]] = [
        (s.upper(), f"{s}_c0", DATA / "mmcif" / f"{s}.cif.gz", DATA / "bcif" / f"{s}.bcif") for s in READ_TARGETS]
    big = read_file(BIG_SOURCE)
    targets.append(("4V5A", "4V5A", exported(big, work / "4v5a.cif.gz"), exported(big, work / "4v5a.bcif")))
    rows = []
    with moldb.open(store) as st:
        for name, eid, cif, bcif in targets:
            t = median_time(partial(get_atoms, st, eid), reps)
            tw = warm_time(st, eid, reps)
            tg = median_time(partial(gemmi.read_structure, str(cif)), reps) if cif else None
            tb = median_time(partial(biotite_read, bcif), reps) if bcif and bcif.exists() else None
            rows.append({"entry": name, "id": eid, "atoms": st.get(eid).atoms.num_rows, "moldb_s": t,
                         "moldb_cached_s": tw, "gemmi_s": tg, "biotite_s": tb, "gemmi_over_moldb": ratio(tg, t),
                         "biotite_over_moldb": ratio(tb, t), "gemmi_over_cached": ratio(tg, tw),
                         "biotite_over_cached": ratio(tb, tw)})
    show(f"Figure 2 — full-entry read from a store of {build['entries']} entries (warm, median of {reps}; "
         "goals gemmi/moldb ≥ 10×, biotite/moldb ≥ 3×)",
         ["entry", "atoms", "moldb get ms", "moldb cached ms", "gemmi ms", "biotite ms", "gemmi/moldb",
          "biotite/moldb", "gemmi/cached", "biotite/cached"],
         [[r["entry"], r["atoms"], ms(r["moldb_s"]), ms(r["moldb_cached_s"]), ms(r["gemmi_s"]), ms(r["biotite_s"]),
           r["gemmi_over_moldb"], r["biotite_over_moldb"], r["gemmi_over_cached"], r["biotite_over_cached"]]
          for r in rows], ["", ",d", ".2f", ".2f", ".1f", ".1f", ".2f", ".2f", ".2f", ".2f"],
         "moldb: store.get(id).atoms, all models and columns; 'get': every call one TileDB query (block cache "
         "off); 'cached': moldb's default 256 MB block cache holding the entry's compressed blocks (the analogue "
         "of the peers' files in the page cache: every call still decodes every column).\n"
         "gemmi: read_structure(.cif.gz). biotite: "
         "BinaryCIFFile.read(.bcif) + get_structure(model=1).\n4V5A peers read files that moldb.export wrote "
         "from 4V5A.mmtf (no mmCIF/BinaryCIF of it in the corpus); 1XNR has no BinaryCIF.")
    return {"build": build, "reps": reps, "rows": rows}


# -- figure 3: ingest throughput ---------------------------------------------------------------------------
def fig_ingest(work: Path, reps: int) -> dict[str, Any]:
    rows = []
    for rel in INGEST_FILES:
        path, ids = DATA / rel, iter(range(10**6))
        with moldb.create(work / f"ingest_{path.name}") as st:
            t_ing = median_time(partial(ingest_next, st, path, ids), reps)
            n_atoms = st.get("e0").atoms.num_rows
        t_parse = median_time(partial(read_file, path), reps)
        peer, t_peer = "gemmi.read_structure", None
        if path.suffix == ".mmtf":
            try:
                import mmtf

                peer, t_peer = "mmtf-python parse", median_time(partial(mmtf.parse, str(path)), reps)
            except ImportError:
                peer = "none: gemmi reads no MMTF, mmtf-python absent"
        else:
            t_peer = median_time(partial(gemmi.read_structure, str(path)), reps)
        rows.append({"file": path.name, "atoms": n_atoms, "ingest_s": t_ing, "parse_s": t_parse,
                     "commit_s": t_ing - t_parse, "peer": peer, "peer_s": t_peer,
                     "ingest_atoms_per_s": n_atoms / t_ing, "ratio_ingest_over_peer": ratio(t_ing, t_peer)})
    corpus = fig_ingest_corpus(work, max(3, reps // 4))
    show(f"Figure 3 — ingest throughput (median of {reps}; goal ingest/peer parse ≤ 2×)",
         ["file", "atoms", "ingest ms", "atoms/s", "moldb parse ms", "commit ms", "peer", "peer ms", "ingest/peer"],
         [[r["file"], r["atoms"], ms(r["ingest_s"]), r["ingest_atoms_per_s"], ms(r["parse_s"]), ms(r["commit_s"]),
           r["peer"], ms(r["peer_s"]), r["ratio_ingest_over_peer"]] for r in rows],
         ["", ",d", ",.0f", ",.0f", ",.0f", ",.0f", "", ",.0f", ".2f"],
         "ingest = store.ingest(file) into a store made for that file (parse + encode + commit); moldb parse = "
         "moldb.ingest.formats.read_file alone; commit = ingest − parse.")
    c = corpus
    show(f"Figure 3b — bulk ingest of the whole mmCIF corpus ({c['files']} files, {c['atoms']:,} atoms; median of "
         f"{c['reps']})", ["how", "s", "atoms/s", "gemmi s", "ingest/gemmi"],
         [[f"store.ingest_many ({c['workers']} parse threads, one commit per 64 files)", c["bulk_s"],
           c["atoms"] / c["bulk_s"], c["gemmi_s"], c["bulk_over_gemmi"]],
          ["store.ingest_many(workers=1)", c["bulk1_s"], c["atoms"] / c["bulk1_s"], c["gemmi_s"],
           c["bulk1_over_gemmi"]],
          ["store.ingest, file by file", c["single_s"], c["atoms"] / c["single_s"], c["gemmi_s"],
           c["single_over_gemmi"]],
          ["moldb parse alone (read_file)", c["parse_s"], c["atoms"] / c["parse_s"], c["gemmi_s"],
           ratio(c["parse_s"], c["gemmi_s"])]],
         ["", ".2f", ",.0f", ".2f", ".2f"],
         "gemmi = gemmi.read_structure over the same files, one after another; each moldb run ingests into a new "
         "store.")
    return {"reps": reps, "rows": rows, "corpus": corpus}


def fig_ingest_corpus(work: Path, reps: int) -> dict[str, Any]:
    """Every ``mmcif/*.cif.gz`` file: ``ingest_many`` vs ``ingest`` one by one vs gemmi's parse of each."""
    files = sorted((DATA / "mmcif").glob("*.cif.gz"))
    runs = iter(range(10**6))

    def fresh() -> moldb.Store:
        d = work / f"corpus_{next(runs)}"
        shutil.rmtree(d, ignore_errors=True)
        return moldb.create(d)

    def bulk(workers: int | None = None) -> moldb.IngestReport:
        with fresh() as st:
            return st.ingest_many(files, workers=workers)

    def single() -> None:
        with fresh() as st:
            for f in files:
                st.ingest(f)

    report = bulk()
    assert not report.failed, report.failed
    out = {"files": len(files), "atoms": report.n_atoms, "reps": reps, "bulk_s": median_time(bulk, reps),
           "workers": default_workers(), "bulk1_s": median_time(partial(bulk, 1), reps),
           "single_s": median_time(single, reps),
           "parse_s": median_time(lambda: [read_file(f) for f in files], reps),
           "gemmi_s": median_time(lambda: [gemmi.read_structure(str(f)) for f in files], reps)}
    for d in work.glob("corpus_*"):
        shutil.rmtree(d, ignore_errors=True)
    out["bulk_over_gemmi"] = ratio(out["bulk_s"], out["gemmi_s"])
    out["bulk1_over_gemmi"] = ratio(out["bulk1_s"], out["gemmi_s"])
    out["single_over_gemmi"] = ratio(out["single_s"], out["gemmi_s"])
    return out


# -- figure 4: peak memory -----------------------------------------------------------------------------------
def tile_entry(parsed: ParsedEntry, copies: int) -> ParsedEntry:
    """``copies`` copies of the atoms, x shifted 400 Å per copy, ids renumbered, chain ids suffixed ``_<copy>``."""
    t, parts = parsed.atoms.combine_chunks(), []
    n = t.num_rows
    for c in range(copies):
        cols: dict[str, Any] = {}
        for name in t.column_names:
            col = t.column(name).combine_chunks()
            if name == "Cartn_x":
                col = pc.add(col, 400.0 * c)
            elif name == "id":
                col = pa.array(np.arange(c * n + 1, (c + 1) * n + 1, dtype=np.int64))
            elif name in ("label_asym_id", "auth_asym_id"):  # moldb readers give dictionary columns
                col = col if pa.types.is_dictionary(col.type) else col.dictionary_encode()
                suffixed = pa.array([f"{v}_{c}" for v in col.dictionary.to_pylist()], type=col.type.value_type)
                col = pa.DictionaryArray.from_arrays(col.indices, suffixed)
            cols[name] = col
        parts.append(pa.table(cols))
    atoms = pa.concat_tables(parts).unify_dictionaries().combine_chunks()
    cats = [Category(cat.name, pa.concat_tables([cat.table] * copies),
                     masks={k: np.tile(v, copies) for k, v in cat.masks.items()})
            if cat.name == "atom_site" and cat.table.num_rows == n else cat for cat in parsed.categories]
    return replace(parsed, entry_id="BIG8", atoms=atoms, categories=cats,
                   atom_masks={k: np.tile(v, copies) for k, v in parsed.atom_masks.items()})


def child(kind: str, store: str, src: str) -> None:
    """In a fresh interpreter: one measured operation; prints a JSON line with peak-RSS numbers."""
    from moldb.ingest.load import commit

    st = moldb.open(store) if kind == "read" else moldb.create(store)
    out: dict[str, Any] = {"base": maxrss()}
    if kind == "commit":  # the in-memory BIG8 entry: Arrow IPC atoms + the rest pickled
        with pa.OSFile(src + ".arrow") as f:  # read into memory once (no mmap, no copy)
            atoms = pa.ipc.open_file(f).read_all()
        parsed = replace(pickle.loads(Path(src + ".pkl").read_bytes()), atoms=atoms)
        out["input"] = maxrss()
    t0 = time.perf_counter()
    if kind == "commit":
        out["n_atoms"] = commit(st._backend, parsed, entry_id="BIG8").n_atoms
    elif kind == "ingest":
        out["n_atoms"] = st.ingest(src, entry="BIG8").n_atoms
    else:
        table = st.get("BIG8").atoms
        out["n_atoms"], out["nbytes"] = table.num_rows, table.nbytes
    out["seconds"], out["peak"] = time.perf_counter() - t0, maxrss()
    out["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))


def run_child(kind: str, store: Path, src: Path | str = "") -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, str(store), str(src)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"child {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fig_memory(work: Path, copies: int, reps: int) -> dict[str, Any]:
    big = tile_entry(read_file(BIG_SOURCE), copies)
    src, nbytes = work / "big8", big.atoms.nbytes
    with pa.OSFile(f"{src}.arrow", "wb") as f, pa.ipc.new_file(f, big.atoms.schema) as w:
        w.write_table(big.atoms)
    Path(f"{src}.pkl").write_bytes(pickle.dumps(replace(big, atoms=big.atoms.schema.empty_table())))
    bcif = exported(big, work / "big8.bcif")
    del big
    runs: dict[str, list[dict[str, Any]]] = {"commit(parsed BIG8)": [], "store.ingest(BIG8.bcif)": [],
                                             "store.get(BIG8).atoms": []}
    for old in work.glob("mem_*"):  # a reused --workdir: every run writes a store of its own
        shutil.rmtree(old)
    for i in range(reps):
        runs["commit(parsed BIG8)"].append(run_child("commit", work / f"mem_commit_{i}", src))
        if bcif is not None:
            runs["store.ingest(BIG8.bcif)"].append(run_child("ingest", work / f"mem_ingest_{i}", bcif))
        runs["store.get(BIG8).atoms"].append(run_child("read", work / "mem_commit_0"))
    rows = [{"op": op, "atoms": rs[0]["n_atoms"], "seconds": statistics.median(x["seconds"] for x in rs),
             "peak_delta": statistics.median(x["peak"] - x["base"] for x in rs),
             "peak_over_input": statistics.median(x["peak"] - x.get("input", x["base"]) for x in rs),
             "arrow_nbytes": rs[0].get("nbytes", nbytes), "runs": rs} for op, rs in runs.items() if rs]
    for r in rows:
        r["ratio"] = r["peak_delta"] / r["arrow_nbytes"]
    show(f"Figure 4 — peak RSS for a {rows[0]['atoms']:,}-atom entry ({copies}× 4V5A), fresh process per run, "
         f"median of {reps} (goal ≤ 3× the Arrow atom table)",
         ["operation", "seconds", "peak − base MB", "peak − input MB", "Arrow atoms MB", "(peak − base)/Arrow"],
         [[r["op"], r["seconds"], r["peak_delta"] / 1e6, r["peak_over_input"] / 1e6, r["arrow_nbytes"] / 1e6,
           r["ratio"]] for r in rows], ["", ".1f", ",.0f", ",.0f", ",.0f", ".2f"],
         "base = peak RSS (VmHWM) after imports and store open/create. commit's input, the ParsedEntry read from "
         "Arrow IPC, is inside 'peak − base'\nand excluded from 'peak − input'. store.ingest: BIG8 written as "
         "BinaryCIF by moldb.export (row absent if the exporter is unavailable).")
    return {"copies": copies, "reps": reps, "rows": rows}


# -- profiles --------------------------------------------------------------------------------------------------
def profile(fn: Callable[[], object], top: int = 14) -> str:
    pr, buf = cProfile.Profile(), io.StringIO()
    pr.runcall(fn)
    pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def run_profiles(work: Path, reps: int) -> dict[str, str]:
    out = {}
    with moldb.open(work / "read_store") as st:
        st.get("5eil_c0")
        out[f"get 5EIL x{reps}"] = profile(lambda: [st.get("5eil_c0").atoms for _ in range(reps)])
        out["get 4V5A x3"] = profile(lambda: [st.get("4V5A").atoms for _ in range(3)])
    with moldb.create(work / "profile_ingest") as st:
        out["ingest 4zxb.cif.gz x3"] = profile(
            lambda: [st.ingest(DATA / "mmcif/4zxb.cif.gz", entry=f"p{i}") for i in range(3)])
    for k, v in out.items():
        console.rule(f"cProfile: {k} (by tottime)")
        console.print(v, markup=False, highlight=False)
    return out


# -- main ------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from moldb.storage.block_cache import shared_cache

    shared_cache.max_bytes = 0  # measure the storage read path, not the in-process block cache
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="60-entry read store, fewer repetitions")
    ap.add_argument("--entries", type=int, help="entries in the read store (default 1000, --quick 60)")
    ap.add_argument("--reps", type=int, help="timed repetitions per read measurement (default 20, --quick 5)")
    ap.add_argument("--out", default="bench_foundation.json", help="JSON file for all numbers")
    ap.add_argument("--workdir", help="scratch directory, kept (default: a temporary one, removed)")
    ap.add_argument("--profile", action="store_true", help="also print cProfile tables of get and ingest")
    ap.add_argument("--only", help="comma-separated figures to run: bytes,read,ingest,memory (default: all)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child(*a.child)
        return 0
    entries, reps = a.entries or (60 if a.quick else 1000), a.reps or (5 if a.quick else 20)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="moldb-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "tiledb_core": ".".join(map(str, tiledb.libtiledb.version()))}
    meta |= {p: version(p) for p in ("moldb", "tiledb", "gemmi", "biotite", "pyarrow", "numpy")} | code_version()
    meta |= {"quick": a.quick, "entries": entries, "reps": reps, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    console.print("moldb foundation benchmarks: " + ", ".join(f"{k} {v}" for k, v in meta.items()))
    results: dict[str, Any] = {"meta": meta}
    t0 = time.perf_counter()
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("bytes", lambda: fig_bytes(work)), ("read", lambda: fig_read(work, entries, reps)),
        ("ingest", lambda: fig_ingest(work, max(3, reps // 4))),
        ("memory", lambda: fig_memory(work, 8, 1 if a.quick else 3))]
    if a.profile:
        steps.append(("profiles", lambda: run_profiles(work, reps)))
    if a.only:
        wanted = {w.strip() for w in a.only.split(",")}
        steps = [(k, fn) for k, fn in steps if k in wanted]
    try:
        for key, fn in steps:
            t = time.perf_counter()
            results[key] = fn()
            console.print(f"[dim]{key}: {time.perf_counter() - t:.0f} s[/dim]")
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    meta["total_s"] = time.perf_counter() - t0
    Path(a.out).write_text(json.dumps(results, indent=1, default=str))
    console.print(f"total {meta['total_s']:.0f} s; all numbers in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
