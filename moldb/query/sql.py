"""``Store.sql``: SQL over the store's atoms and entries with DuckDB, streamed as Arrow.

Two relations are visible to the query:

``atoms``
    Every selected atom (the whole store, or a :class:`~moldb.query.Selection`), with
    ``entry`` and the ``_atom_site`` columns (strings decoded, absent columns null).
    It is an Arrow record-batch stream: DuckDB pulls batches as it scans, so memory is
    bounded by the batch size plus DuckDB's own aggregation state, not by the store.
``entries``
    The entry-level metadata table of :meth:`moldb.Store.query_entries`.

DuckDB is an optional extra (``pip install "moldb[sql]"``). Only the columns a query
names are decoded from the store when ``columns=`` is given; the default is the core
``_atom_site`` columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from moldb.errors import ValidationError
from moldb.schema.columns import ATOM_COLUMNS, COLUMN_BY_NAME, arrow_type

__all__ = ["run_sql"]

DEFAULT_COLUMNS: tuple[str, ...] = tuple(c.name for c in ATOM_COLUMNS)


def _plain(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _schema(columns: Sequence[str]) -> pa.Schema:
    fields = [pa.field("entry", pa.string())]
    for c in columns:
        col = COLUMN_BY_NAME.get(c)
        fields.append(pa.field(c, _plain(arrow_type(col.kind)) if col is not None else pa.string()))
    return pa.schema(fields)


def _conform(t: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    cols = []
    for f in schema:
        if f.name in t.column_names:
            cols.append(t.column(f.name).combine_chunks().cast(f.type))
        else:
            cols.append(pa.nulls(t.num_rows, f.type))
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def _batches(selection: Any, schema: pa.Schema, size: int) -> Iterator[pa.RecordBatch]:
    names = [f.name for f in schema if f.name != "entry"]
    for t in selection.batches(size=size, columns=names):
        yield _conform(t, schema)


def run_sql(store: Any, query: str, selection: Any = None, columns: Sequence[str] | None = None,
            batch_size: int = 262_144) -> pa.Table:
    """Run ``query`` (DuckDB SQL) over ``atoms`` and ``entries``; return the result as Arrow.

    Parameters
    ----------
    store : moldb.Store
    query : str
        SQL text, e.g. ``"SELECT label_comp_id, count(*) FROM atoms GROUP BY 1"``.
    selection : moldb.query.Selection, optional
        Restrict ``atoms`` to these rows (default: every atom of every entry).
    columns : sequence of str, optional
        Atom columns to expose (default: the core ``_atom_site`` columns).
    batch_size : int
        Rows per streamed batch.

    Raises
    ------
    ValidationError
        DuckDB rejected the query (the message is DuckDB's, with the query).
    ImportError
        DuckDB is not installed.
    """
    try:
        import duckdb
    except ImportError as exc:
        raise ImportError('store.sql needs DuckDB: pip install "moldb[sql]"') from exc
    cols = list(DEFAULT_COLUMNS if columns is None else [c for c in columns if c != "entry"])
    schema = _schema(cols)
    sel = selection if selection is not None else store.select()
    reader = pa.RecordBatchReader.from_batches(schema, _batches(sel, schema, batch_size))
    ents = store.query_entries()
    con = duckdb.connect()
    try:
        con.register("atoms", reader)
        con.register("entries", ents)
        try:
            rel = con.sql(query)
            if rel is None:
                raise ValidationError(f"SQL query returned no result set (query: {query!r}); use SELECT")
            table: pa.Table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        except duckdb.Error as exc:
            raise ValidationError(f"SQL query failed: {exc} (query: {query!r}); tables: atoms, entries") from exc
        return table
    finally:
        con.close()
