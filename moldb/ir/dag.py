"""The scope DAG: ``nested_under`` state restrictions and ``derived_from`` provenance edges.

A node is a descriptor with discrete states (Regime 1: altlocs, compositional
flags, loop conformations, rotamers ...). A ``nested_under`` edge from child to
parent says which child states each parent state activates; a parent state not
in the map, or an inactive parent, leaves the child inactive (state ``None``).
Nodes without a parent are independent of each other. ``derived_from`` edges
record provenance only and do not restrict joint states.

:meth:`ScopeDAG.joint_states` enumerates the legal joint states depth first, one
at a time: memory is proportional to the number of nodes, time to the number of
legal states — the Cartesian product of the state sets is never formed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from moldb.errors import ValidationError
from moldb.ir.model import Descriptor

__all__ = ["IllegalStateError", "ScopeDAG", "ScopeNode"]


class IllegalStateError(ValidationError):
    """A joint state that the scope DAG does not allow."""


@dataclass
class ScopeNode:
    """One discrete node: its states and, optionally, the parent it is nested under."""

    id: str
    states: list[str]
    parent: str | None = None
    activation: dict[str, list[str]] = field(default_factory=dict)
    derived_from: list[str] = field(default_factory=list)


class ScopeDAG:
    """Discrete descriptors and their edges.

    Parameters
    ----------
    nodes : iterable of ScopeNode

    Raises
    ------
    ValidationError
        Unknown parents, states activated that the child does not have, or a cycle.
    """

    def __init__(self, nodes: Iterable[ScopeNode]) -> None:
        self.nodes: dict[str, ScopeNode] = {}
        for n in nodes:
            if n.id in self.nodes:
                raise ValidationError(f"scope DAG: node {n.id!r} declared twice")
            self.nodes[n.id] = n
        for n in self.nodes.values():
            for p in ([n.parent] if n.parent else []) + n.derived_from:
                if p not in self.nodes:
                    raise ValidationError(f"scope DAG: {n.id!r} refers to unknown parent {p!r}")
            if n.parent:
                parent = self.nodes[n.parent]
                for ps, cs in n.activation.items():
                    if ps not in parent.states:
                        raise ValidationError(f"scope DAG: {n.id!r} is activated by {n.parent!r} = {ps!r}, "
                                              f"which is not a state of {n.parent!r} ({parent.states})")
                    bad = [c for c in cs if c not in n.states]
                    if bad:
                        raise ValidationError(f"scope DAG: {n.parent!r} = {ps!r} activates {bad} of {n.id!r}, "
                                              f"which has states {n.states}")
        self.order = self._topological()
        self.children: dict[str, list[str]] = {k: [] for k in self.nodes}
        for n in self.nodes.values():
            if n.parent:
                self.children[n.parent].append(n.id)

    @classmethod
    def from_descriptors(cls, descriptors: Iterable[Descriptor]) -> ScopeDAG:
        """The DAG of the discrete descriptors (those with ``states``) and their edges."""
        nodes = []
        for d in descriptors:
            if not d.states:
                continue
            nested = [e for e in d.edges if e.kind == "nested_under"]
            if len(nested) > 1:
                raise ValidationError(f"descriptor {d.id!r}: nested under more than one parent")
            nodes.append(ScopeNode(d.id, list(d.states), nested[0].parent if nested else None,
                                   dict(nested[0].activation) if nested else {},
                                   [e.parent for e in d.edges if e.kind == "derived_from"]))
        return cls(nodes)

    def _topological(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(k: str, path: list[str]) -> None:
            if state.get(k) == 2:
                return
            if state.get(k) == 1:
                raise ValidationError(f"scope DAG: cycle {' -> '.join([*path, k])}")
            state[k] = 1
            n = self.nodes[k]
            for p in ([n.parent] if n.parent else []) + n.derived_from:
                visit(p, [*path, k])
            state[k] = 2
            order.append(k)

        for k in self.nodes:
            visit(k, [])
        return order

    def _choices(self, node: ScopeNode, chosen: Mapping[str, str | None]) -> list[str | None]:
        if node.parent is None:
            return list(node.states)
        ps = chosen[node.parent]
        if ps is None or ps not in node.activation:
            return [None]
        return list(node.activation[ps])

    def joint_states(self) -> Iterator[dict[str, str | None]]:
        """Yield every legal joint state (node id → state, ``None`` for an inactive node), lazily."""
        order = self.order
        if not order:
            return
        chosen: dict[str, str | None] = {}
        stack: list[tuple[list[str | None], int]] = [(self._choices(self.nodes[order[0]], chosen), 0)]
        while stack:
            opts, i = stack[-1]
            depth = len(stack) - 1
            if i >= len(opts):
                stack.pop()
                continue
            stack[-1] = (opts, i + 1)
            chosen[order[depth]] = opts[i]
            if depth + 1 == len(order):
                yield dict(chosen)
            else:
                stack.append((self._choices(self.nodes[order[depth + 1]], chosen), 0))

    def count(self) -> int:
        """Number of legal joint states, by dynamic programming over subtrees (no enumeration)."""
        def sub(k: str, s: str | None) -> int:
            total = 1
            for c in self.children[k]:
                node = self.nodes[c]
                opts = node.activation.get(s, []) if s is not None else []
                total *= sum(sub(c, cs) for cs in opts) if opts else sub(c, None)
            return total

        total = 1
        for n in self.nodes.values():
            if n.parent is None:
                total *= sum(sub(n.id, s) for s in n.states)
        return total

    def validate(self, joint: Mapping[str, str | None]) -> None:
        """Raise :class:`IllegalStateError` naming the offending choice unless ``joint`` is legal."""
        unknown = sorted(set(joint) - set(self.nodes))
        if unknown:
            raise IllegalStateError(f"illegal joint state: unknown node(s) {unknown}; nodes: {list(self.nodes)}")
        for k in self.order:
            node = self.nodes[k]
            s = joint.get(k)
            if node.parent is None:
                if s not in node.states:
                    raise IllegalStateError(f"illegal joint state: {k!r} = {s!r} is not one of its states "
                                            f"{node.states}")
                continue
            ps = joint.get(node.parent)
            allowed = node.activation.get(ps, []) if ps is not None else []
            if s is None and not allowed:
                continue
            if s is None:
                raise IllegalStateError(f"illegal joint state: {k!r} has no state, but {node.parent!r} = {ps!r} "
                                        f"activates {allowed}")
            if s not in allowed:
                why = (f"{node.parent!r} = {ps!r} activates {allowed}" if allowed
                       else f"{node.parent!r} = {ps!r} activates none of its states")
                raise IllegalStateError(f"illegal joint state: {k!r} = {s!r} is not allowed: {why}")
