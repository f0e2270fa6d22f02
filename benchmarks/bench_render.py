"""Render-engine timings on 5EIL (7,327 atoms, 29 deposited TLS groups + per-atom B).

U_total (tls_v1 over all groups + iadp_v1) and 1,000 draws, numpy vs torch-cpu (and torch-cuda
when available); medians of repeated runs. Run: ``python benchmarks/bench_render.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
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


def main() -> None:
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
        t_u = _median(lambda cov=cov, sync=sync: (cov(factor=False), sync()), 20)
        t_cov = _median(lambda cov=cov, sync=sync: (cov(), sync()), 20)
        t_draw = _median(lambda r=r, sync=sync: (r.sample(1000, seed=1), sync()), 5)
        rows.append((f"{backend}-{device}", dtype, t_u * 1e3, t_cov * 1e3, t_draw * 1e3, r.psd_report.n_clipped))
    print(f"5EIL: {model.n_atoms} atoms, {len(T)} TLS groups + iadp")
    head = ("backend", "dtype", "U_total ms", "+eigh factor ms", "1000 draws ms", "clipped")
    print(f"{head[0]:<12} {head[1]:<8} {head[2]:>10} {head[3]:>16} {head[4]:>14} {head[5]:>8}")
    for row in rows:
        print(f"{row[0]:<12} {row[1]:<8} {row[2]:>10.2f} {row[3]:>16.2f} {row[4]:>14.1f} {row[5]:>8d}")


if __name__ == "__main__":
    main()
