"""Render-engine timings.

* ``5eil``: 5EIL (7,327 atoms, 29 deposited TLS groups + per-atom B): U_total (tls_v1 over all groups
  + iadp_v1) and 1,000 draws, numpy vs torch-cpu (and torch-cuda when available).
* ``spike``: the issue's figures on the 22,812-atom spike-like trimer with a five-level ECHT-shaped
  stack (``benchmarks/_spike.py``), rendered through ``store.renderer``: (1) U_total for all atoms on
  one CPU core (goal <= 2 ms), (2) 1,000 draws (goal <= 1 s on CPU; >= 10x on a GPU when present),
  (3) ``RenderDataset`` + ``DataLoader(num_workers=2)`` throughput in samples/s (reference: the
  CELLxGENE Census loader's ~2,500 samples/s).

Medians of repeated runs. Run: ``python benchmarks/bench_render.py [--quick] [--only spike] [--out f.json]``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from moldb.operators import B_TO_U, tls_from_mmcif_units
from moldb.render import GaussianDescriptor, Renderer, RenderModel
from tests._tls_data import DATA, read_tls


def _median(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_5eil(reps: int = 20) -> None:
    d = read_tls(DATA / "5eil.cif.gz")
    T, L, S = tls_from_mmcif_units(d.T, d.L, d.S)
    # residual isotropic part: deposited total B minus the TLS trace (PHENIX writes the total), ≥ 0
    tls = GaussianDescriptor("tls", "tls_v1", {"T": T, "L": L, "S": S, "origin": d.origin, "group": d.group})
    model0 = RenderModel(d.xyz, continuous=(tls,))
    u_tls = Renderer(model0).covariance()
    b_res = np.maximum(d.b - np.trace(u_tls, axis1=1, axis2=2) / 3 / B_TO_U, 0.0)
    model = RenderModel(d.xyz, continuous=(tls, GaussianDescriptor("b", "iadp_v1", {"B": b_res})))
    rows = []
    configs = [("numpy", "cpu", "float64"), ("torch", "cpu", "float64"), ("torch", "cpu", "float32")]
    try:
        import torch

        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")
        if torch.cuda.is_available():
            configs += [("torch", "cuda", "float64"), ("torch", "cuda", "float32")]
    except ImportError:
        configs = configs[:1]
    for backend, device, dtype in configs:
        def cov(backend=backend, device=device, dtype=dtype, factor=True):
            r = Renderer(model, device=device, backend=backend, dtype=dtype)
            r.covariance()
            if factor:
                r.psd_report  # noqa: B018 — forces the eigh factor
            return r

        def sync(device=device):
            if device == "cuda":
                import torch

                torch.cuda.synchronize()

        r = cov()
        r.sample(10, seed=0)
        t_u = _median(lambda cov=cov, sync=sync: (cov(factor=False), sync()), reps)
        t_cov = _median(lambda cov=cov, sync=sync: (cov(), sync()), reps)
        t_draw = _median(lambda r=r, sync=sync: (r.sample(1000, seed=1), sync()), max(2, reps // 4))
        rows.append((f"{backend}-{device}", dtype, t_u * 1e3, t_cov * 1e3, t_draw * 1e3, r.psd_report.n_clipped))
    print(f"5EIL: {model.n_atoms} atoms, {len(T)} TLS groups + iadp")
    head = ("backend", "dtype", "U_total ms", "+eigh factor ms", "1000 draws ms", "clipped")
    print(f"{head[0]:<12} {head[1]:<8} {head[2]:>10} {head[3]:>16} {head[4]:>14} {head[5]:>8}")
    for row in rows:
        print(f"{row[0]:<12} {row[1]:<8} {row[2]:>10.2f} {row[3]:>16.2f} {row[4]:>14.1f} {row[5]:>8d}")


def _loader_rate(store: object, entry: str, ids: list[str], n: int, batch: int) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader

    from moldb.torch import RenderDataset, collate_renders

    ds = RenderDataset(store, entries=[entry], n_samples=n, seed=0, descriptors=ids)  # type: ignore[arg-type]
    # spawn, as docs/render.md advises (a forked child inherits TileDB's thread pools)
    dl = DataLoader(ds, batch_size=batch, num_workers=2, collate_fn=collate_renders, multiprocessing_context="spawn")
    t0 = time.perf_counter()
    seen, t_first, seen_first = 0, 0.0, 0
    for k, b in enumerate(dl):
        seen += len(b["index"])
        if k == 1:  # both workers have built their renderer
            t_first, seen_first = time.perf_counter(), seen
    t1 = time.perf_counter()
    assert seen == n and isinstance(b["coords"], torch.Tensor)
    return {"samples_per_s_steady": (seen - seen_first) / (t1 - t_first), "samples_per_s_total": seen / (t1 - t0),
            "startup_s": t_first - t0}


@contextlib.contextmanager
def _numba(on: bool) -> Iterator[None]:
    """numpy through the compiled kernels (``on``) or through the array expressions (``MOLDB_NUMBA=0``)."""
    old = os.environ.get("MOLDB_NUMBA")
    os.environ["MOLDB_NUMBA"] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["MOLDB_NUMBA"]
        else:
            os.environ["MOLDB_NUMBA"] = old


def bench_spike(quick: bool) -> dict[str, object]:
    """The issue's three figures on the 22,812-atom ECHT-shaped spike-like model."""
    import tempfile

    import torch

    from benchmarks._spike import build_spike_store

    reps = 5 if quick else 20
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store, entry, ids = build_spike_store(Path(tmp))
        print(f"built SPIKE store in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        r = store.renderer(entry, descriptors=ids)
        t_build = time.perf_counter() - t
        rows = r.atom_rows()
        model = r.model_for(rows)
        groups = {g["name"]: g["n_groups"] for g in store.groupings(entry).to_pylist() if g["name"].startswith("echt")}
        print(f"SPIKE: {model.n_atoms} atoms; ECHT groups {groups} + per-atom B; store.renderer {t_build * 1e3:.0f} ms")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        t = time.perf_counter()
        Renderer(model).covariance()
        out["u_total_first_call_ms"] = (time.perf_counter() - t) * 1e3
        print(f"  first U_total of a fresh model (builds its plan: group combinations, centred x_ref): "
              f"{out['u_total_first_call_ms']:.1f} ms; the rows below reuse the plan, as every later call does")
        rows_u = []
        for backend, dtype in (("numpy", "float64"), ("numpy", "float32"), ("numpy-expr", "float64"),
                               ("torch", "float64"), ("torch", "float32")):
            def u(backend=backend, dtype=dtype):  # type: ignore[no-untyped-def]
                with _numba(backend != "numpy-expr"):
                    return Renderer(model, backend=backend.split("-")[0], dtype=dtype).covariance()  # type: ignore

            u()
            t_u = _median(u, reps)
            rows_u.append((f"{backend}-cpu", dtype, t_u * 1e3))
        torch.set_num_threads(threads)
        print("figure 1: U_total, all atoms, one CPU core (goal <= 2 ms)")
        for b, dt, ms in rows_u:
            print(f"  {b:<10} {dt:<8} {ms:8.2f} ms")
        out["u_total_ms"] = {f"{b}/{dt}": ms for b, dt, ms in rows_u}
        rows_d = []
        configs = [("numpy", "cpu", "float64"), ("numpy", "cpu", "float32"), ("numpy-expr", "cpu", "float64"),
                   ("numpy-expr", "cpu", "float32"), ("torch", "cpu", "float64"), ("torch", "cpu", "float32")]
        if torch.cuda.is_available():
            configs += [("torch", "cuda", "float32")]
        for backend, device, dtype in configs:
            rr = Renderer(model, device=device, backend=backend.split("-")[0], dtype=dtype)  # type: ignore[arg-type]
            rr.psd_report  # noqa: B018 - factor outside the timing
            with _numba(backend != "numpy-expr"):
                rr.sample(2, seed=1)  # compiles the kernel outside the timing

            def draw(rr=rr, device=device, backend=backend):  # type: ignore[no-untyped-def]
                with _numba(backend != "numpy-expr"):
                    rr.sample(1000, seed=1)
                if device == "cuda":
                    torch.cuda.synchronize()

            rows_d.append((f"{backend}-{device}", dtype, _median(draw, 1 if quick else 3)))
        size = (1000, 3, model.n_atoms)
        floor = {"numpy/float64": _median(lambda: np.random.default_rng(1).standard_normal(size), 3),
                 "numpy/float32": _median(lambda: np.random.default_rng(1).standard_normal(size, np.float32), 3),
                 "torch/float64": _median(lambda: torch.randn(size, dtype=torch.float64), 3),
                 "torch/float32": _median(lambda: torch.randn(size), 3)}
        print(f"figure 2: 1,000 draws of {model.n_atoms} atoms (goal <= 1 s on CPU), torch threads {threads}; "
              "'normals only' = the generator alone drawing the 3 x n_atoms x 1,000 normals")
        for b, dt, sec in rows_d:
            fl = floor.get(f"{b.split('-')[0]}/{dt}")
            print(f"  {b:<10} {dt:<8} {sec:8.3f} s" + (f"   (normals only {fl:.3f} s)" if fl else ""))
        out["normals_only_s"] = floor
        out["draws_1000_s"] = {f"{b}/{dt}": sec for b, dt, sec in rows_d}
        n = 400 if quick else 2000
        rate = _loader_rate(store, entry, ids, n, 16)
        print(f"figure 3: RenderDataset + DataLoader(num_workers=2, batch_size=16, spawn), {n} samples of "
              f"{model.n_atoms} "
              f"atoms: {rate['samples_per_s_steady']:.0f} samples/s steady, {rate['samples_per_s_total']:.0f} "
              f"samples/s incl. {rate['startup_s']:.2f} s worker start (Census reference ~2,500 samples/s)")
        out["dataloader"] = rate
        store.close()
    return out


def main() -> None:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, 400 DataLoader samples")
    ap.add_argument("--only", choices=("5eil", "spike"), help="run one benchmark")
    ap.add_argument("--out", help="write the spike figures as JSON here")
    args = ap.parse_args()
    if args.only in (None, "5eil"):
        bench_5eil(5 if args.quick else 20)
    if args.only in (None, "spike"):
        res = bench_spike(args.quick)
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
