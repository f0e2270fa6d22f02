"""Glue between the IR models and the store: the ingest hook, reads and user writes.

This is the one IR module that touches storage (through :mod:`moldb.storage.ir_store`),
at the level of :mod:`moldb.ingest.load`. Importing it registers the ingest hook
``moldb.ir`` that writes the built-in groupings and descriptors inside each commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ValidationError
from moldb.ingest.hooks import register_ingest_hook
from moldb.ir.builtin import Membership, builtin_descriptors, builtin_groupings
from moldb.ir.descriptors import descriptor_from
from moldb.ir.model import Descriptor, Grouping, Provenance, check_name
from moldb.ir.operators import BUILTIN_OPERATORS, OperatorSpec
from moldb.schema.parsed import CategoryTables
from moldb.schema.records import VersionInfo
from moldb.storage import ir_store
from moldb.storage.backend import Backend

__all__ = ["add_descriptor", "add_grouping", "descriptor_objects", "grouping_membership", "groupings_table",
           "ingest_hook", "operators_table", "resolve_cells"]


def _grouping_cell(g: Grouping, m: Membership) -> tuple[str, str, dict[str, Any], bytes]:
    arrays: dict[str, np.ndarray] = {"group": m.group.astype(np.int32), "rows": m.rows.astype(np.int64)}
    if m.weights is not None:
        arrays["weights"] = np.asarray(m.weights, dtype=np.float32)
    spec = g.model_dump(mode="json", exclude={"groups"})
    spec["n_groups"] = len(g.groups)
    return g.name, g.kind, spec, ir_store.pack_arrays(arrays, {"names": g.groups})


def _descriptor_cell(d: Descriptor) -> tuple[str, str, dict[str, Any], bytes]:
    spec = d.spec()
    return d.id, str(spec["type"]), spec, ir_store.pack_arrays(d.arrays())


def register_operators(backend: Backend, ts: int, specs: Sequence[OperatorSpec] = BUILTIN_OPERATORS,
                       bodies: Mapping[str, bytes] | None = None) -> None:
    """Write the operators of ``specs`` the store does not have yet (same name, version and hash)."""
    flags = backend.handle_flags()
    if specs is BUILTIN_OPERATORS and flags.get("ir_builtin_ops"):
        return  # already registered through this handle
    have = {(c["name"], c["version"], c["content_hash"]) for c in ir_store.read_operator_cells(backend)}
    rows = []
    for s in specs:
        body = (bodies or {}).get(s.name, b"")
        h = s.content_hash(body or None)
        if (s.name, s.version, h) not in have:
            rows.append((s.name, s.version, s.type, h, s.venue, s.model_dump(mode="json"), body or b"\0"))
    ir_store.write_operator_cells(backend, ts, rows)
    if specs is BUILTIN_OPERATORS:
        flags["ir_builtin_ops"] = True


def ingest_hook(backend: Backend, ts: int, entry: str, parsed: Any, blocks: dict[str, int],
                new_groups: list[str]) -> None:
    """Write the built-in groupings and descriptors of the version being committed."""
    if not ir_store.has_ir(backend):
        return  # a store created before the IR arrays (upgrade with `moldb migrate`)
    index = backend.read_versions(entry, attrs=["ts"])
    version = int(np.max(index["version"])) + 1 if len(index["version"]) else 1
    cats = CategoryTables(parsed.categories)
    cells, residue = [], None
    for g, m in builtin_groupings(parsed.atoms, cats):  # pack each as it comes: bounded memory
        cells.append(_grouping_cell(g, m))
        if g.name == "residue":
            residue = m
    descriptors = builtin_descriptors(parsed.atoms, cats, residue)
    ir_store.write_ir_cells(backend, "groupings", ts, entry, version, cells)
    del cells
    ir_store.write_ir_cells(backend, "descriptors", ts, entry, version, [_descriptor_cell(d) for d in descriptors])
    register_operators(backend, ts)


register_ingest_hook("moldb.ir", ingest_hook)


def resolve_cells(backend: Backend, name: str, records: list[VersionInfo], rec: VersionInfo,
                  as_of: int | None) -> dict[str, dict[str, Any]]:
    """The cells of ``name`` visible at version ``rec``: key → cell (with the version it is stored under).

    A cell counts for its version when written at or after that version's commit; user cells
    (not built-in) of an earlier version carry over while the atoms (``topo`` block) are unchanged.
    """
    by_version = {r.version: r for r in records}
    best: dict[str, dict[str, Any]] = {}
    for c in ir_store.read_cells(backend, name, rec.entry):
        owner = by_version.get(c["version"])
        if owner is None or c["ts"] < owner.timestamp or (as_of is not None and c["ts"] > as_of):
            continue
        if c["version"] != rec.version:
            source = str(c["spec"].get("provenance", {}).get("source", ""))
            inherited = (c["version"] < rec.version and not c["spec"].get("builtin", False)
                         and not source.startswith("ingest") and owner.blocks.get("topo") == rec.blocks.get("topo"))
            if not inherited:
                continue
        old = best.get(c["name"])
        if old is None or (c["version"], c["ts"]) > (old["version"], old["ts"]):
            best[c["name"]] = c
    return best


def groupings_table(cells: dict[str, dict[str, Any]]) -> pa.Table:
    """One row per grouping: name, kind, groups, members, weighted, built-in, version, source, unparsed."""
    rows = sorted(cells.values(), key=lambda c: (not c["spec"].get("builtin", False), c["name"]))
    return pa.table({
        "name": pa.array([c["name"] for c in rows], pa.string()),
        "kind": pa.array([c["tag"] for c in rows], pa.string()),
        "n_groups": pa.array([c["spec"].get("n_groups", 0) for c in rows], pa.int64()),
        "n_members": pa.array([c["spec"].get("n_members", 0) for c in rows], pa.int64()),
        "weighted": pa.array([bool(c["spec"].get("weighted")) for c in rows], pa.bool_()),
        "builtin": pa.array([bool(c["spec"].get("builtin")) for c in rows], pa.bool_()),
        "version": pa.array([c["version"] for c in rows], pa.int64()),
        "source": pa.array([c["spec"].get("provenance", {}).get("source", "") for c in rows], pa.string()),
        "n_unparsed": pa.array([len(c["spec"].get("unparsed", [])) for c in rows], pa.int64()),
    })


def grouping_membership(backend: Backend, entry: str, cell: dict[str, Any]) -> pa.Table:
    """Membership of one grouping: ``group`` (name, dictionary), ``group_index``, ``row``, ``weight``."""
    got = ir_store.unpack_arrays(ir_store.read_cell(backend, "groupings", entry, cell["version"], cell["name"]))
    names = pa.array(got.get("names", []), pa.string())
    idx = pa.array(got["group"], pa.int32())
    cols: dict[str, Any] = {"group": pa.DictionaryArray.from_arrays(idx, names), "group_index": idx,
                            "row": pa.array(got["rows"], pa.int64())}
    if "weights" in got:
        cols["weight"] = pa.array(got["weights"].astype(np.float64), pa.float64())
    t = pa.table(cols)
    meta = {k: str(v) for k, v in cell["spec"].items() if isinstance(v, str | int | bool)}
    return t.replace_schema_metadata({**meta, "kind": cell["tag"], "version": str(cell["version"])})


def _rows_of(value: Any, n_atoms: int, label: str) -> np.ndarray:
    if hasattr(value, "rows"):
        value = value.rows
    if isinstance(value, pa.Array | pa.ChunkedArray):
        value = value.to_numpy(zero_copy_only=False)
    a = np.asarray(value)
    if a.dtype == bool:
        if a.shape != (n_atoms,):
            raise ValidationError(f"group {label!r}: boolean mask of length {a.size}, the entry has {n_atoms} atoms")
        return np.flatnonzero(a).astype(np.int64)
    if a.size and a.dtype.kind not in "iu":
        raise ValidationError(f"group {label!r}: members must be atom row indices, a boolean mask or a selection")
    rows = a.astype(np.int64).ravel()
    if rows.size and (rows.min() < 0 or rows.max() >= n_atoms):
        raise ValidationError(f"group {label!r}: row {int(rows.max() if rows.max() >= n_atoms else rows.min())} "
                              f"is outside the entry's {n_atoms} atoms")
    return rows


def add_grouping(backend: Backend, rec: VersionInfo, existing: Mapping[str, Any], name: str, kind: str,
                 members: Mapping[str, Any], weights: Mapping[str, Any] | None,
                 provenance: Mapping[str, Any] | None, replace: bool = False) -> Grouping:
    """Validate and write a user grouping for version ``rec`` under the writer lock."""
    check_name(name, "grouping name")
    old = existing.get(name)
    if old is not None and (old["spec"].get("builtin") or not replace):
        why = "a built-in grouping" if old["spec"].get("builtin") else "already defined (pass replace=True)"
        raise ValidationError(f"grouping {name!r} of {rec.entry} is {why}")
    if not members:
        raise ValidationError(f"grouping {name!r}: no groups given")
    parts, wparts = [], []
    for i, (label, value) in enumerate(members.items()):
        rows = _rows_of(value, rec.n_atoms, str(label))
        parts.append((np.full(len(rows), i, np.int32), rows))
        if weights is not None:
            w = np.asarray(weights[label], dtype=np.float64).ravel()
            if w.shape != rows.shape:
                raise ValidationError(f"group {label!r}: {w.size} weights for {rows.size} members")
            wparts.append(w)
    m = Membership(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                   np.concatenate(wparts) if weights is not None else None)
    g = Grouping(name=name, kind=kind, groups=[str(k) for k in members], n_members=len(m),
                 weighted=weights is not None, provenance=Provenance(**dict(provenance or {})))
    with backend.writing() as ts:
        ir_store.write_ir_cells(backend, "groupings", ts, rec.entry, rec.version, [_grouping_cell(g, m)])
    return g


def add_descriptor(backend: Backend, rec: VersionInfo, existing: Mapping[str, Any], descriptor: Descriptor,
                   groupings: Mapping[str, Any], provenance: Mapping[str, Any] | None) -> Descriptor:
    """Validate (id, scope grouping, edge parents) and write a descriptor for version ``rec``."""
    d = descriptor.model_copy(deep=True)
    if provenance is not None:
        d.provenance = Provenance(**dict(provenance))
    if not d.id:
        base = d.TYPE if d.TYPE != "generic" else "descriptor"
        d.id = next(f"{base}-{i}" for i in range(1, 10**6) if f"{base}-{i}" not in existing)
    check_name(d.id, "descriptor id")
    if d.id in existing:
        raise ValidationError(f"descriptor {d.id!r} of {rec.entry} already exists; choose another id")
    if d.scope not in ("atom",) and d.scope not in groupings:
        raise ValidationError(f"descriptor {d.id!r}: scope {d.scope!r} is not a grouping of {rec.entry} "
                              f"(groupings: {sorted(groupings)})")
    for e in d.edges:
        if e.parent not in existing:
            raise ValidationError(f"descriptor {d.id!r}: edge to unknown descriptor {e.parent!r}")
    with backend.writing() as ts:
        ir_store.write_ir_cells(backend, "descriptors", ts, rec.entry, rec.version, [_descriptor_cell(d)])
        artifact = _artifact_operator(d)
        if artifact is not None:
            register_operators(backend, ts, [artifact[0]], bodies={artifact[0].name: artifact[1]})
    return d


def _artifact_operator(d: Descriptor) -> tuple[OperatorSpec, bytes] | None:
    """The operator-registry row of a descriptor that carries its own artifact.

    An inline TorchScript decoder is registered with its bytes as the body. Its content hash is
    the hash of the spec plus the bytes. An external H5MD reference is registered with its URI and
    sha256. Returns None for every other descriptor.
    """
    from moldb.ir.motion import MOTION_OPERATORS

    kind = {"neural_decoder": "neural_decoder/torchscript_v1", "external_frames": "external_reference/h5md_v1"}
    name = kind.get(d.TYPE)
    if name is None:
        return None
    base = next(op for op in MOTION_OPERATORS if op.name == name)
    art: Any = d  # NeuralDecoder or ExternalFrames (moldb.ir.motion)
    if d.TYPE == "neural_decoder":
        return base.model_copy(update={"sha256": art.sha256}), np.asarray(art.blob, dtype=np.uint8).tobytes()
    return base.model_copy(update={"uri": art.uri, "sha256": art.sha256}), b""


def descriptor_objects(backend: Backend, entry: str, cells: dict[str, dict[str, Any]]) -> list[Descriptor]:
    """Typed descriptors for the resolved ``cells``."""
    out = []
    for c in sorted(cells.values(), key=lambda c: c["ts"]):
        arrays = ir_store.unpack_arrays(ir_store.read_cell(backend, "descriptors", entry, c["version"], c["name"]))
        out.append(descriptor_from(c["spec"], arrays))
    return out


def operators_table(backend: Backend) -> pa.Table:
    """The store's operator registry: name, version, type, content hash, venue, composition, registered ts."""
    cells = sorted(ir_store.read_operator_cells(backend), key=lambda c: (c["name"], c["version"]))
    return pa.table({
        **{k: pa.array([c[k] for c in cells], pa.string()) for k in ("name", "version", "type", "content_hash",
                                                                     "venue")},
        "composition": pa.array([str(c["spec"].get("composition", "")) for c in cells], pa.string()),
        "subcase": pa.array([str(c["spec"].get("subcase", "")) for c in cells], pa.string()),
        "timestamp": pa.array([c["ts"] for c in cells], pa.int64()),
    })
