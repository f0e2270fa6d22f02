"""Map an :class:`~moldb.ingest.rmf.RMFDocument` onto moldb: particles as atom rows, the rest as IR.

* **Particles** — every ``representation`` node with ``physics/coordinates`` (atoms and
  coarse beads alike) is one atom row; coordinates are made global by applying the
  ``rotation`` / ``translation`` reference frames of the node and its ancestors (RMF's
  ``CoordinateTransformer``). Chain (``chain id``), residue number (``residue index``,
  else ``first residue index``, else the first of ``residue indexes``), residue name
  (``residue type``) and element (``element``, atomic number) come from the nearest
  node up the hierarchy that has them; the atom name is the node name (IMP's ``HET:`` prefix of atom nodes removed).
* **Frames** — RMF frames become models (``pdbx_PDB_model_num`` = frame + 1), so a
  multi-frame file is a multi-model entry, and descriptor ``rmf_frames`` (Regime 2,
  sample axis ``frame``) records frame names, types and the frame hierarchy.
* **Groupings** — ``rmf/hierarchy`` (one group per node: the particle rows below it),
  ``rmf/resolution`` (multi-resolution representations: ``explicit resolution`` of the
  nearest ancestor, else atomic / residue / fragment / particle), ``rmf/features``
  (feature nodes → rows of the particles they reference), ``rmf/bonds`` (one group of
  two rows per bond).
* **Descriptors** — ``radii`` (per-row radius and mass), ``rmf_attributes`` (every key:
  category, type, static and per-frame node counts), ``rmf_frame_values`` (per-frame
  float values of nodes that are not coordinates, e.g. feature scores).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ParseError
from moldb.ingest.columns import dictionary_array
from moldb.ingest.extras import ExtraDescriptor, ExtraGrouping, ParsedEntryWithIR, partition
from moldb.ingest.rmf import Key, RMFDocument
from moldb.schema.parsed import MASK_DOT, Category, SourceInfo

__all__ = ["document_to_entry", "global_coordinates"]

_COORD: Key = ("physics", "coordinates")


def _rotation(q: tuple[float, ...]) -> np.ndarray:
    w, x, y, z = (np.asarray(q, np.float64) / (np.linalg.norm(q) or 1.0)).tolist()
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _parent(doc: RMFDocument) -> np.ndarray:
    par = np.full(len(doc.nodes), -1, np.int64)
    for n, p in doc.walk():
        if p is not None:
            par[n] = p
    return par


def _lineage(par: np.ndarray, n: int) -> list[int]:
    out = []
    while n >= 0:
        out.append(n)
        n = int(par[n])
    return out


def global_coordinates(doc: RMFDocument, nodes: list[int], frame: int | None, par: np.ndarray) -> np.ndarray:
    """Global coordinates (n, 3) of ``nodes`` in ``frame``: local coordinates through every reference frame."""
    out = np.full((len(nodes), 3), np.nan)
    for i, n in enumerate(nodes):
        v = doc.value(n, _COORD, frame)
        if v is None:
            continue
        x = np.asarray(v, np.float64)
        for a in _lineage(par, n):
            rot, tr = doc.value(a, ("physics", "rotation"), frame), doc.value(a, ("physics", "translation"), frame)
            if rot is not None and tr is not None:
                x = _rotation(rot) @ x + np.asarray(tr, np.float64)
        out[i] = x
    return out


def _nearest(doc: RMFDocument, par: np.ndarray, n: int, key: Key) -> Any:
    for a in _lineage(par, n):
        v = doc.value(a, key)
        if v is not None:
            return v
    return None


def _element(z: Any) -> str | None:
    if z is None:
        return None
    import gemmi

    name = gemmi.Element(int(z)).name
    return None if name == "X" else str(name)


def _entry_id(path: str) -> str:
    stem = Path(path).name
    for suffix in (".gz", ".rmf3", ".rmfz", ".rmf"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in stem)[:64].upper() or "RMF"


def document_to_entry(doc: RMFDocument) -> ParsedEntryWithIR:
    """Build the :class:`ParsedEntryWithIR` of an RMF document (see the module docstring).

    Raises
    ------
    ParseError
        The file has no particle with coordinates (nothing to store).
    """
    par = _parent(doc)
    in_tree = set(n for n, _ in doc.walk())
    particles = [n for n in sorted(in_tree) if doc.nodes[n].type == "representation"
                 and (doc.has(n, _COORD, static_only=True) or any(_COORD in f.values and n in f.values[_COORD]
                                                                  for f in doc.frames))]
    if not particles:
        raise ParseError(doc.path, f"RMF file ({doc.layout}) has {len(doc.nodes)} node(s) but no particle with "
                         "coordinates: nothing to store")
    frames: list[int | None] = list(range(len(doc.frames))) if doc.frames else [None]
    n_p, n_f = len(particles), len(frames)
    xyz = np.concatenate([global_coordinates(doc, particles, f, par) for f in frames])
    if np.isnan(xyz).any():
        bad = int(np.flatnonzero(np.isnan(xyz).any(axis=1))[0])
        raise ParseError(doc.path, f"particle node {particles[bad % n_p]} has no coordinates in frame "
                         f"{bad // n_p}; cannot store a partial frame")
    chain, seq, comp, elem, name = [], [], [], [], []
    for n in particles:
        c = _nearest(doc, par, n, ("sequence", "chain id"))
        chain.append(str(c) if c not in (None, "") else "A")
        s = _nearest(doc, par, n, ("sequence", "residue index"))
        if s is None:
            s = _nearest(doc, par, n, ("sequence", "first residue index"))
        if s is None:
            idx = _nearest(doc, par, n, ("sequence", "residue indexes"))
            s = idx[0] if idx else None
        seq.append(s)
        comp.append(_nearest(doc, par, n, ("sequence", "residue type")))
        elem.append(_element(doc.value(n, ("physics", "element"))))
        label = doc.nodes[n].name.strip()
        if elem[-1] is not None and label[:4] in ("HET:", "ATOM"):  # IMP writes atom nodes as "HET: N  "
            label = label.split(":", 1)[-1].strip()
        name.append(label or f"n{n}")
    rep = np.tile
    chains = np.array(chain, dtype=object)
    entity = {c: str(i + 1) for i, c in enumerate(dict.fromkeys(chain))}
    seq_arr = np.array([-1 if s is None else int(s) for s in seq], np.int64)
    seq_null = np.array([s is None for s in seq])
    comp_arr = np.array(["" if c is None else str(c) for c in comp], dtype=object)
    comp_mask = np.where(comp_arr == "", MASK_DOT, 0).astype(np.uint8)
    elem_arr = np.array(["" if e is None else e for e in elem], dtype=object)
    elem_mask = np.where(elem_arr == "", MASK_DOT, 0).astype(np.uint8)
    n = n_p * n_f
    masks: dict[str, np.ndarray] = {}
    cols: dict[str, pa.Array] = {
        "group_PDB": dictionary_array(np.full(n, "ATOM", dtype=object)),
        "id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "type_symbol": dictionary_array(rep(elem_arr, n_f), rep(elem_mask, n_f)),
        "label_atom_id": dictionary_array(rep(np.array(name, dtype=object), n_f)),
        "label_comp_id": dictionary_array(rep(comp_arr, n_f), rep(comp_mask, n_f)),
        "label_asym_id": dictionary_array(rep(chains, n_f)),
        "label_entity_id": dictionary_array(rep(np.array([entity[c] for c in chain], dtype=object), n_f)),
        "label_seq_id": pa.array(rep(seq_arr, n_f), mask=rep(seq_null, n_f)),
        "Cartn_x": pa.array(xyz[:, 0]), "Cartn_y": pa.array(xyz[:, 1]), "Cartn_z": pa.array(xyz[:, 2]),
        "auth_seq_id": pa.array(rep(seq_arr, n_f), mask=rep(seq_null, n_f)),
        "auth_asym_id": dictionary_array(rep(chains, n_f)),
        "pdbx_PDB_model_num": pa.array(np.repeat(np.arange(1, n_f + 1, dtype=np.int64), n_p)),
    }
    if elem_mask.any():
        masks["type_symbol"] = rep(elem_mask, n_f)
    if comp_mask.any():
        masks["label_comp_id"] = rep(comp_mask, n_f)
    if seq_null.any():
        masks["label_seq_id"] = masks["auth_seq_id"] = rep(seq_null.astype(np.uint8) * MASK_DOT, n_f)
    atoms = pa.table(cols)
    raw = Path(doc.path).read_bytes()
    source = SourceInfo(doc.path, f"rmf-{doc.layout}", hashlib.sha256(raw).hexdigest(), len(raw))
    eid = _entry_id(doc.path)
    title = doc.description.strip() or f"RMF ({doc.layout}) {Path(doc.path).name}"
    cats = [Category("entry", pa.table({"id": pa.array([eid])})),
            Category("struct", pa.table({"entry_id": pa.array([eid]), "title": pa.array([title])})),
            Category("software", pa.table({"name": pa.array([doc.producer or "RMF"]),
                                           "classification": pa.array(["model building"])}))]
    decimals = {"Cartn_x": 3, "Cartn_y": 3, "Cartn_z": 3}
    entry = ParsedEntryWithIR(eid, atoms, masks, list(cols), decimals, cats, source)
    _add_ir(entry, doc, particles, par, n_f)
    return entry


def _add_ir(entry: ParsedEntryWithIR, doc: RMFDocument, particles: list[int], par: np.ndarray, n_f: int) -> None:
    n_p = len(particles)
    row_of = {p: i for i, p in enumerate(particles)}
    offsets = np.arange(n_f, dtype=np.int64) * n_p

    def all_frames(local: list[int]) -> list[int]:
        a = np.asarray(local, np.int64)
        return (offsets[:, None] + a[None, :]).ravel().tolist()

    below: dict[int, list[int]] = {}
    for p in particles:
        for a in _lineage(par, p):
            below.setdefault(a, []).append(row_of[p])
    hier = [(f"n{k} {doc.nodes[k].name}".strip(), all_frames(v)) for k, v in sorted(below.items())]
    groupings: list[ExtraGrouping] = [partition("rmf/hierarchy", "rmf.hierarchy", hier, "ingest:rmf/hierarchy")]
    res: dict[str, list[int]] = {}
    for p in particles:
        r = _nearest(doc, par, p, ("sequence", "explicit resolution"))
        if r is not None:
            label = f"resolution {float(r):g}"
        elif doc.value(p, ("physics", "element")) is not None:
            label = "atomic"
        elif doc.value(p, ("sequence", "residue index")) is not None:
            label = "residue"
        elif doc.value(p, ("sequence", "residue indexes")) is not None or \
                doc.value(p, ("sequence", "first residue index")) is not None:
            label = "fragment"
        else:
            label = "particle"
        res.setdefault(label, []).append(row_of[p])
    groupings.append(partition("rmf/resolution", "multiscale.representation",
                               {k: all_frames(v) for k, v in res.items()}, "ingest:rmf/explicit resolution"))
    reps = doc.static.get(("feature", "representation"), {})
    feats = []
    for node in doc.nodes:
        if node.type != "feature":
            continue
        rows = sorted({r for m in reps.get(node.id, []) for r in below.get(int(m), [])})
        if rows:
            feats.append((f"n{node.id} {node.name}".strip(), all_frames(rows)))
    if feats:
        groupings.append(partition("rmf/features", "rmf.feature", feats, "ingest:rmf/feature"))
    bonds = [(f"b{i}", all_frames([row_of[a], row_of[b]])) for i, (a, b) in enumerate(doc.bonds)
             if a in row_of and b in row_of]
    if bonds:
        groupings.append(partition("rmf/bonds", "bond", bonds, "ingest:rmf/bond"))
    entry.extra_groupings.extend(groupings)

    radius = np.array([np.nan if (v := doc.value(p, ("physics", "radius"))) is None else v for p in particles])
    mass = np.array([np.nan if (v := doc.value(p, ("physics", "mass"))) is None else v for p in particles])
    entry.extra_descriptors.append(ExtraDescriptor(
        {"type": "radii", "id": "radii", "regime": 3, "scope": "atom", "mode": "A", "composition": "replace",
         "signal_type": "unknown", "attrs": {"units": "radius Å, mass Da", "per": "row", "source": "physics/radius"},
         "provenance": {"source": "ingest:rmf/physics radius"}},
        {"rows": np.arange(n_p * n_f, dtype=np.int64), "radius": np.tile(radius, n_f), "mass": np.tile(mass, n_f)}))
    catalogue = {}
    for key, kind in sorted(doc.key_types.items()):
        n_static = len(doc.static.get(key, {}))
        n_frame = max((len(f.values.get(key, {})) for f in doc.frames), default=0)
        catalogue[f"{key[0]}/{key[1]}"] = {"type": kind, "static_nodes": n_static, "per_frame_nodes": n_frame}
    node_types: dict[str, int] = {}
    for node in doc.nodes:
        node_types[node.type] = node_types.get(node.type, 0) + 1
    entry.extra_descriptors.append(ExtraDescriptor(
        {"type": "rmf_attributes", "id": "rmf_attributes", "regime": 1, "scope": "rmf/hierarchy", "mode": "A",
         "composition": "replace", "signal_type": "unknown",
         "attrs": {"layout": doc.layout, "producer": doc.producer, "keys": catalogue, "node_types": node_types,
                   "n_nodes": len(doc.nodes), "particle_nodes_first": particles[:1]},
         "provenance": {"source": "ingest:rmf"}},
        {"node": np.arange(len(doc.nodes), dtype=np.int64), "parent": par,
         "particle_row": np.array([row_of.get(i, -1) for i in range(len(doc.nodes))], np.int64)}))
    if doc.frames:
        entry.extra_descriptors.append(ExtraDescriptor(
            {"type": "ensemble", "id": "rmf_frames", "regime": 2, "scope": "model", "mode": "A",
             "sample_axis": "frame", "composition": "replace", "signal_type": "coordinate_set",
             "states": [f.name or f"frame {i}" for i, f in enumerate(doc.frames)],
             "attrs": {"frame_types": [f.type for f in doc.frames], "frame_ids": [f.id for f in doc.frames],
                       "frame_parents": [f.parents for f in doc.frames], "rows_per_frame": len(particles)},
             "provenance": {"source": "ingest:rmf/frames"}}))
    arrays: dict[str, np.ndarray] = {}
    for key in doc.per_frame_keys():
        if doc.key_types.get(key) != "float":
            continue
        nodes = sorted({n for f in doc.frames for n in f.values.get(key, {})})
        vals = np.array([[f.values.get(key, {}).get(n, np.nan) for n in nodes] for f in doc.frames], np.float64)
        tag = f"{key[0]}/{key[1]}"
        arrays[f"{tag}:nodes"], arrays[f"{tag}:values"] = np.asarray(nodes, np.int64), vals
    if arrays:
        entry.extra_descriptors.append(ExtraDescriptor(
            {"type": "rmf_frame_values", "id": "rmf_frame_values", "regime": 2, "scope": "rmf/hierarchy",
             "mode": "A", "sample_axis": "frame", "composition": "replace", "signal_type": "unknown",
             "attrs": {"keys": sorted({k.rsplit(':', 1)[0] for k in arrays})},
             "provenance": {"source": "ingest:rmf/per-frame values"}}, arrays))
