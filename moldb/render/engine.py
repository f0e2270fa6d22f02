"""The render engine: ``render_snapshot`` of the evaluation-model chapter, as array functions.

``x = mean(joint_state) + δ`` where

* ``mean`` = ``x_ref`` → discrete descriptors in order (Mode B deltas add, Mode A sets and
  external-reference frames replace their atoms) → deterministic displacements in order (basis
  ``nm_v1`` and decoders add, ``quat_v1`` moves its atoms rigidly; order matters for rotations);
* ``δ`` is **one** draw per atom from ``N(0, U_total)``, ``U_total`` the sum of every
  ``sample_per_step`` parametric-Gaussian contribution evaluated at ``x_ref`` — never one draw
  per descriptor.

Backends: ``"numpy"`` (float64 reference, device ``"cpu"``) and ``"torch"`` (device ``"cpu"`` or
``"cuda"``), same code path via :mod:`moldb.operators._xp`. Seeds: ``np.random.SeedSequence(seed)``
spawns one stream for the Gaussian draw (numpy ``Generator`` or a seeded ``torch.Generator``) and
one per sample-per-step descriptor (numpy, so per-descriptor inputs match across backends).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from moldb.errors import ValidationError
from moldb.operators import adp, adp_kernel, motion
from moldb.render.fused import covariance_plan, fused_covariance
from moldb.render.model import (
    BasisDescriptor,
    DecoderDescriptor,
    DiscreteDescriptor,
    GaussianDescriptor,
    RenderModel,
    RigidDescriptor,
)
from moldb.render.psd import DEFAULT_ATOL, PSDReport, draw_factor
from moldb.render.states import JointState, joint_states, resolve_state

__all__ = ["Renderer"]


class Renderer:
    """Evaluate a :class:`RenderModel`: means, ``U_total`` and draws.

    Parameters
    ----------
    model : RenderModel
    device : {"cpu", "cuda"}
    backend : {"numpy", "torch"}, optional
        Default ``"numpy"`` on cpu, ``"torch"`` on cuda.
    psd : {"clip", "strict"}
        Policy for a non-positive-semidefinite ``U_total`` (see :mod:`moldb.render.psd`).
    dtype : {"float64", "float32"}
    """

    def __init__(
        self,
        model: RenderModel,
        device: str = "cpu",
        backend: Literal["numpy", "torch"] | None = None,
        psd: Literal["clip", "strict"] = "clip",
        dtype: Literal["float64", "float32"] = "float64",
        atol: float = DEFAULT_ATOL,
    ) -> None:
        self.model, self.device, self.psd, self.atol = model, device, psd, atol
        self.backend = backend or ("numpy" if device == "cpu" else "torch")
        if self.backend == "numpy" and device != "cpu":
            raise ValidationError("the numpy backend runs on device 'cpu' only; use backend='torch' for cuda")
        if self.backend == "torch":
            import torch

            if device.startswith("cuda") and not torch.cuda.is_available():
                raise ValidationError("device 'cuda' asked for but torch.cuda.is_available() is False")
            self._tdtype = getattr(torch, dtype)
        self.dtype = np.dtype(dtype)
        self._U: Any = None
        self._F: Any = None
        self._report: PSDReport | None = None
        self._mono: tuple[Any, Any] | None = None

    # -- conversions -------------------------------------------------------------------------
    def _arr(self, a: Any) -> Any:
        if self.backend == "numpy":
            return np.asarray(a, dtype=self.dtype)
        import torch

        if isinstance(a, torch.Tensor):
            return a.to(device=self.device, dtype=self._tdtype)
        return torch.as_tensor(np.array(a), dtype=self._tdtype, device=self.device)

    def _idx(self, a: np.ndarray) -> Any:
        if self.backend == "numpy":
            return a
        import torch

        return torch.as_tensor(a, device=self.device)

    # -- discrete stack ----------------------------------------------------------------------
    def joint_states(self) -> list[JointState]:
        """Every legal joint state of the discrete-nesting stack."""
        return joint_states(self.model.discrete)

    def _discrete_mean(self, js: JointState) -> Any:
        x = self._arr(self.model.x_ref).clone() if self.backend == "torch" else self.model.x_ref.astype(self.dtype)
        for d in self.model.discrete:
            key = js[d.name]
            if key is None:
                continue
            if isinstance(d, DiscreteDescriptor):
                st = d.states[key]
                idx = self._idx(np.asarray(st.atoms, dtype=np.int64))
                if st.mode == "delta":
                    x[idx] += self._arr(st.xyz)
                else:
                    x[idx] = self._arr(np.asarray(st.xyz) + d.offset)
            else:  # ExternalReference: the frame replaces its atoms
                idx = self._idx(self.model.atoms_of(d))
                x[idx] = self._arr(np.asarray(d.load(key), dtype=np.float64) + d.offset)
        return x

    # -- deterministic displacements ---------------------------------------------------------
    def _inputs(self, d: Any, n: int, rng: np.random.Generator | None) -> np.ndarray:
        """Per-sample state inputs (n, …) of a deterministic descriptor."""
        if isinstance(d, BasisDescriptor):
            c = np.broadcast_to(np.asarray(d.coeffs, dtype=np.float64), (n, len(d.coeffs)))
            if rng is not None and d.policy == "sample_per_step":
                if d.coeff_std is None:
                    raise ValidationError(f"{d.name}: a sample_per_step basis needs coeff_std")
                c = c + np.asarray(d.coeff_std) * rng.standard_normal(c.shape)
            return c
        if isinstance(d, DecoderDescriptor):
            if rng is not None and d.policy == "sample_per_step":
                if d.latent_pool is None:
                    raise ValidationError(f"{d.name}: a sample_per_step decoder needs latent_pool")
                return np.asarray(d.latent_pool)[rng.integers(0, len(d.latent_pool), n)]
            return np.broadcast_to(np.asarray(d.latent, dtype=np.float64), (n, len(d.latent)))
        if d.policy == "sample_per_step":
            raise ValidationError(f"{d.name}: rigid-body descriptors have no distribution; use policy 'mean'")
        return np.zeros((n, 0))

    def _apply(self, X: Any, d: Any, inputs: np.ndarray) -> None:
        """Apply one deterministic descriptor to ``X`` (b, n, 3) in place."""
        atoms = self.model.atoms_of(d)
        idx = self._idx(atoms)
        if isinstance(d, BasisDescriptor):
            X[:, idx] += motion.nm_v1(self._arr(d.basis), self._arr(inputs))
        elif isinstance(d, RigidDescriptor):
            sub = X[:, idx]
            b, m, _ = sub.shape
            disp = motion.quat_v1(sub.reshape(b * m, 3), self._arr(d.q), self._arr(np.asarray(d.centre) + d.offset),
                                  self._arr(d.translation))
            X[:, idx] += disp.reshape(b, m, 3)
        elif isinstance(d, DecoderDescriptor):
            dev = self.device if self.backend == "torch" else "cpu"
            ref = self.model.x_ref[atoms] - d.offset
            out = d.decoder(inputs, x_ref=ref, device=dev)
            X[:, idx] += self._arr(out if self.backend == "torch" else out.cpu().numpy())

    def mean(self, state: Mapping[str, str] | None = None) -> Any:
        """Mean structure for a joint state: discrete stack plus deterministic displacements.

        Returns
        -------
        array, shape (n_atoms, 3) — ndarray (numpy backend) or Tensor (torch backend)
        """
        js = resolve_state(self.model.discrete, state)
        X = self._discrete_mean(js)[None]
        for d in self.model.continuous:
            if not isinstance(d, GaussianDescriptor):
                self._apply(X, d, self._inputs(d, 1, None))
        return X[0]

    # -- continuous-additive stack -----------------------------------------------------------
    def contribution(self, d: GaussianDescriptor) -> Any:
        """One parametric Gaussian's per-atom covariance on all atoms (zeros outside its scope)."""
        atoms = self.model.atoms_of(d)
        x = self._arr(self.model.x_ref[atoms])
        p = d.params
        if d.operator == "tls_v1":
            u = adp.tls_v1(x, p["T"], p["L"], p["S"], np.asarray(p["origin"]) + d.offset, p.get("group"),
                           p.get("amplitude"))
        elif d.operator == "iadp_v1":
            u = adp.iadp_v1(self._arr(p["B"]))
        elif d.operator == "aadp_v1":
            u = adp.aadp_v1(self._arr(p["U6"]))
        else:
            raise ValidationError(f"{d.name}: unknown parametric-Gaussian operator {d.operator!r}")
        U = self._arr(np.zeros((self.model.n_atoms, 3, 3)))
        U[self._idx(atoms)] = u
        return U

    def covariance(self, include_mean_only: bool = False) -> Any:
        """``U_total`` (n_atoms, 3, 3): the sum of the parametric-Gaussian contributions.

        By default only ``sample_per_step`` descriptors (those the draws use);
        ``include_mean_only=True`` adds the ``mean``-policy ones too.
        """
        if self._U is not None and not include_mean_only:
            return self._U
        active = [d for d in self.model.continuous
                  if isinstance(d, GaussianDescriptor) and (include_mean_only or d.policy == "sample_per_step")]
        plan = covariance_plan(self.model, active)
        if self._mono is None or self._mono[0] is not plan:
            self._mono = (plan, self._arr(plan.r))
        U = fused_covariance(plan, self.model, self._arr, self._mono[1])
        if not include_mean_only:
            self._U = U
        return U

    @property
    def psd_report(self) -> PSDReport:
        """What the PSD policy did to ``U_total`` (computes the draw factor if needed)."""
        self._factor()
        assert self._report is not None
        return self._report

    def _factor(self) -> Any:
        if self._F is None:
            self._F, self._report = draw_factor(self.covariance(), self.psd, self.atol)
        return self._F

    def sample(self, n: int, state: Mapping[str, str] | None = None, seed: int = 0) -> Any:
        """``n`` renders: (n, n_atoms, 3), one ``N(0, U_total)`` draw per atom per render."""
        js = resolve_state(self.model.discrete, state)
        streams = np.random.SeedSequence(seed).spawn(1 + len(self.model.continuous))
        base = self._discrete_mean(js)[None]
        X = base.repeat(n, 1, 1) if self.backend == "torch" else np.repeat(base, n, axis=0)
        for i, d in enumerate(self.model.continuous):
            if not isinstance(d, GaussianDescriptor):
                self._apply(X, d, self._inputs(d, n, np.random.default_rng(streams[i + 1])))
        F = self._factor()
        na = self.model.n_atoms
        # One N(0, U_total) draw per atom and render: X[d, a] += F[a] z[d, a]. Draws go in chunks of
        # ~4 MB of normals, component-major (z[d] is (3, n_atoms)), so every step is a long
        # contiguous elementwise row operation and the working set stays in cache. Render d always
        # consumes the d-th 3 * n_atoms normals of its stream (numpy), whatever the chunking.
        step = max(1, (1 << 19) // max(1, 3 * na))
        if self.backend == "numpy" and adp_kernel.available():
            adp_kernel.add_draws(np.random.default_rng(streams[0]), F, X)
        elif self.backend == "numpy":
            rng = np.random.default_rng(streams[0])
            Ft = np.ascontiguousarray(np.moveaxis(F, 0, -1))              # (3, 3, n_atoms)
            for s in range(0, n, step):
                e = min(n, s + step)
                z = rng.standard_normal((e - s, 3, na), dtype=self.dtype)
                for i in range(3):
                    X[s:e, :, i] += Ft[i, 0] * z[:, 0] + Ft[i, 1] * z[:, 1] + Ft[i, 2] * z[:, 2]
        else:
            import torch

            g = torch.Generator(device=self.device)
            g.manual_seed(int(streams[0].generate_state(1, np.uint64)[0] >> np.uint64(1)))
            Ft = F.permute(1, 2, 0).contiguous()
            for s in range(0, n, step):
                e = min(n, s + step)
                zt = torch.randn((e - s, 3, na), generator=g, device=self.device, dtype=self._tdtype)
                for i in range(3):
                    X[s:e, :, i] += torch.addcmul(torch.addcmul(Ft[i, 0] * zt[:, 0], Ft[i, 1], zt[:, 1]),
                                                  Ft[i, 2], zt[:, 2])
        return X
