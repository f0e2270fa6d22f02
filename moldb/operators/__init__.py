"""Evaluation-model operators (pure numpy / torch; they receive arrays, never a store).

See ``docs/render.md``. Registry entries: ``parametric_gaussian/tls_v1``, ``iadp_v1``, ``aadp_v1``,
``basis/nm_v1``, ``rigid_body/quat_v1`` and ``neural_decoder/torchscript_v1``.
"""

from moldb.operators.adp import B_TO_U, aadp_v1, iadp_v1, skew_a, tls_from_mmcif_units, tls_shift_origin, tls_v1
from moldb.operators.motion import nm_v1, quat_to_matrix, quat_v1
from moldb.operators.neural import NeuralDecoder, script_to_bytes
from moldb.operators.registry import OPERATORS, Operator, get, register

__all__ = [
    "B_TO_U",
    "OPERATORS",
    "NeuralDecoder",
    "Operator",
    "aadp_v1",
    "get",
    "iadp_v1",
    "nm_v1",
    "quat_to_matrix",
    "quat_v1",
    "register",
    "script_to_bytes",
    "skew_a",
    "tls_from_mmcif_units",
    "tls_shift_origin",
    "tls_v1",
]
