"""``Store.renderer(entry)``: the render engine over one entry's stored IR descriptors.

:class:`EntryRenderer` reads one version of an entry (atoms, descriptors, the groupings their
scopes name) and turns them into :class:`moldb.render.RenderModel` objects that the array engine
(:class:`moldb.render.Renderer`) evaluates. See ``docs/render.md`` ("Rendering a stored entry").

Discrete stack (the joint state)
    * ``altloc`` (:class:`moldb.ir.AltlocStates`, residue scope) becomes one discrete node per
      residue that carries alternate locations, named ``altloc:<auth_asym_id>/<auth_seq_id><ins>``
      (``altloc:A/45``), whose states are that residue's altloc ids. The chosen altloc's atom rows
      are rendered, the others are left out (composition ``replace``: each altloc row is a full
      coordinate). Default: the altloc with the highest mean occupancy (ties: alphabetical).
      ``state={"altloc": "B"}`` sets every residue that has a ``B`` at once; per-residue keys
      override it.
    * ``ensemble`` (:class:`moldb.ir.Ensemble`, Regime 2, sample axis ``model``) becomes one node
      whose states are the model numbers; the chosen model's rows are rendered (default: the first).
    Nodes are independent (no ``nested_under`` edges among them), so the legal joint states are
    their product, enumerated lazily through :class:`moldb.ir.ScopeDAG`.

Continuous-additive stack (``U_total``)
    Every parametric-Gaussian descriptor (``tls`` → ``tls_v1``, ``iadp`` → ``iadp_v1``, ``aadp`` →
    ``aadp_v1``) contributes a per-atom covariance on the rows of its scope grouping; they are summed
    and **one** draw per atom is taken from ``N(0, U_total)`` by the engine.

    Deposited ADPs (``adp="deposited"``, the default) describe the *same* disorder several times:
    an ANISOU row is the atom's total U (wwPDB convention; PHENIX writes ``U_TLS + U_residual``),
    and B is the total or the residual after TLS depending on the refinement program
    (``TLS.b_includes_tls``). Summing them as stored would count the disorder two or three times,
    so the ingest-built (``provenance.source`` ``ingest:*``) ADP descriptors are reconciled per atom:

    1. atoms with a finite anisotropic U: ``U_total = U_aniso`` (``aadp`` only);
    2. other atoms inside a TLS group: ``U_TLS + B_res/8π² · I`` with ``B_res = B`` when the B column
       is the residual (``b_includes_tls`` False) and ``B_res = max(B − 8π²·tr(U_TLS)/3, 0)``
       otherwise (True, or unknown: never exceeds the deposited total); the atoms clamped at 0 are
       counted in :attr:`EntryRenderer.notes`;
    3. the remaining atoms: ``B/8π² · I``.

    User descriptors (added with ``store.add_descriptor``, e.g. an ECHT decomposition) are added as
    stored. ``adp="sum"`` adds every descriptor as stored, built-ins included; ``descriptors=[ids]``
    renders only those descriptors (e.g. an ECHT stack without the deposited B column).

Motion stack (:mod:`moldb.api.render_motion`)
    ``normal_modes`` (``nm_v1``), ``rigid_body`` (``quat_v1``) and ``neural_decoder`` (TorchScript, sha256
    checked) are deterministic displacements added to the mean in stored order; ``external_frames`` (an
    H5MD file, sha256 checked) is one discrete node named by the descriptor id whose states are its frame
    keys; the chosen frame replaces its atoms.

Atoms outside the chosen joint state are left out of every array: ``mean``/``covariance``/``sample``
return arrays over :meth:`EntryRenderer.atom_rows` (rows of ``store.get(entry).atoms``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from moldb.api.render_motion import MOTION_TYPES, StoredMotion, build_motion
from moldb.api.structure import Structure
from moldb.errors import ValidationError
from moldb.ir.dag import IllegalStateError, ScopeDAG, ScopeNode
from moldb.ir.model import Descriptor
from moldb.operators.adp import B_TO_U, tls_v1
from moldb.render import GaussianDescriptor, PSDReport, Renderer, RenderModel

if TYPE_CHECKING:
    from moldb.api.store import Store

__all__ = ["ALTLOC_PREFIX", "EntryRenderer", "build_renderer", "check_device", "parse_state", "render_file"]

ALTLOC_PREFIX = "altloc:"
_GAUSSIAN_TYPES = {"tls": "tls_v1", "iadp": "iadp_v1", "aadp": "aadp_v1"}
_U6 = ("U11", "U22", "U33", "U12", "U13", "U23")
_CACHE = 8  # core renderers kept per EntryRenderer (one per distinct set of rendered rows)


def check_device(device: str, backend: str | None = None) -> str:
    """Validate ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``) and return the backend to use.

    Raises
    ------
    ValidationError
        Unknown device, numpy asked for on CUDA, or CUDA asked for where torch sees none.
    """
    if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or
                                           (device.startswith("cuda:") and device[5:].isdigit())):
        raise ValidationError(f"device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    if backend not in (None, "numpy", "torch"):
        raise ValidationError(f"backend {backend!r} is not supported; use 'numpy' or 'torch'")
    if device == "cpu":
        return backend or "numpy"
    if backend == "numpy":
        raise ValidationError(f"backend 'numpy' runs on device 'cpu' only; use backend='torch' for {device!r}")
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed in the project's environment
        raise ValidationError(f"device {device!r} needs PyTorch (pip install 'moldb[render]'); "
                              "use device='cpu'") from exc
    if not torch.cuda.is_available():
        raise ValidationError(f"device {device!r} requested but torch.cuda.is_available() is False "
                              f"(torch {torch.__version__}, no usable CUDA device); use device='cpu'")
    return "torch"


@dataclass
class _Gauss:
    """A parametric Gaussian in atom-table row space (restricted to rendered rows per state)."""

    name: str
    operator: Literal["tls_v1", "iadp_v1", "aadp_v1"]
    rows: np.ndarray  # (k,) unique atom-table rows
    per_atom: dict[str, np.ndarray]  # aligned with rows: "group" (tls), "B" (iadp), "U6" (aadp)
    per_group: dict[str, np.ndarray] = field(default_factory=dict)  # tls: T, L, S, origin
    policy: Literal["mean", "sample_per_step"] = "sample_per_step"
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    source: str = ""

    def restrict(self, keep: np.ndarray) -> _Gauss:
        return replace(self, rows=self.rows[keep], per_atom={k: v[keep] for k, v in self.per_atom.items()})


@dataclass
class _Node:
    """One discrete node: an altloc residue or the ensemble's model axis."""

    name: str
    states: list[str]
    default: str
    kind: Literal["altloc", "ensemble", "external"]


