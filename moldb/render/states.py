"""Legal joint states of the discrete-nesting stack (a DAG of ``nested_under`` edges).

A joint state maps each discrete descriptor's name to one of its state keys, or to ``None`` when
its parent's state leaves it inactive. Storage and enumeration scale with the legal combinations,
never with the Cartesian product of all state keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from moldb.errors import ValidationError
from moldb.render.model import Discrete

__all__ = ["joint_states", "resolve_state"]

JointState = dict[str, str | None]


def _legal(d: Discrete, parent_state: str | None, has_parent: bool) -> tuple[str, ...]:
    if not has_parent or d.allowed is None:
        return tuple(d.keys) if (not has_parent or parent_state is not None) else ()
    if parent_state is None:
        return ()
    return tuple(d.allowed.get(parent_state, ()))


def joint_states(discrete: Sequence[Discrete]) -> list[JointState]:
    """Enumerate every legal joint state, in descriptor order then state order.

    Parameters
    ----------
    discrete : sequence of DiscreteDescriptor / ExternalReference
        Parents before children.

    Returns
    -------
    list of dict
        One dict per legal joint state, ``{name: state key or None}``.
    """
    out: list[JointState] = [{}]
    for d in discrete:
        nxt: list[JointState] = []
        for js in out:
            legal = _legal(d, js.get(d.parent) if d.parent else None, d.parent is not None)
            for key in legal or (None,):
                nxt.append({**js, d.name: key})
        out = nxt
    return out


def resolve_state(discrete: Sequence[Discrete], state: Mapping[str, str] | None) -> JointState:
    """Complete a partial joint state with defaults and check it is legal.

    Descriptors not named take their ``default`` when legal under their parent's state, else the
    first legal state, else ``None`` (inactive). Naming an unknown descriptor, an unknown state,
    or a state its parent's state does not allow raises :class:`moldb.errors.ValidationError`.
    """
    state = dict(state or {})
    names = {d.name for d in discrete}
    unknown = sorted(set(state) - names)
    if unknown:
        raise ValidationError(f"unknown discrete descriptors {unknown}; known: {sorted(names)}")
    out: JointState = {}
    for d in discrete:
        legal = _legal(d, out.get(d.parent) if d.parent else None, d.parent is not None)
        if d.name in state:
            key = state[d.name]
            if key not in d.keys:
                raise ValidationError(f"{d.name} has no state {key!r}; states: {list(d.keys)}")
            if key not in legal:
                raise ValidationError(
                    f"{d.name}={key!r} is not legal when {d.parent}={out.get(d.parent or '')!r}; legal: {list(legal)}"
                )
            out[d.name] = key
        else:
            out[d.name] = d.default if d.default in legal else (legal[0] if legal else None)
    return out
