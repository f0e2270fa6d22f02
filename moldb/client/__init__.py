"""The remote client: :func:`connect` to a moldb service (``moldb serve``).

``moldb.connect(url, token=...)`` returns a :class:`RemoteStore` with the interface of
:func:`moldb.open` (``get``, ``select``, ``ingest``, ``deposit``, ``history``, ``diff``,
``tags``, ``export`` ...). The wire contract is ``docs/service.md``. This package imports
only :mod:`moldb.errors`, :mod:`moldb.schema`, httpx and pyarrow, never the storage layer.
"""

from moldb.client.store import RemoteDiff, RemoteSelection, RemoteStore, RemoteStructure, connect
from moldb.client.transport import CODE_TO_ERROR

__all__ = ["CODE_TO_ERROR", "RemoteDiff", "RemoteSelection", "RemoteStore", "RemoteStructure", "connect"]
