"""The query engine: a selection language, plans, execution and lazy results.

``store.select("chain A and name CA")`` or ``store.select(chains="A", atoms="CA")``
compile to the same :class:`~moldb.query.nodes.Plan`; see ``docs/query.md``.
Importing this package registers the spatial-index ingest hook.
"""

from moldb.query import spatial as _spatial  # noqa: F401  (registers the ingest hook)
from moldb.query.nodes import Plan
from moldb.query.plan import compile_keywords
from moldb.query.result import Selection
from moldb.query.selection import SelectionError, SelectionSyntaxError, UnknownColumnError, parse

__all__ = ["Plan", "Selection", "SelectionError", "SelectionSyntaxError", "UnknownColumnError",
           "compile_keywords", "parse"]
