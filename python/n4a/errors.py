"""The exceptions n4a raises, one class per family of the library's error
kinds (``n4a::Error::kind`` in Rust).

Every exception derives from :class:`N4aError` and carries:

- ``kind``: the library's kind, e.g. ``"corrupt"``, ``"unknown_metric"``;
- ``path``: the file concerned as a string, or ``None`` when none is known;
- its message, which already names the file, once.

Errors of one file of a workspace being read are not raised: the answer
lists them (``n4a.info(table)["provenance"]["errors"]``, or the summary's
``errors``) and the good files are answered.
"""

from __future__ import annotations

from typing import Dict, Optional, Type


class N4aError(Exception):
    """Base of every n4a exception."""

    kind: str = "n4a"
    path: Optional[str] = None


class IoError(N4aError, OSError):
    """The operating system refused a read, write or rename (kind ``io``)."""


class CorruptFileError(N4aError):
    """A file that does not read: not parquet, truncated, a damaged page, a
    summary that does not decode (kinds ``parquet``, ``damaged_data``,
    ``corrupt``, ``invalid_summary``, ``arrow``)."""


class UnsupportedVersionError(N4aError):
    """A summary or a nirs4all store of a version this build does not read
    (kinds ``unsupported_version``, ``unsupported_store_version``)."""


class SchemaError(N4aError, ValueError):
    """Columns that differ from the contract: missing, mistyped, unknown
    (kind ``schema``)."""


class InvalidInputError(N4aError, ValueError):
    """Rows that break the contract or do not parse (kinds ``invalid_row``,
    ``invalid_dataset_name``, ``input``, ``csv``)."""


class UnknownMetricError(InvalidInputError):
    """A metric whose direction n4a does not know and was not given
    (``directions={"metric": "max"}``) (kind ``unknown_metric``)."""


class InvalidQueryError(N4aError, ValueError):
    """A query or option that cannot be used as given: an unknown filter,
    column or direction, a malformed ``where`` (kinds ``invalid_query``,
    ``invalid_option``)."""


class ChangedDuringRefreshError(N4aError):
    """A file rewritten by another process during a refresh (kind
    ``changed_during_refresh``)."""


class CancelledError(N4aError):
    """A query stopped before its end (kind ``cancelled``)."""


class SqliteError(N4aError):
    """SQLite refused a nirs4all ``store.sqlite`` (kind ``sqlite``)."""


#: The class raised for each kind.
KINDS: Dict[str, Type[N4aError]] = {
    "io": IoError,
    "parquet": CorruptFileError,
    "damaged_data": CorruptFileError,
    "corrupt": CorruptFileError,
    "invalid_summary": CorruptFileError,
    "arrow": CorruptFileError,
    "unsupported_version": UnsupportedVersionError,
    "unsupported_store_version": UnsupportedVersionError,
    "schema": SchemaError,
    "invalid_row": InvalidInputError,
    "invalid_dataset_name": InvalidInputError,
    "input": InvalidInputError,
    "csv": InvalidInputError,
    "unknown_metric": UnknownMetricError,
    "invalid_query": InvalidQueryError,
    "invalid_option": InvalidQueryError,
    "changed_during_refresh": ChangedDuringRefreshError,
    "cancelled": CancelledError,
    "sqlite": SqliteError,
}


def from_kind(kind: str, message: str, path: Optional[str] = None) -> N4aError:
    """The exception for a library error (called by the Rust extension)."""
    exc = KINDS.get(kind, N4aError)(message)
    exc.kind = kind
    exc.path = path
    return exc


__all__ = [name for name, v in globals().items() if isinstance(v, type) and issubclass(v, N4aError)] + [
    "KINDS",
    "from_kind",
]
