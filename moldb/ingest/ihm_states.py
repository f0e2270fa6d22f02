"""IHM (integrative / hybrid) models: sphere-only models as particles, multi-state models as discrete states.

* :func:`read_ihm_spheres` turns an mmCIF block whose coordinates are only
  ``_ihm_sphere_obj_site`` rows (coarse-grained beads, no ``_atom_site``) into a
  :class:`~moldb.ingest.extras.ParsedEntryWithIR`: one atom row per sphere (chain
  ``asym_id``, entity, residue number ``seq_id_begin``, residue name from
  ``_entity_poly_seq`` when the bead covers one residue, atom name ``BEAD``, model
  ``model_id``) and a ``radii`` descriptor with each sphere's ``object_radius`` and
  ``rmsf`` exactly as the file gives them. Every category stays verbatim.
* :func:`ihm_descriptors` derives, from the categories of any IHM file,
  ``ihm_states`` (Regime 1: one state per ``_ihm_multi_state_modeling`` row with its
  ``population_fraction``, NaN where the file gives ``.``/``?``, state names, types,
  groups and the models of each state through ``_ihm_multi_state_model_group_link``
  → ``_ihm_model_group_link``) and ``ihm_model_groups`` (one state per model group
  with its models). Both are on the sample axis ``state`` / ``model_group`` over the
  ``model`` grouping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from moldb.errors import ParseError
from moldb.ingest.columns import dictionary_array
from moldb.ingest.extras import ExtraDescriptor, ParsedEntryWithIR
from moldb.ingest.mmcif import _category, _entry_id, _stem
from moldb.schema.parsed import MASK_DOT, SourceInfo

__all__ = ["ihm_descriptors", "read_ihm_spheres"]


def _float(v: Any) -> float:
    try:
        return float(v) if v not in (None, False, "", ".", "?") else math.nan
    except (TypeError, ValueError):
        return math.nan


def read_ihm_spheres(block: Any, source: SourceInfo) -> ParsedEntryWithIR:
    """Parse a sphere-only IHM block (gemmi ``cif.Block``) into particles with radii.

    Raises
    ------
    ParseError
        A sphere row lacks coordinates or a model id (names the row and item).
    """
    path = source.path
    raw = block.get_mmcif_category("_ihm_sphere_obj_site.", raw=False)
    for item in ("Cartn_x", "Cartn_y", "Cartn_z", "asym_id", "model_id", "object_radius"):
        if item not in raw:
            raise ParseError(path, f"_ihm_sphere_obj_site has no {item!r} item; cannot place the spheres")
    n = len(raw["Cartn_x"])
    xyz = np.empty((n, 3))
    for j, a in enumerate("xyz"):
        col = raw[f"Cartn_{a}"]
        try:
            xyz[:, j] = np.asarray(col, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            bad = next(i for i, v in enumerate(col) if not isinstance(v, str) or math.isnan(_float(v)))
            raise ParseError(path, f"_ihm_sphere_obj_site row {bad + 1}: Cartn_{a} = {col[bad]!r} is not a "
                             "number") from exc
    try:
        model = np.asarray(raw["model_id"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ParseError(path, "_ihm_sphere_obj_site.model_id must be an integer on every row") from exc
    begin = [_float(v) for v in raw.get("seq_id_begin", [None] * n)]
    end = [_float(v) for v in raw.get("seq_id_end", [None] * n)]
    seq_null = np.array([math.isnan(b) for b in begin])
    seq = np.array([0 if math.isnan(b) else int(b) for b in begin], np.int64)
    asym = np.array([str(v) for v in raw["asym_id"]], dtype=object)
    entity = np.array([str(v) if isinstance(v, str) else "" for v in raw.get("entity_id", [""] * n)],
                      dtype=object)
    polyseq = block.get_mmcif_category("_entity_poly_seq.", raw=False)
    names = {(str(e), str(s)): str(m) for e, s, m in zip(polyseq.get("entity_id", []), polyseq.get("num", []),
                                                        polyseq.get("mon_id", []), strict=False)}
    comp = np.array([names.get((entity[i], str(int(begin[i]))), "") if begin[i] == end[i] else ""
                     for i in range(n)], dtype=object)
    comp_mask = np.where(comp == "", MASK_DOT, 0).astype(np.uint8)
    seq_mask = seq_null.astype(np.uint8) * MASK_DOT
    ids = raw.get("id")
    try:
        serial = np.asarray(ids, dtype=np.int64) if ids is not None else np.arange(1, n + 1, dtype=np.int64)
    except (TypeError, ValueError):
        serial = np.arange(1, n + 1, dtype=np.int64)
    cols: dict[str, pa.Array] = {
        "group_PDB": dictionary_array(np.full(n, "ATOM", dtype=object)),
        "id": pa.array(serial),
        "label_atom_id": dictionary_array(np.full(n, "BEAD", dtype=object)),
        "label_comp_id": dictionary_array(comp, comp_mask),
        "label_asym_id": dictionary_array(asym),
        "label_entity_id": dictionary_array(entity),
        "label_seq_id": pa.array(seq, mask=seq_null),
        "Cartn_x": pa.array(xyz[:, 0]), "Cartn_y": pa.array(xyz[:, 1]), "Cartn_z": pa.array(xyz[:, 2]),
        "auth_seq_id": pa.array(seq, mask=seq_null),
        "auth_asym_id": dictionary_array(asym),
        "pdbx_PDB_model_num": pa.array(model),
    }
    masks: dict[str, np.ndarray] = {}
    if comp_mask.any():
        masks["label_comp_id"] = comp_mask
    if seq_mask.any():
        masks["label_seq_id"] = masks["auth_seq_id"] = seq_mask
    decimals = {f"Cartn_{a}": _decimals(raw[f"Cartn_{a}"]) for a in "xyz"}
    categories = [_category(prefix[1:-1], block.get_mmcif_category(prefix, raw=False))
                  for prefix in block.get_mmcif_category_names()]
    entry = ParsedEntryWithIR(_entry_id(block) or _stem(path), pa.table(cols), masks, list(cols), decimals,
                              categories, source)
    radius = np.array([_float(v) for v in raw["object_radius"]])
    rmsf = np.array([_float(v) for v in raw.get("rmsf", [None] * n)])
    entry.extra_descriptors.append(ExtraDescriptor(
        {"type": "radii", "id": "radii", "regime": 3, "scope": "atom", "mode": "A", "composition": "replace",
         "signal_type": "unknown",
         "attrs": {"units": "radius Å, rmsf Å", "per": "row", "source": "_ihm_sphere_obj_site.object_radius"},
         "provenance": {"source": "ingest:_ihm_sphere_obj_site"}},
        {"rows": np.arange(n, dtype=np.int64), "radius": radius, "rmsf": rmsf}))
    return entry


def _decimals(col: list[Any]) -> int:
    best = 0
    for v in col[:200]:
        if isinstance(v, str) and "." in v:
            best = max(best, len(v) - v.index(".") - 1)
    return best or 3


def _rows(cats: Mapping[str, pa.Table], name: str) -> list[dict[str, Any]]:
    t = cats.get(name)
    return t.to_pylist() if t is not None and t.num_rows else []


def ihm_descriptors(cats: Mapping[str, pa.Table], atoms: pa.Table) -> list[ExtraDescriptor]:
    """``ihm_states`` and ``ihm_model_groups`` descriptors from an IHM file's categories (empty if none)."""
    groups = _rows(cats, "ihm_model_group")
    links = _rows(cats, "ihm_model_group_link")
    if not groups and not _rows(cats, "ihm_multi_state_modeling"):
        return []
    models_of: dict[str, list[str]] = {}
    for r in links:
        models_of.setdefault(str(r.get("group_id")), []).append(str(r.get("model_id")))
    present = []
    if "pdbx_PDB_model_num" in atoms.column_names:
        present = sorted({int(v) for v in atoms.column("pdbx_PDB_model_num").to_pylist() if v is not None})
    model_index = {str(m): i for i, m in enumerate(present)}
    out: list[ExtraDescriptor] = []
    scope = "model" if len(present) > 1 else "atom"
    if groups:
        gids = [str(r.get("id")) for r in groups]
        out.append(ExtraDescriptor(
            {"type": "discrete_states", "id": "ihm_model_groups", "regime": 1, "scope": scope, "mode": "A",
             "sample_axis": "model_group", "composition": "replace", "signal_type": "categorical_state",
             "states": gids,
             "attrs": {"names": [r.get("name") for r in groups],
                       "models": [models_of.get(g, []) for g in gids]},
             "provenance": {"source": "ingest:_ihm_model_group"}},
            {"model_group": np.array([[i, model_index.get(m, -1)] for i, g in enumerate(gids)
                                      for m in models_of.get(g, [])], np.int64).reshape(-1, 2)}))
    states = _rows(cats, "ihm_multi_state_modeling")
    if states:
        state_groups: dict[str, list[str]] = {}
        for r in _rows(cats, "ihm_multi_state_model_group_link"):
            state_groups.setdefault(str(r.get("state_id")), []).append(str(r.get("model_group_id")))
        sids = [str(r.get("state_id")) for r in states]
        pops = np.array([_float(r.get("population_fraction")) for r in states])
        state_models = [[m for g in state_groups.get(s, []) for m in models_of.get(g, [])] for s in sids]
        pairs = [[i, model_index.get(m, -1)] for i, ms in enumerate(state_models) for m in ms]
        out.append(ExtraDescriptor(
            {"type": "discrete_states", "id": "ihm_states", "regime": 1, "scope": scope, "mode": "A",
             "sample_axis": "state", "composition": "replace", "signal_type": "categorical_state",
             "states": sids,
             "attrs": {"names": [r.get("state_name") for r in states],
                       "state_type": [r.get("state_type") for r in states],
                       "state_group": [r.get("state_group_id") for r in states],
                       "experiment_type": [r.get("experiment_type") for r in states],
                       "model_groups": [state_groups.get(s, []) for s in sids],
                       "models": state_models,
                       "population_source": "_ihm_multi_state_modeling.population_fraction"},
             "provenance": {"source": "ingest:_ihm_multi_state_modeling"}},
            {"population": pops, "state_model": np.array(pairs, np.int64).reshape(-1, 2)}))
    return out
