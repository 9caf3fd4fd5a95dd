"""n4a: a columnar analytics engine for nirs4all prediction files.

Reading::

    import n4a
    ws = n4a.Workspace("results/")            # .meta.parquet files, or a store.sqlite workspace
    ws.summary()                              # dict, the dashboard's shape, from footers alone
    t = ws.query(partition="val", metric="mse", sort="val_score:asc", offset=0, limit=50)
    n4a.info(t)["total"]                      # matches, served_by, provenance
    t.to_pandas(); polars.from_arrow(t)       # the table is pyarrow, handed over without a copy
    ws.top(5, metric="r2"); ws.stats("model", metric="mse")

Writing::

    with n4a.Writer("results/", "corn") as w:   # the dataset's lock held until the block ends
        w.write(table)                          # pyarrow table/batch/reader, polars or pandas frame
    # both files replaced atomically at the end; on an exception nothing changes

Every call that reads or writes files releases the GIL. Errors are
:mod:`n4a.errors` exceptions with ``kind`` and ``path``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Literal, Optional

import pyarrow as pa

from . import errors
from ._n4a import RawWriter as _RawWriter
from ._n4a import Workspace, __version__, refresh
from .errors import N4aError

#: A metric's direction: higher is better, lower is better, closer to zero.
Direction = Literal["max", "min", "zero"]

__all__ = ["Workspace", "Writer", "refresh", "info", "errors", "N4aError", "__version__"]


def info(table: pa.Table) -> Dict[str, Any]:
    """What came with an answer table besides its rows, as the CLI's JSON
    answer without them: for ``query`` ``total``, ``limit``, ``offset``,
    ``has_more``, ``served_by``, ``provenance``; for ``top`` ``direction``,
    ``served_by``, ``provenance``; for ``stats`` the same, or ``by_metric``
    (one entry per metric, each with its ``metric``) when the rows mixed
    metrics. ``provenance["errors"]`` lists the files that could not be
    used, each with ``path``, ``kind`` and ``error``.

    Raises ``ValueError`` for a table that is not an n4a answer.
    """
    meta = table.schema.metadata or {}
    raw = meta.get(b"n4a")
    if raw is None:
        raise ValueError("this table is not an n4a answer (no 'n4a' schema metadata)")
    return json.loads(raw)


def _stream(data: Any) -> pa.RecordBatchReader:
    """Rows of any Arrow-speaking object as a stream of record batches,
    without copying their buffers where the source allows it."""
    if isinstance(data, pa.RecordBatchReader):
        return data
    if isinstance(data, pa.Table):
        return data.to_reader()
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data]).to_reader()
    module = type(data).__module__.split(".")[0]
    if module == "polars":
        if hasattr(data, "collect") and not hasattr(data, "to_arrow"):
            data = data.collect()  # a LazyFrame
        return data.to_arrow().to_reader()
    if module == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False).to_reader()
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    raise TypeError(
        f"Writer.write takes a pyarrow Table, RecordBatch or RecordBatchReader, "
        f"a polars or pandas DataFrame, or an Arrow stream; got {type(data).__name__}"
    )


class Writer:
    """Writes predictions into ``<workspace>/<dataset>.meta.parquet`` and its
    ``.arrays.parquet``, with the summary kept up to date as rows arrive.

    Use it as a context manager: the dataset's lock is held from the start
    of the block (another writer of the same dataset waits), and at the end
    both files are replaced atomically, or on an exception left as they
    were. ``append=False`` replaces the dataset's rows instead of adding to
    them. ``directions`` gives the direction (``"max"``, ``"min"`` or
    ``"zero"``) of metrics n4a does not know; ``row_group_rows`` the rows
    per row group (default: one row group a dataset, as nirs4all).

    Columns: any of the contract's 35 (missing ones are null, types cast
    to the contract's), plus the arrays ``y_true``, ``y_pred``, ``y_proba``,
    ``sample_indices`` and ``weights`` as lists of numbers (``y_proba`` as
    lists of lists). ``dataset_name`` and ``id`` are filled when absent.
    A failed ``write`` aborts the writer: nothing of it is committed.

    Memory: the writer buffers one row group; the table given is streamed
    batch by batch.
    """

    def __init__(
        self,
        workspace: Any,
        dataset: str,
        *,
        append: bool = True,
        directions: Optional[Dict[str, Direction]] = None,
        row_group_rows: Optional[int] = None,
    ) -> None:
        self._raw = _RawWriter(
            workspace, dataset, append=append, directions=directions, row_group_rows=row_group_rows
        )
        self.summary: Optional[Dict[str, Any]] = None
        self._ended = False

    @property
    def dataset(self) -> str:
        """The dataset written."""
        return self._raw.dataset

    @property
    def num_rows(self) -> int:
        """Rows in the dataset so far (old rows included when appending)."""
        return self._raw.num_rows

    def write(self, data: Any) -> int:
        """Writes the rows of ``data`` and returns how many."""
        return self._raw.write(_stream(data))

    def close(self) -> Dict[str, Any]:
        """Commits the files and returns the dataset's summary (also kept as
        ``self.summary``)."""
        self._ended = True
        self.summary = self._raw.close()
        return self.summary

    def abort(self) -> None:
        """Drops what was written; the dataset keeps its old files."""
        self._ended = True
        self._raw.abort()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._ended:
            # Raises when a failed write aborted the writer and its
            # exception was caught inside the block: nothing was committed.
            self.close()
