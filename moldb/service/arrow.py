"""Arrow IPC stream responses (``application/vnd.apache.arrow.stream``): bulk rows are never JSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from fastapi.responses import StreamingResponse

__all__ = ["ARROW_MEDIA_TYPE", "ARROW_RESPONSE", "arrow_response", "ipc_bytes", "ipc_chunks"]

ARROW_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
#: OpenAPI description of an Arrow IPC success response.
ARROW_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {ARROW_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
          "description": "Arrow IPC stream (pyarrow.ipc.open_stream reads it)"}}


class _Sink:
    """A write-only file object that hands its bytes out as they are written."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


#: Tables up to this size are encoded in one native buffer and sent in 1 MiB slices (about 3x faster
#: than writing through a Python sink); larger ones stream batch by batch to bound memory.
WHOLE_BUFFER_BYTES = 512 << 20
_SLICE = 1 << 20
#: Tables at least this large travel with Arrow IPC's own LZ4 buffer compression (part of the IPC format:
#: every Arrow reader decodes it transparently). Measured on 4V5A (290k atoms): 36 MB -> 7 MB for +8 ms of
#: encoding and 7 ms of decoding, while moving a byte through the Python HTTP stacks costs far more.
COMPRESS_BYTES = 1 << 20


def ipc_chunks(table: pa.Table, batch_rows: int = 65_536) -> Iterator[bytes | memoryview]:
    """The Arrow IPC stream of ``table`` in chunks (1 MiB slices, or one chunk per record batch when large).

    Tables of :data:`COMPRESS_BYTES` or more are written with LZ4-compressed buffers.
    """
    opts = pa.ipc.IpcWriteOptions(compression="lz4" if table.nbytes >= COMPRESS_BYTES else None, use_threads=True)
    if table.nbytes <= WHOLE_BUFFER_BYTES:
        out = pa.BufferOutputStream()
        with pa.ipc.new_stream(out, table.schema, options=opts) as w:
            for batch in table.to_batches(max_chunksize=batch_rows):
                w.write_batch(batch)
        view = memoryview(out.getvalue())
        for i in range(0, len(view), _SLICE):
            yield view[i:i + _SLICE]
        return
    sink = _Sink()
    with pa.ipc.new_stream(sink, table.schema, options=opts) as writer:
        yield sink.take()
        for batch in table.to_batches(max_chunksize=batch_rows):
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()


def arrow_response(table: pa.Table, headers: dict[str, str] | None = None) -> StreamingResponse:
    """Stream ``table`` as an Arrow IPC stream response."""
    hdrs = {"Moldb-Rows": str(table.num_rows), **(headers or {})}
    return StreamingResponse(ipc_chunks(table), media_type=ARROW_MEDIA_TYPE, headers=hdrs)


def ipc_bytes(table: pa.Table) -> pa.Buffer:
    """The whole Arrow IPC stream of ``table`` in one native buffer (LZ4 buffers from :data:`COMPRESS_BYTES`)."""
    opts = pa.ipc.IpcWriteOptions(compression="lz4" if table.nbytes >= COMPRESS_BYTES else None, use_threads=True)
    out = pa.BufferOutputStream()
    with pa.ipc.new_stream(out, table.schema, options=opts) as w:
        for batch in table.to_batches(max_chunksize=65_536):
            w.write_batch(batch)
    return out.getvalue()
