"""RMF reader of moldb's own: RMF3 (Avro, ``Frame.json`` schema) and the older HDF5 layout.

Both layouts are read into one in-memory model, :class:`RMFDocument`: the node
hierarchy (id, name, type, parents / children), the key catalogue (category, name,
type), the *static* values (valid in every frame) and one value table per frame,
plus the frame hierarchy (id, name, type, parents). Key names of the old HDF5
layout are mapped to the current names exactly as RMF's backwards-compatibility
layer does (``cartesian x/y/z`` → ``coordinates``, ``rgb color red/green/blue`` →
``rgb color``, ``orientation r/i/j/k`` → ``orientation``, ``reference frame …`` →
``rotation`` / ``translation``, ``cartesian xs/ys/zs`` → ``coordinates list``;
index and node-id types become ints).

:func:`signature` renders a document in the text format of RMF's
``get_signature_string`` (hierarchy, static decorators, per-frame decorators), which
is how the reader is checked against the ``.signature`` dumps RMF ships with its
test inputs. :func:`read_rmf` turns a document into a :class:`ParsedEntry` for the
loader (see :mod:`moldb.ingest.rmf_map`).

fastavro (RMF3) and h5py (HDF5) are the optional extra ``moldb[rmf]``; both are
imported inside functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moldb.errors import ParseError
from moldb.schema.parsed import ParsedEntry

__all__ = ["NODE_TYPES", "RMFDocument", "RMFFrame", "RMFNode", "detect_rmf", "open_rmf", "read_rmf", "signature"]

#: RMF node type codes (RMF ``enums.cpp``); files may carry their own labels.
NODE_TYPES = {0: "root", 1: "representation", 2: "geometry", 3: "feature", 4: "alias", 5: "custom", 6: "bond",
              7: "organizational", 8: "link", 9: "provenance"}
#: RMF frame type codes.
FRAME_TYPES = {0: "static", 1: "frame", 2: "model", 3: "center", 4: "alias", 5: "alternate"}

AVRO_MAGIC = b"Obj\x01"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

Key = tuple[str, str]  # (category, key name)
Values = dict[Key, dict[int, Any]]


@dataclass
class RMFNode:
    """One node of the RMF hierarchy."""

    id: int
    name: str
    type: str
    parents: list[int] = field(default_factory=list)
    children: list[int] = field(default_factory=list)


@dataclass
class RMFFrame:
    """One frame: id, name, type, parent frames and the values set in it."""

    id: int
    name: str
    type: str
    parents: list[int] = field(default_factory=list)
    values: Values = field(default_factory=dict)


@dataclass
class RMFDocument:
    """A whole RMF file in memory (either layout).

    Attributes
    ----------
    path : str
    layout : {"rmf3", "hdf5"}
    nodes : list of RMFNode
        Indexed by node id.
    key_types : dict
        ``(category, key)`` → type name (``int``, ``float``, ``string``, ``ints``, ``floats``,
        ``strings``, ``vector3``, ``vector4``, ``vector3s``).
    static : dict
        ``(category, key)`` → ``{node id: value}`` valid in every frame.
    frames : list of RMFFrame
    bonds : list of (int, int)
        Bonded node pairs (BOND nodes with ``bonded 0/1``, or the HDF5 layout's pair sets).
    """

    path: str
    layout: str
    nodes: list[RMFNode]
    key_types: dict[Key, str]
    static: Values
    frames: list[RMFFrame]
    description: str = ""
    producer: str = ""
    bonds: list[tuple[int, int]] = field(default_factory=list)

    def value(self, node: int, key: Key, frame: int | None = None) -> Any:
        """The value of ``key`` at ``node`` in ``frame`` (falls back to the static value); None if unset."""
        if frame is not None and frame < len(self.frames):
            got = self.frames[frame].values.get(key)
            if got is not None and node in got:
                return got[node]
        got = self.static.get(key)
        return None if got is None else got.get(node)

    def has(self, node: int, key: Key, frame: int | None = None, static_only: bool = False) -> bool:
        """Whether ``key`` is set at ``node`` (statically, or in ``frame``)."""
        if static_only:
            got = self.static.get(key)
            return got is not None and node in got
        return self.value(node, key, frame) is not None

    def per_frame_keys(self) -> list[Key]:
        """Keys that have a value in at least one frame (sorted)."""
        return sorted({k for f in self.frames for k, v in f.values.items() if v})

    def static_keys(self) -> list[Key]:
        """Keys with at least one static value (sorted)."""
        return sorted(k for k, v in self.static.items() if v)

    def walk(self, root: int = 0) -> Iterator[tuple[int, int | None]]:
        """Depth-first (node, parent) pairs from ``root`` (each node once)."""
        seen: set[int] = set()
        stack: list[tuple[int, int | None]] = [(root, None)]
        while stack:
            n, p = stack.pop()
            if n in seen or n >= len(self.nodes):
                continue
            seen.add(n)
            yield n, p
            stack.extend((c, n) for c in reversed(self.nodes[n].children))


# -- signature (RMF's get_signature_string) ---------------------------------------------------------

def _decorators(doc: RMFDocument, n: int, frame: int | None) -> list[str]:
    """Decorator names RMF's factories report for node ``n`` (static when ``frame`` is None)."""
    t = doc.nodes[n].type
    static = frame is None

    def has(cat: str, key: str) -> bool:
        return doc.has(n, (cat, key), frame, static_only=static)

    def first_last(op: Callable[[int, int], bool]) -> bool:
        a = doc.value(n, ("sequence", "first residue index"), None if static else frame)
        b = doc.value(n, ("sequence", "last residue index"), None if static else frame)
        if static:
            a = doc.static.get(("sequence", "first residue index"), {}).get(n)
            b = doc.static.get(("sequence", "last residue index"), {}).get(n)
        return a is not None and b is not None and op(int(a), int(b))

    def every(cat: str, *keys: str) -> bool:
        return all(has(cat, k) for k in keys)

    rep = t == "representation"
    out = []
    if t == "bond" and (has("physics", "bonded 0") or has("bond", "bonded_0") or has("bond", "bonded 0")):
        out.append("bond")
    if t in ("representation", "organizational", "alias", "feature", "geometry") and has("shape", "rgb color"):
        out.append("color")
    if rep and (every("physics", "mass", "coordinates", "radius") if static else has("physics", "mass")):
        out.append("particle")
    elif rep and (every("physics", "radius", "coordinates") if static else has("physics", "radius")):
        out.append("iparticle")
    if rep and (every("physics", "orientation", "coordinates") if static else has("physics", "orientation")):
        out.append("rigid")
    if t == "feature" and has("feature", "score"):
        out.append("score")
    geom = t == "geometry"
    if geom and (every("shape", "coordinates", "radius") if static else has("shape", "coordinates")):
        out.append("ball")
    if geom and every("shape", "radius", "coordinates list"):
        out.append("cylinder")
    if geom and has("shape", "coordinates list"):
        out.append("segment")
    if rep:
        residue = has("sequence", "residue index") or first_last(lambda a, b: a == b)
        if static:
            residue = residue and has("sequence", "residue type")
        if residue:
            out.append("residue")
        if every("physics", "element", "mass", "radius") if static else has("physics", "element"):
            out.append("atom")
        if has("sequence", "chain id"):
            out.append("chain")
        if first_last(lambda a, b: a < b):
            out.append("domain")
        if has("sequence", "copy index"):
            out.append("copy")
        if has("sequence", "type name"):
            out.append("typed")
        if has("physics", "diffusion coefficient"):
            out.append("diffuser")
    return out


def signature(doc: RMFDocument) -> str:
    """The document in the text format of RMF's ``get_signature_string``.

    ``hierarchy [ ... ]`` (children of every node), ``static [ ... ]`` (decorators whose
    attributes are all static) and one block per frame (decorators valid in that frame).
    """
    lines = ["hierarchy ["]
    lines += [f"n{n.id}:" + "".join(f" n{c}" for c in n.children) for n in doc.nodes]
    lines += ["]", "static ["]
    lines += [f"n{n.id}:" + "".join(" " + d for d in _decorators(doc, n.id, None)) for n in doc.nodes]
    lines.append("]")
    out = "\n".join(lines) + "\n"
    for i, _f in enumerate(doc.frames):
        block = [f"f{i} ["]
        block += [f"n{n.id}:" + "".join(" " + d for d in _decorators(doc, n.id, i)) for n in doc.nodes]
        block.append("]")
        out += "\n" + "\n".join(block) + "\n"
    return out


# -- RMF3 (Avro) --------------------------------------------------------------------------------------

_AVRO_TYPES = {"int_data": "int", "float_data": "float", "string_data": "string", "vector3_data": "vector3",
               "vector4_data": "vector4", "ints_data": "ints", "floats_data": "floats", "strings_data": "strings",
               "vector3s_data": "vector3s", "vector4s_data": "vector4s"}
_KEY_TYPES = {"INT": "int", "FLOAT": "float", "STRING": "string", "INTS": "ints", "FLOATS": "floats",
              "STRINGS": "strings", "VECTOR3": "vector3", "VECTOR4": "vector4", "VECTOR3S": "vector3s"}


def _avro_value(kind: str, v: Any) -> Any:
    if kind == "vector3":
        return (float(v["x"]), float(v["y"]), float(v["z"]))
    if kind == "vector4":
        return (float(v["w"]), float(v["x"]), float(v["y"]), float(v["z"]))
    if kind == "vector3s":
        return [(float(p["x"]), float(p["y"]), float(p["z"])) for p in v]
    if kind == "vector4s":
        return [(float(p["w"]), float(p["x"]), float(p["y"]), float(p["z"])) for p in v]
    if kind in ("ints", "floats", "strings"):
        return list(v)
    return v


def _read_rmf3(path: Path) -> RMFDocument:
    try:
        import fastavro
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ParseError(str(path), "reading RMF3 (Avro) files needs fastavro: pip install 'moldb[rmf]'") from exc
    categories: dict[int, str] = {}
    node_labels: dict[int, str] = {}
    frame_labels: dict[int, str] = {}
    keys: dict[tuple[str, int], Key] = {}
    key_types: dict[Key, str] = {}
    nodes: dict[int, RMFNode] = {}
    static: Values = {}
    frames: list[RMFFrame] = []
    description = producer = ""
    try:
        with path.open("rb") as fh:
            records: Iterator[Any] = iter(fastavro.reader(fh))
            for rec in records:
                info = rec["info"]
                if "producer" in info:  # FileInfo: the static frame
                    description = info.get("description") or description
                    producer = info.get("producer") or producer
                    categories.update({c["id"]: c["name"] for c in info.get("categories", [])})
                    node_labels.update({c["id"]: c["name"] for c in info.get("node_types", [])})
                    frame_labels.update({c["id"]: c["name"] for c in info.get("frame_types", [])})
                    target = static
                else:
                    ftype = frame_labels.get(info["type"], FRAME_TYPES.get(info["type"], f"type{info['type']}"))
                    frames.append(RMFFrame(int(info["id"]), info["name"], ftype, [int(p) for p in info["parents"]]))
                    target = frames[-1].values
                for k in rec["keys"]:
                    kt = _KEY_TYPES.get(k["type"], str(k["type"]).lower())
                    key = (categories.get(k["category"], f"category{k['category']}"), k["name"])
                    keys[(kt, int(k["id"]))] = key
                    key_types[key] = kt
                for nd in rec["nodes"]:
                    label = node_labels.get(nd["type"], NODE_TYPES.get(nd["type"], f"unknown{nd['type']}"))
                    nodes[int(nd["id"])] = RMFNode(int(nd["id"]), nd["name"], label, [int(p) for p in nd["parents"]])
                for field_name, kind in _AVRO_TYPES.items():
                    for block in rec["data"].get(field_name, []):
                        kid = block.get("key", block.get("id"))
                        dkey = keys.get((kind, int(kid)))
                        if dkey is None:
                            raise ParseError(str(path), f"{field_name} refers to undeclared {kind} key id {kid}")
                        dest = target.setdefault(dkey, {})
                        for v in block["values"]:
                            node = v.get("id", v.get("key"))
                            dest[int(node)] = _avro_value(kind, v["value"])
    except ParseError:
        raise
    except (ValueError, EOFError, KeyError, TypeError, StopIteration, OSError) as exc:
        raise ParseError(str(path), f"truncated or corrupt RMF3 (Avro) file ({type(exc).__name__}: {exc}); "
                         "re-export it with IMP/RMF (rmf_cat) or check the download") from exc
    if not nodes:
        raise ParseError(str(path), "RMF3 file has no nodes (not even a root); is it truncated?")
    ordered = [nodes.get(i) or RMFNode(i, "", "unknown") for i in range(max(nodes) + 1)]
    for n in ordered:
        for p in n.parents:
            if 0 <= p < len(ordered):
                ordered[p].children.append(n.id)
    doc = RMFDocument(str(path), "rmf3", ordered, key_types, static, frames, description, producer)
    doc.bonds = _bond_nodes(doc)
    return doc


def _bond_nodes(doc: RMFDocument) -> list[tuple[int, int]]:
    out = []
    for cat, a_name, b_name in (("physics", "bonded 0", "bonded 1"), ("bond", "bonded_0", "bonded_1"),
                                ("bond", "bonded 0", "bonded 1")):
        a, b = doc.static.get((cat, a_name), {}), doc.static.get((cat, b_name), {})
        out += [(int(a[n]), int(b[n])) for n in sorted(a) if n in b and doc.nodes[n].type == "bond"]
    return out


# -- entry points ---------------------------------------------------------------------------------------

def detect_rmf(head: bytes) -> str | None:
    """``"rmf3"``, ``"hdf5"`` or None from a file's first bytes."""
    if head.startswith(AVRO_MAGIC):
        return "rmf3"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    return None


def open_rmf(path: str | Path) -> RMFDocument:
    """Read an RMF file of either layout into an :class:`RMFDocument`.

    Raises
    ------
    ParseError
        Not an RMF file, or truncated / corrupt (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    with p.open("rb") as fh:
        head = fh.read(8)
    layout = detect_rmf(head)
    if layout == "rmf3":
        return _read_rmf3(p)
    if layout == "hdf5":
        from moldb.ingest.rmf_hdf5 import read_rmf_hdf5

        return read_rmf_hdf5(p)
    raise ParseError(str(p), "not an RMF file: expected an Avro container (RMF3, 'Obj\\x01') or an HDF5 file "
                     "(older RMF layout)")


def read_rmf(path: str | Path) -> ParsedEntry:
    """Parse an RMF file into a :class:`~moldb.schema.parsed.ParsedEntry` (particles, groupings, frames)."""
    from moldb.ingest.rmf_map import document_to_entry

    return document_to_entry(open_rmf(path))