def _col(atoms: pa.Table, name: str, dtype: Any = np.float64, fill: Any = np.nan) -> np.ndarray:
    c = atoms.column(name)
    if pa.types.is_dictionary(c.type):
        c = c.cast(pa.string())
    if np.dtype(dtype).kind in "fi" and (pa.types.is_string(c.type) or pa.types.is_large_string(c.type)):
        c = c.cast(pa.float64() if np.dtype(dtype).kind == "f" else pa.int64())  # numbers kept verbatim as text
    return np.asarray(c.fill_null(fill).to_numpy(zero_copy_only=False), dtype=dtype)


def _layers(rows: np.ndarray) -> list[np.ndarray]:
    """Split member positions so that no atom row repeats within a layer (overlapping groups)."""
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    first = np.r_[True, srt[1:] != srt[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(srt)), 0))
    occ = np.empty(len(rows), dtype=np.int64)
    occ[order] = np.arange(len(srt)) - start
    return [np.flatnonzero(occ == k) for k in range(int(occ.max()) + 1 if len(occ) else 0)]


class EntryRenderer:
    """Render one stored entry version: joint states, means, ``U_total`` and draws.

    Built by :meth:`moldb.Store.renderer`; see the module docstring for how stored descriptors map
    onto the engine.

    Parameters
    ----------
    structure : Structure
        The entry version (atoms, categories).
    descriptors : list of Descriptor
        Its IR descriptors (already filtered).
    memberships : dict
        Grouping name → membership table (``Store.grouping``) for the scopes the descriptors use.
    device : {"cpu", "cuda", "cuda:N"}
    backend : {"numpy", "torch"}, optional
        Default: numpy on cpu, torch on cuda. ``backend="torch", device="cpu"`` runs the CUDA code path
        on the CPU.
    adp : {"deposited", "sum"}
        How ingest-built ADP descriptors combine (module docstring).
    psd : {"clip", "strict"}
        Non-positive-semidefinite ``U_total`` policy (:mod:`moldb.render.psd`).
    dtype : {"float64", "float32"}

    Attributes
    ----------
    entry : str
    version : int
    notes : list of str
        What the builder did that changes the rendered disorder (atoms dropped for missing
        parameters, residual B clamped at 0, ...).
    """

    def __init__(self, structure: Structure, descriptors: Sequence[Descriptor], memberships: Mapping[str, pa.Table],
                 device: str = "cpu", backend: Literal["numpy", "torch"] | None = None,
                 adp: Literal["deposited", "sum"] = "deposited", psd: Literal["clip", "strict"] = "clip",
                 dtype: Literal["float64", "float32"] = "float64") -> None:
        if adp not in ("deposited", "sum"):
            raise ValidationError(f"adp={adp!r} is not a policy; use 'deposited' (reconcile ingested ADPs) or 'sum'")
        if dtype not in ("float64", "float32"):
            raise ValidationError(f"dtype={dtype!r} is not supported; use 'float64' or 'float32'")
        if psd not in ("clip", "strict"):
            raise ValidationError(f"psd={psd!r} is not a policy; use 'clip' or 'strict'")
        self.backend: Literal["numpy", "torch"] = "torch" if check_device(device, backend) == "torch" else "numpy"
        self.device, self.adp, self.psd, self.dtype = device, adp, psd, dtype
        self.structure = structure
        self.entry = structure.entry
        self.version = structure.version.version
        atoms = structure.atoms
        self.n_rows = atoms.num_rows
        self.x_ref = np.stack([_col(atoms, c) for c in ("Cartn_x", "Cartn_y", "Cartn_z")], axis=1)
        self.notes: list[str] = []
        self.descriptor_ids = [d.id for d in descriptors]
        self._nodes: list[_Node] = []
        self._row_node = np.full(self.n_rows, -1, dtype=np.int64)  # altloc node of each row
        self._row_code = np.full(self.n_rows, -1, dtype=np.int64)  # its altloc's index in the node's states
        self._row_model: np.ndarray | None = None
        self._model_node: int | None = None
        self._global_altloc: str | None = None
        self._gauss: list[_Gauss] = []
        self._motion: list[StoredMotion] = []
        self._cache: OrderedDict[bytes, tuple[np.ndarray, Renderer]] = OrderedDict()
        # resolved joint state -> core: skips hashing the row set when a state repeats (a data loader)
        self._by_state: OrderedDict[tuple[tuple[str, str | None], ...], tuple[np.ndarray, Renderer]] = OrderedDict()
        self._last_state: dict[str, str | None] | None = None
        self._b_includes_tls, self._b_reason = True, "no ingested TLS"
        for d in descriptors:
            if d.TYPE == "altloc":
                self._add_altloc(d, atoms)
            elif d.TYPE == "ensemble":
                self._add_ensemble(d, atoms)
            elif d.TYPE in _GAUSSIAN_TYPES or (d.operator is not None and d.operator.name.split("/")[-1] in
                                               ("tls_v1", "iadp_v1", "aadp_v1")):
                self._add_gaussian(d, atoms, memberships)
            elif d.TYPE in MOTION_TYPES:
                m = build_motion(d, f"{self.entry} v{self.version}", self.x_ref, memberships)
                self._motion.append(m)
                if m.frames is not None:
                    self._nodes.append(_Node(m.name, m.states, m.default, "external"))
            elif d.states or int(d.regime) != 3:
                raise ValidationError(f"{self.entry} v{self.version}: descriptor {d.id!r} (type {d.TYPE!r}, regime "
                                      f"{int(d.regime)}) has no renderer yet; leave it out with descriptors=[...]")
            else:
                raise ValidationError(f"{self.entry} v{self.version}: descriptor {d.id!r} uses operator "
                                      f"{d.operator.name if d.operator else None!r}, which the renderer does not "
                                      "evaluate yet; leave it out with descriptors=[...]")
        if adp == "deposited":
            self._reconcile_deposited()
        self._dag = ScopeDAG(ScopeNode(n.name, list(n.states)) for n in self._nodes)

    # -- building -------------------------------------------------------------------------------
    def _add_altloc(self, d: Descriptor, atoms: pa.Table) -> None:
        arr = d.arrays()
        rows, state, group = (np.asarray(arr[k], dtype=np.int64) for k in ("rows", "state", "group"))
        occ = np.asarray(arr.get("occupancy", np.ones(len(rows))), dtype=np.float64)
        names = list(d.states)
        chain = _col(atoms, "auth_asym_id", object, "") if "auth_asym_id" in atoms.column_names else None
        seq = _col(atoms, "auth_seq_id", np.int64, 0) if "auth_seq_id" in atoms.column_names else None
        ins = _col(atoms, "pdbx_PDB_ins_code", object, "") if "pdbx_PDB_ins_code" in atoms.column_names else None
        # residues without a residue-grouping index get one node per row (never merged silently)
        key = np.where(group >= 0, group, -1 - rows)
        uniq, inv = np.unique(key, return_inverse=True)
        taken = {n.name for n in self._nodes}
        self._global_altloc = d.id
        for j in range(len(uniq)):
            members = np.flatnonzero(inv == j)
            r0 = int(rows[members[0]])
            label = (f"{chain[r0] if chain is not None else '?'}/{seq[r0] if seq is not None else '?'}"
                     f"{(ins[r0] or '') if ins is not None else ''}").replace(" ", "")
            name = f"{ALTLOC_PREFIX}{label}"
            if name in taken or not name[len(ALTLOC_PREFIX):]:
                name = f"{ALTLOC_PREFIX}{label}#{j}"
            taken.add(name)
            codes = sorted(set(state[members].tolist()))
            st = [names[c] for c in codes]
            mean_occ = [np.nanmean(occ[members][state[members] == c]) if np.isfinite(
                occ[members][state[members] == c]).any() else 0.0 for c in codes]
            best = st[int(np.argmax(mean_occ))]
            self._nodes.append(_Node(name, st, best, "altloc"))
            idx = len(self._nodes) - 1
            self._row_node[rows[members]] = idx
            lookup = {c: k for k, c in enumerate(codes)}
            self._row_code[rows[members]] = [lookup[c] for c in state[members].tolist()]

    def _add_ensemble(self, d: Descriptor, atoms: pa.Table) -> None:
        if "pdbx_PDB_model_num" not in atoms.column_names:
            raise ValidationError(f"{self.entry}: ensemble descriptor {d.id!r} but no pdbx_PDB_model_num column")
        model = _col(atoms, "pdbx_PDB_model_num", np.int64, 1)
        states = [str(s) for s in d.states]
        lookup = {int(s): k for k, s in enumerate(states)}
        self._row_model = np.array([lookup.get(int(m), -1) for m in model], dtype=np.int64) if len(states) < 64 \
            else np.vectorize(lambda m: lookup.get(int(m), -1), otypes=[np.int64])(model)
        self._nodes.append(_Node(d.id, states, states[0], "ensemble"))
        self._model_node = len(self._nodes) - 1

    def _members(self, d: Descriptor, memberships: Mapping[str, pa.Table]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(rows, group index, group names) of ``d``'s scope; scope ``atom``: one group per row."""
        if d.scope == "atom":
            rows = np.arange(self.n_rows, dtype=np.int64)
            return rows, rows.copy(), []
        m = memberships.get(d.scope)
        if m is None:
            raise ValidationError(f"{self.entry}: descriptor {d.id!r} has scope {d.scope!r}, which is not a grouping "
                                  f"of v{self.version} (groupings read: {sorted(memberships)})")
        col = m.column("group").combine_chunks()
        names = [str(v) for v in col.dictionary.to_pylist()] if pa.types.is_dictionary(col.type) else []
        return (np.asarray(m.column("row").to_numpy(), dtype=np.int64),
                np.asarray(m.column("group_index").to_numpy(), dtype=np.int64), names)

    def _per_member(self, d: Descriptor, values: np.ndarray | None, column: str | Sequence[str] | None,
                    rows: np.ndarray, gidx: np.ndarray, atoms: pa.Table, what: str) -> np.ndarray:
        """Per-member values of an ADP parameter: stored array (per atom or per group) or atom column(s)."""
        if values is not None:
            v = np.asarray(values, dtype=np.float64)
            if d.scope == "atom":
                if len(v) != self.n_rows:
                    raise ValidationError(f"{self.entry}: descriptor {d.id!r} has {len(v)} {what} values for "
                                          f"{self.n_rows} atoms (scope 'atom' needs one per atom row)")
                return v[rows]
            if gidx.size and gidx.max() >= len(v):
                raise ValidationError(f"{self.entry}: descriptor {d.id!r} has {len(v)} {what} values but scope "
                                      f"{d.scope!r} has group index {int(gidx.max())} (one value per group needed)")
            return v[gidx]
        if column is None:
            raise ValidationError(f"{self.entry}: descriptor {d.id!r} has neither {what} values nor a column_refs "
                                  "entry naming the atom column that holds them")
        cols = [column] if isinstance(column, str) else list(column)
        missing = [c for c in cols if c not in atoms.column_names]
        if missing:
            raise ValidationError(f"{self.entry}: descriptor {d.id!r} refers to atom column(s) {missing}, which "
                                  f"v{self.version} does not have")
        got = np.stack([_col(atoms, c) for c in cols], axis=1)
        return got[rows, 0] if isinstance(column, str) else got[rows]

    def _add_gaussian(self, d: Descriptor, atoms: pa.Table, memberships: Mapping[str, pa.Table]) -> None:
        op = _GAUSSIAN_TYPES.get(d.TYPE) or (d.operator.name.split("/")[-1] if d.operator else "")
        source = str(d.provenance.source)
        offset = np.asarray(d.reference_offset if d.reference_offset is not None else np.zeros(3), dtype=np.float64)
        if offset.shape != (3,):
            raise ValidationError(f"{self.entry}: descriptor {d.id!r} reference_offset must have 3 components")
        policy = d.attrs.get("policy", "sample_per_step")
        if policy not in ("mean", "sample_per_step"):
            raise ValidationError(f"{self.entry}: descriptor {d.id!r} attrs.policy={policy!r}; use 'mean' or "
                                  "'sample_per_step'")
        rows, gidx, names = self._members(d, memberships)
        arrays = d.arrays()
        if op == "tls_v1":
            if source.startswith("ingest"):
                flag = getattr(d, "b_includes_tls", None)
                self._b_includes_tls = flag is not False
                self._b_reason = (str(d.attrs.get("b_includes_tls_reason", "")) or str(flag)) if flag is not None \
                    else "unknown, assumed to include it"
            if d.scope == "atom":
                raise ValidationError(f"{self.entry}: TLS descriptor {d.id!r} needs a grouping scope, not 'atom'")
            T, L, S, origin = (np.asarray(arrays[k], dtype=np.float64) for k in ("T", "L", "S", "origin"))
            groups = [str(g) for g in getattr(d, "groups", [])] or names
            pos = {g: i for i, g in enumerate(groups)}
            to_desc = np.array([pos.get(n, -1) for n in names], dtype=np.int64) if names else gidx
            g = to_desc[gidx] if names else gidx
            bad = np.asarray(~(np.isfinite(T).all((1, 2)) & np.isfinite(L).all((1, 2))
                               & np.isfinite(S).all((1, 2)) & np.isfinite(origin).all(1)), dtype=bool)
            if bad.any():
                self.notes.append(f"{d.id}: TLS group(s) {[groups[i] for i in np.flatnonzero(bad)][:10]} have missing "
                                  "tensor values and contribute nothing")
            keep = (g >= 0) & ~bad[np.maximum(g, 0)]
            per_group = {"T": T, "L": L, "S": S, "origin": origin}
            for k, lay in enumerate(_layers(rows[keep])):
                sel = np.flatnonzero(keep)[lay]
                self._gauss.append(_Gauss(d.id if k == 0 else f"{d.id}#{k}", "tls_v1", rows[sel],
                                          {"group": g[sel]}, per_group, policy, offset, source))
            return
        if op == "iadp_v1":
            v = self._per_member(d, arrays.get("B"), d.column_refs.get("B"), rows, gidx, atoms, "B")
            key, per = "B", v
        else:
            u = arrays.get("U")
            cols = [d.column_refs.get(c) for c in _U6]
            v6 = self._per_member(d, u, None if u is not None or None in cols else [str(c) for c in cols],
                                  rows, gidx, atoms, "U")
            key, per = "U6", v6
        finite: np.ndarray = np.isfinite(per) if per.ndim == 1 else np.isfinite(per).all(1)
        if key == "B" and d.column_refs and (~finite).any():
            self.notes.append(f"{d.id}: {int((~finite).sum())} atoms have no B and get no isotropic term")
        for k, lay in enumerate(_layers(rows[finite])):
            sel = np.flatnonzero(finite)[lay]
            self._gauss.append(_Gauss(d.id if k == 0 else f"{d.id}#{k}", op, rows[sel],  # type: ignore[arg-type]
                                      {key: per[sel]}, {}, policy, offset, source))

    def _reconcile_deposited(self) -> None:
        ingested = [g for g in self._gauss if g.source.startswith("ingest")]
        aniso = [g for g in ingested if g.operator == "aadp_v1"]
        if aniso:
            has_u = np.zeros(self.n_rows, dtype=bool)
            for g in aniso:
                has_u[g.rows] = True
            for i, g in enumerate(self._gauss):
                if g.source.startswith("ingest") and g.operator != "aadp_v1":
                    self._gauss[i] = g.restrict(~has_u[g.rows])
        tls = [g for g in self._gauss if g.source.startswith("ingest") and g.operator == "tls_v1"]
        if not tls:
            return
        u_trace = np.zeros(self.n_rows)
        for g in tls:
            p = g.per_group
            u = tls_v1(self.x_ref[g.rows], p["T"], p["L"], p["S"], p["origin"] + g.offset, g.per_atom["group"])
            u_trace[g.rows] += np.trace(u, axis1=1, axis2=2) / 3
        if not self._b_includes_tls:
            return
        for i, g in enumerate(self._gauss):
            if g.source.startswith("ingest") and g.operator == "iadp_v1":
                b = g.per_atom["B"] - u_trace[g.rows] / B_TO_U
                n_clamped = int((b < 0).sum())
                if n_clamped:
                    self.notes.append(f"{g.name}: B minus the TLS part (B includes TLS: {self._b_reason}) is negative "
                                      f"for {n_clamped} atoms; clamped to 0")
                self._gauss[i] = replace(g, per_atom={"B": np.maximum(b, 0.0)})

    # -- joint states ---------------------------------------------------------------------------
    @property
    def dag(self) -> ScopeDAG:
        """The renderer's scope DAG (one node per altloc residue, one for the ensemble)."""
        return self._dag

    @property
    def discrete_nodes(self) -> dict[str, list[str]]:
        """Discrete node name → its states."""
        return {n.name: list(n.states) for n in self._nodes}

    def default_state(self) -> dict[str, str | None]:
        """The joint state used when none is given (each node's default)."""
        return {n.name: n.default for n in self._nodes}

    def joint_states(self) -> Iterator[dict[str, str | None]]:
        """Every legal joint state, lazily (``list(r.joint_states())`` to materialise)."""
        return self._dag.joint_states()

    def n_joint_states(self) -> int:
        """Number of legal joint states, counted without enumerating them."""
        return self._dag.count() if self._nodes else 1

    def resolve_state(self, state: Mapping[str, str] | None = None) -> dict[str, str | None]:
        """Complete a partial joint state with defaults and check it.

        Keys: node names (``altloc:A/45``, ``ensemble``), the altloc descriptor id (``altloc``: every
        residue that has that altloc), or ``model`` for the ensemble.

        Raises
        ------
        IllegalStateError
            Unknown key or a state the node does not have (a :class:`ValidationError`).
        """
        if state is None:
            return self.default_state()
        if not isinstance(state, Mapping):
            raise ValidationError(f"state must be a mapping of node name to state, not {type(state).__name__}")
        out = self.default_state()
        by_name = {n.name: n for n in self._nodes}
        items = dict(state)
        if "model" in items and "model" not in by_name and self._model_node is not None:
            items[self._nodes[self._model_node].name] = items.pop("model")
        glob = items.pop(self._global_altloc, None) if self._global_altloc and self._global_altloc not in by_name \
            else None
        if glob is not None:
            hit = [n.name for n in self._nodes if n.kind == "altloc" and str(glob) in n.states]
            if not hit:
                alts = sorted({s for n in self._nodes if n.kind == "altloc" for s in n.states})
                raise IllegalStateError(f"{self.entry}: no residue has altloc {glob!r}; altlocs: {alts}")
            for name in hit:
                out[name] = str(glob)
        for key, value in items.items():
            node = by_name.get(key)
            if node is None:
                known = [n.name for n in self._nodes]
                hint = f"{known[:8]}{' ...' if len(known) > 8 else ''}" if known else "none (nothing discrete)"
                extra = f", {self._global_altloc!r} (all residues)" if self._global_altloc else ""
                raise IllegalStateError(f"{self.entry} v{self.version}: unknown state key {key!r}; discrete nodes: "
                                        f"{hint}{extra} (list them with r.discrete_nodes)")
            if str(value) not in node.states:
                raise IllegalStateError(f"{self.entry} v{self.version}: {key!r} has no state {value!r}; "
                                        f"states: {node.states}")
            out[key] = str(value)
        self._dag.validate(out)
        return out

    def _rows_for(self, js: Mapping[str, str | None]) -> np.ndarray:
        keep = np.ones(self.n_rows, dtype=bool)
        alt_nodes = [i for i, n in enumerate(self._nodes) if n.kind == "altloc"]
        if alt_nodes:
            chosen = np.full(len(self._nodes), -2, dtype=np.int64)
            for i in alt_nodes:
                n = self._nodes[i]
                chosen[i] = n.states.index(js[n.name] or n.default)
            has = self._row_node >= 0
            keep[has] = self._row_code[has] == chosen[self._row_node[has]]
        if self._model_node is not None and self._row_model is not None:
            n = self._nodes[self._model_node]
            keep &= self._row_model == n.states.index(js[n.name] or n.default)
        return np.flatnonzero(keep)

    # -- the engine per set of rendered rows ------------------------------------------------------
    def _core(self, state: Mapping[str, str] | None) -> tuple[np.ndarray, Renderer]:
        js = self.resolve_state(state)
        self._last_state = js
        skey = tuple(sorted(js.items()))
        known = self._by_state.get(skey)
        if known is not None:
            return known
        rows = self._rows_for(js)
        frames = [f"{n.name}={js[n.name] or n.default}" for n in self._nodes if n.kind == "external"]
        key = hashlib.sha1(rows.tobytes() + "\0".join(frames).encode()).digest()
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self._remember(skey, hit)
            return hit
        core = Renderer(self.model_for(rows, js), device=self.device, backend=self.backend, psd=self.psd,
                        dtype=self.dtype)
        self._cache[key] = (rows, core)
        if len(self._cache) > _CACHE:
            self._cache.popitem(last=False)
        self._remember(skey, (rows, core))
        return rows, core

    def _remember(self, skey: tuple[tuple[str, str | None], ...], hit: tuple[np.ndarray, Renderer]) -> None:
        self._by_state[skey] = hit
        if len(self._by_state) > 4 * _CACHE:
            self._by_state.popitem(last=False)

    def model_for(self, rows: np.ndarray, state: Mapping[str, str | None] | None = None) -> RenderModel:
        """The engine's :class:`RenderModel` over atom-table ``rows`` (sorted, unique).

        ``state`` (a resolved joint state) picks the frame of each external-frames node (default: its default).
        """
        lut = np.full(self.n_rows, -1, dtype=np.int64)
        lut[rows] = np.arange(len(rows))
        cont = []
        for g in self._gauss:
            local = lut[g.rows]
            keep = local >= 0
            if not keep.any():
                continue
            params = {**g.per_group, **{k: v[keep] for k, v in g.per_atom.items()}}
            cont.append(GaussianDescriptor(g.name, g.operator, params, atoms=local[keep], policy=g.policy,
                                           offset=g.offset))
        disc: list[Any] = []
        for m in self._motion:
            e = m.restrict(lut, (state or {}).get(m.name))
            if e is not None:
                (disc if m.frames is not None else cont).append(e)
        return RenderModel(self.x_ref[rows], discrete=tuple(disc), continuous=tuple(cont))

    def atom_rows(self, state: Mapping[str, str] | None = None) -> np.ndarray:
        """Rows of ``store.get(entry).atoms`` rendered for ``state`` (the atom axis of every array)."""
        return self._rows_for(self.resolve_state(state))

    def mean(self, state: Mapping[str, str] | None = None) -> Any:
        """Mean structure for a joint state, shape ``(n_atoms(state), 3)`` (ndarray, or Tensor on torch)."""
        return self._core(state)[1].mean()

    def covariance(self, state: Mapping[str, str] | None = None, include_mean_only: bool = False) -> Any:
        """``U_total`` per rendered atom, shape ``(n_atoms(state), 3, 3)`` in Å²."""
        return self._core(state)[1].covariance(include_mean_only=include_mean_only)

    def psd_report(self, state: Mapping[str, str] | None = None) -> PSDReport:
        """What the PSD policy did to ``U_total``; ``atoms`` are atom-table rows."""
        rows, core = self._core(state)
        rep = core.psd_report
        return replace(rep, atoms=rows[rep.atoms])

    def sample(self, n: int, state: Mapping[str, str] | None = None, seed: int = 0) -> Any:
        """``n`` renders, shape ``(n, n_atoms(state), 3)``: mean + one ``N(0, U_total)`` draw per atom each.

        Same ``(state, seed)`` → the same array on the same backend.

        Raises
        ------
        ValidationError
            ``n`` is not a positive integer or ``seed`` is negative.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
            raise ValidationError(f"n={n!r}: the number of draws must be a positive integer (e.g. n=20)")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValidationError(f"seed={seed!r}: use a non-negative integer")
        return self._core(state)[1].sample(int(n), seed=int(seed))

    # -- output -----------------------------------------------------------------------------------
    def to_structure(self, draws: Any, state: Mapping[str, str] | None = None) -> Structure:
        """A multi-model :class:`moldb.Structure` (one model per draw), ready for ``.write(path)``.

        Parameters
        ----------
        draws : array or Tensor, shape (m, n_atoms, 3) or (n_atoms, 3)
            From :meth:`sample` or :meth:`mean`.
        state : mapping, optional
            The joint state the draws were rendered for; default: that of the last :meth:`sample` /
            :meth:`mean` call (else the default state).

        Returns
        -------
        Structure
            Atoms of the state's rows repeated per model (``pdbx_PDB_model_num`` 1..m, ids renumbered,
            coordinates from ``draws``, altloc ids cleared and occupancy 1 for the chosen altlocs).
            Anisotropic U rows are left out: a draw is a concrete position.
        """
        js = self.resolve_state(state) if state is not None else (self._last_state or self.default_state())
        rows = self._rows_for(js)
        x = draws.detach().cpu().numpy() if hasattr(draws, "detach") else np.asarray(draws)
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (len(rows), 3) or x.shape[0] == 0:
            raise ValidationError(f"draws have shape {tuple(x.shape)}; expected (m, {len(rows)}, 3) for joint "
                                  "state of the last sample() (pass state= to to_structure when it differs)")
        return _multi_model(self.structure, rows, x.astype(np.float64), js)

    def describe(self, state: Mapping[str, str] | None = None) -> dict[str, Any]:
        """JSON-able summary: components, discrete nodes, rows rendered, PSD report, notes."""
        js = self.resolve_state(state)
        rows, core = self._core(js)  # type: ignore[arg-type]
        rep = core.psd_report
        return {
            "entry": self.entry, "version": self.version, "device": self.device, "backend": self.backend,
            "adp": self.adp, "n_atoms": len(rows), "n_rows": self.n_rows,
            "state": dict(js),
            "n_joint_states": self.n_joint_states(),
            "components": [{"name": g.name, "operator": g.operator, "n_atoms": len(g.rows), "policy": g.policy,
                            "source": g.source} for g in self._gauss]
            + [{"name": m.name, "operator": m.kind, "n_atoms": len(m.rows), "policy": m.policy,
                "source": m.source} for m in self._motion],
            "psd": {"policy": rep.policy, "n_clipped": rep.n_clipped, "min_eigenvalue": rep.min_eigenvalue},
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        return (f"<EntryRenderer {self.entry} v{self.version}: {len(self._gauss)} Gaussian components, "
                f"{len(self._motion)} motion descriptors, {len(self._nodes)} discrete nodes, "
                f"{self.backend}/{self.device}>")


def _multi_model(s: Structure, rows: np.ndarray, x: np.ndarray, js: Mapping[str, str | None]) -> Structure:
    m, n = x.shape[0], len(rows)
    base = s.atoms.take(pa.array(rows))
    drop = [c for c in _U6 if c in base.column_names]
    if drop:
        base = base.drop_columns(drop)
    reps = np.tile(np.arange(n), m)
    t = base.take(pa.array(reps))
    flat = x.reshape(m * n, 3)
    cols: dict[str, pa.Array] = {"Cartn_x": pa.array(flat[:, 0]), "Cartn_y": pa.array(flat[:, 1]),
                                 "Cartn_z": pa.array(flat[:, 2]),
                                 "pdbx_PDB_model_num": pa.array(np.repeat(np.arange(1, m + 1), n), pa.int64()),
                                 "id": pa.array(np.arange(1, m * n + 1), pa.int64())}
    masks = {k: np.tile(np.asarray(v)[rows], m) for k, v in s.atom_masks.items() if k not in drop}
    for k in ("Cartn_x", "Cartn_y", "Cartn_z", "pdbx_PDB_model_num", "id"):
        masks.pop(k, None)
    if "label_alt_id" in t.column_names:
        alt = t.column("label_alt_id").cast(pa.string()).fill_null("").to_numpy(zero_copy_only=False)
        had = alt != ""
        if had.any():
            cols["label_alt_id"] = pa.array(np.where(had, None, alt), pa.string(), mask=np.ones(len(alt), bool))
            masks["label_alt_id"] = np.ones(len(alt), dtype=np.uint8)  # '.'
            if "occupancy" in t.column_names:
                occ = t.column("occupancy").to_numpy(zero_copy_only=False).astype(np.float64)
                cols["occupancy"] = pa.array(np.where(had, 1.0, occ))
    decimals = dict(s.decimals)
    text_items = list(s._text_items)
    for name, arr in cols.items():
        typ = t.schema.field(name).type if name in t.column_names else arr.type
        if name.startswith("Cartn_") or name == "occupancy":
            if not pa.types.is_floating(typ):  # a column kept verbatim as text: write the draws as numbers
                typ = pa.float64()
                text_items = [i for i in text_items if i != name]
            decimals[name] = max(int(decimals.get(name, 3)), 3 if name.startswith("Cartn_") else 2)
        if name in t.column_names:
            t = t.set_column(t.column_names.index(name), name, arr.cast(typ))
        else:
            t = t.append_column(name, arr.cast(typ))
    cats = [c for c in s.categories if c.name not in ("atom_site_anisotrop", "atom_site")]
    meta = dict(s._meta)
    meta["aniso_items"] = []
    n_models = m
    version = replace(s.version, n_models=n_models, n_atoms=m * n)
    return Structure(version, t, masks, decimals, text_items, meta, lambda: cats)


def build_renderer(store: Store, entry: str, version: int | str | None = None, device: str = "cpu",
                   descriptors: Sequence[str] | None = None, adp: Literal["deposited", "sum"] = "deposited",
                   psd: Literal["clip", "strict"] = "clip", backend: Literal["numpy", "torch"] | None = None,
                   dtype: Literal["float64", "float32"] = "float64") -> EntryRenderer:
    """Build the :class:`EntryRenderer` of one entry version (``Store.renderer``'s body).

    Raises
    ------
    EntryNotFoundError
        Unknown entry or version.
    ValidationError
        Unknown descriptor ids, a descriptor the renderer cannot evaluate, a bad device.
    """
    check_device(device, backend)  # fail before reading anything
    s = store.get(entry, version=version)
    v = s.version.version
    descs = store.descriptors(entry, version=v)
    if descriptors is not None:
        wanted = [descriptors] if isinstance(descriptors, str) else list(descriptors)
        have = {d.id for d in descs}
        unknown = [w for w in wanted if w not in have]
        if unknown:
            raise ValidationError(f"{s.entry} v{v} has no descriptor(s) {unknown}; descriptors: {sorted(have)}")
        descs = [d for d in descs if d.id in wanted]
    names = set(store.groupings(entry, version=v).column("name").to_pylist())
    scopes = sorted({d.scope for d in descs if d.scope in names and d.TYPE not in ("altloc", "ensemble")})
    memberships = {g: store.grouping(entry, g, version=v) for g in scopes}
    return EntryRenderer(s, descs, memberships, device=device, backend=backend, adp=adp, psd=psd, dtype=dtype)


def parse_state(items: Sequence[str] | None) -> dict[str, str]:
    """``["altloc:A/45=B", "model=3"]`` → ``{"altloc:A/45": "B", "model": "3"}`` (CLI ``--state``).

    Raises
    ------
    ValidationError
        An item without ``=``, or with an empty key or value.
    """
    out: dict[str, str] = {}
    for item in items or []:
        for part in [p for p in item.split(",") if p.strip()]:
            key, sep, value = part.strip().rpartition("=")
            if not sep or not key or not value:
                raise ValidationError(f"--state {part!r}: use NODE=STATE, e.g. altloc:A/45=B, altloc=B or model=3")
            out[key] = value
    return out


def render_file(store: Store, entry: str, output: str | Path | None, draws: int = 20, seed: int = 0,
                state: Mapping[str, str] | None = None, version: int | str | None = None, device: str = "cpu",
                descriptors: Sequence[str] | None = None, adp: Literal["deposited", "sum"] = "deposited",
                mean: bool = False) -> dict[str, Any]:
    """Render ``draws`` models (or the mean) of one entry to a multi-model file; the CLI's ``moldb render``.

    Returns
    -------
    dict
        :meth:`EntryRenderer.describe` plus ``output``, ``models``, ``seed`` and the RMS displacement
        of the draws from the mean (Å).
    """
    r = build_renderer(store, entry, version=version, device=device, descriptors=descriptors, adp=adp)
    js = r.resolve_state(state)
    info = r.describe(js)  # type: ignore[arg-type]
    if output is None:
        return {**info, "nodes": r.discrete_nodes}
    m = r.mean(js)  # type: ignore[arg-type]
    x = m[None] if mean else r.sample(draws, state=js, seed=seed)  # type: ignore[arg-type]
    xn = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    mn = m.detach().cpu().numpy() if hasattr(m, "detach") else np.asarray(m)
    path = r.to_structure(xn, state=js).write(output)  # type: ignore[arg-type]
    rms = float(np.sqrt(((xn - mn) ** 2).sum(-1).mean()))
    return {**info, "output": str(path), "models": int(xn.shape[0]), "seed": None if mean else seed,
            "rms_displacement": rms}
