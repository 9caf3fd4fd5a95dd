"""Type stubs of the Rust extension (n4a._n4a). Filters are keywords named
as the CLI's flags, each a string or a list of strings: dataset, model,
model_class, config, partition, fold, task_type, metric, branch, id."""

from os import PathLike
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, TypedDict, Union, final

import pyarrow as pa
from typing_extensions import Unpack

__all__ = ["Workspace", "RawWriter", "refresh", "__version__"]

__version__: str

_Path = Union[str, PathLike[str]]
_Values = Union[str, Sequence[str], None]
_Direction = Literal["max", "min", "zero"]
_GroupBy = Literal[
    "model", "model_name", "config", "config_name", "dataset", "dataset_name",
    "partition", "fold", "fold_id", "metric",
]

class _Filters(TypedDict, total=False):
    """The value filters, named as the CLI's flags (query::filter::FIELDS)."""

    dataset: _Values
    model: _Values
    model_class: _Values
    config: _Values
    partition: _Values
    fold: _Values
    task_type: _Values
    metric: _Values
    branch: _Values
    id: _Values

@final
class Workspace:
    """A workspace folder of .meta.parquet files, or a nirs4all store.sqlite
    workspace (read through a cached mirror). Footers are cached between
    calls; every call releases the GIL."""

    def __new__(
        cls,
        path: _Path,
        *,
        recursive: bool = False,
        threads: int = 0,
        directions: Optional[Dict[str, _Direction]] = None,
    ) -> Workspace: ...
    @property
    def path(self) -> Path:
        """The folder as given."""
    def summary(self) -> Dict[str, Any]:
        """The workspace summary (`n4a summary --format json`), from footers alone."""
    def query(
        self,
        *,
        sort: Optional[str] = None,
        offset: int = 0,
        limit: int = 50,
        columns: Optional[List[str]] = None,
        where: _Values = None,
        **filters: Unpack[_Filters],
    ) -> pa.Table:
        """A filtered, sorted page (`n4a query`): `dataset` plus the 35
        contract columns (or `columns`), with total, served_by and
        provenance in `n4a.info(table)`."""
    def top(
        self,
        k: int = 10,
        *,
        direction: Optional[_Direction] = None,
        score: str = "val_score",
        where: _Values = None,
        **filters: Unpack[_Filters],
    ) -> pa.Table:
        """The best k by the score in its metric's direction (`n4a top`);
        the val partition unless `partition` is given ("all": every row)."""
    def stats(
        self,
        group_by: _GroupBy,
        *,
        count_mean_only: bool = False,
        direction: Optional[_Direction] = None,
        score: str = "val_score",
        where: _Values = None,
        **filters: Unpack[_Filters],
    ) -> pa.Table:
        """count, mean, min, max and best per group (`n4a stats`); a leading
        `metric` column when the rows mix metrics and no direction is given."""

@final
class RawWriter:
    def __new__(
        cls,
        workspace: _Path,
        dataset: str,
        *,
        append: bool = True,
        directions: Optional[Dict[str, _Direction]] = None,
        row_group_rows: Optional[int] = None,
    ) -> RawWriter: ...
    @property
    def dataset(self) -> str: ...
    @property
    def num_rows(self) -> int: ...
    @property
    def is_open(self) -> bool: ...
    def write(self, stream: pa.RecordBatchReader) -> int: ...
    def close(self) -> Dict[str, Any]: ...
    def abort(self) -> None: ...

def refresh(
    workspace: _Path,
    *,
    verify: bool = False,
    fix: bool = False,
    dry_run: bool = False,
    recursive: bool = False,
    threads: int = 0,
    directions: Optional[Dict[str, _Direction]] = None,
) -> Dict[str, Any]:
    """Refreshes the summaries of a workspace (`n4a refresh --format json`)."""
