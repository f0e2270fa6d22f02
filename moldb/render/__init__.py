"""The render engine (evaluation model): pure numpy/torch over arrays; see ``docs/render.md``."""

from moldb.render.engine import Renderer
from moldb.render.model import (
    BasisDescriptor,
    DecoderDescriptor,
    DiscreteDescriptor,
    DiscreteState,
    ExternalReference,
    GaussianDescriptor,
    RenderModel,
    RigidDescriptor,
)
from moldb.render.psd import NonPSDCovarianceError, PSDReport, draw_factor
from moldb.render.states import joint_states, resolve_state

__all__ = [
    "BasisDescriptor",
    "DecoderDescriptor",
    "DiscreteDescriptor",
    "DiscreteState",
    "ExternalReference",
    "GaussianDescriptor",
    "NonPSDCovarianceError",
    "PSDReport",
    "RenderModel",
    "Renderer",
    "RigidDescriptor",
    "draw_factor",
    "joint_states",
    "resolve_state",
]
