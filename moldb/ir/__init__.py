"""The IR: typed groupings, heterogeneity descriptors, the scope DAG and the operator registry.

Pure data (pydantic models, numpy): see ``docs/ir.md``. :mod:`moldb.ir.store_ops` is the
glue that writes and reads them through a store.
"""

from __future__ import annotations

from moldb.ir.dag import IllegalStateError, ScopeDAG, ScopeNode
from moldb.ir.descriptors import TLS, AltlocStates, AnisotropicADP, Ensemble, GenericDescriptor, IsotropicADP
from moldb.ir.model import (
    Composition,
    Descriptor,
    Edge,
    FitBlock,
    Grouping,
    Mode,
    OperatorRef,
    Provenance,
    Regime,
    SignalType,
)
from moldb.ir.motion import ExternalFrames, NeuralDecoder, NormalModes, RigidBody
from moldb.ir.operators import OperatorSpec

__all__ = [
    "TLS",
    "AltlocStates",
    "AnisotropicADP",
    "Composition",
    "Descriptor",
    "Edge",
    "Ensemble",
    "ExternalFrames",
    "FitBlock",
    "GenericDescriptor",
    "Grouping",
    "IllegalStateError",
    "IsotropicADP",
    "Mode",
    "NeuralDecoder",
    "NormalModes",
    "OperatorRef",
    "OperatorSpec",
    "Provenance",
    "Regime",
    "RigidBody",
    "ScopeDAG",
    "ScopeNode",
    "SignalType",
]
