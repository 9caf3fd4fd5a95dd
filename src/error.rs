//! The library's one error type.
//!
//! Every variant names what the caller can act on, and carries the file it
//! concerns wherever one is known, so a batch job over thousands of files can
//! report each failure on its own line and keep going.

use std::path::{Path, PathBuf};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in n4a.
///
/// ```
/// let err = n4a::Workspace::open("/no/such/folder").err().expect("no folder");
/// assert_eq!(err.kind(), "io");
/// assert!(err.to_string().starts_with("/no/such/folder: "), "names the path once");
/// ```
///
/// The enum is `#[non_exhaustive]`: later issues add variants (queries, the
/// server) without breaking callers that match on it. It has no `PartialEq`
/// because the wrapped parquet and I/O errors have none; tests match on the
/// variant and on the message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O failure on a known file.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder being read, written or renamed.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The parquet library refused a file (truncated, not parquet, a footer
    /// that does not decode). The message gives the innermost cause once:
    /// the parquet crate nests the same cause several times over.
    #[error("{path}: parquet: {}", cause(.error))]
    Parquet {
        /// The file concerned.
        path: PathBuf,
        /// What the parquet crate said.
        error: parquet::errors::ParquetError,
    },
    /// Row data that does not decode although the footer does: a damaged
    /// page, a copy cut short inside the data. Reported per file; the
    /// other files of a workspace are answered.
    #[error("{path}: damaged row data: {cause}")]
    DamagedData {
        /// The file concerned.
        path: PathBuf,
        /// The innermost cause, once.
        cause: String,
    },
    /// A file whose content n4a's own checks refuse although the parquet
    /// library read it: a decoder that panicked on it, fewer or more rows
    /// than its metadata says, a footer that cannot be rewritten or does
    /// not read back as written, a row asked past its end.
    #[error("{path}: corrupt: {reason}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An Arrow array operation failed (building or casting a batch).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A dataset name that cannot become `<name>.meta.parquet` safely.
    #[error("invalid dataset name {name:?}: {reason}")]
    InvalidDatasetName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A metric whose direction (higher or lower is better) n4a does not know
    /// and the caller did not supply. n4a refuses to guess: a wrong guess
    /// would rank the worst predictions as the best.
    #[error(
        "metric {metric:?} has no known direction: pass it with \
         WriterOptions::with_direction (CLI: --direction {metric}=max|min|zero)"
    )]
    UnknownMetricDirection {
        /// The metric name found in the row.
        metric: String,
    },
    /// A row that breaks the contract (for example scores without a metric,
    /// or a dataset name that differs from the file's dataset).
    #[error("invalid row {row}: {reason}")]
    InvalidRow {
        /// Row number within the call (0-based).
        row: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A record batch or file whose columns differ from the contract.
    #[error("{context}: schema mismatch: {reason}")]
    Schema {
        /// The file, or "record batch" for an in-memory batch.
        context: String,
        /// Which column is missing or mistyped.
        reason: String,
    },
    /// The `n4a_summary` footer is present but unusable.
    #[error("{path}: invalid n4a_summary: {reason}")]
    InvalidSummary {
        /// The file concerned.
        path: PathBuf,
        /// Why it could not be decoded.
        reason: String,
    },
    /// The summary was written by a newer, incompatible major version.
    #[error("{path}: n4a_summary version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// The file concerned.
        path: PathBuf,
        /// The version string found.
        found: String,
        /// The versions this build understands.
        supported: &'static str,
    },
    /// An error about the content of a known file (for example an unknown
    /// metric found while rebuilding an old file's summary).
    #[error("{path}: {source}")]
    WithPath {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong in it.
        #[source]
        source: Box<Error>,
    },
    /// A file changed under a batch job (someone else rewrote it while it
    /// was being refreshed): it is left as the other writer made it.
    #[error("{path}: changed by another process during the refresh; left as it is")]
    ChangedDuringRefresh {
        /// The file concerned.
        path: PathBuf,
    },
    /// A query that cannot be answered as asked (unknown field or column,
    /// malformed `--where`, a top-k mixing metrics of opposite directions).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// An option of a command or of the server that cannot be used as
    /// given (an address refused, a workspace id invalid or repeated, a
    /// bearer token too short).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// Rows that could not be written as CSV (the writer or the output
    /// failed).
    #[error("CSV output: {0}")]
    Csv(#[from] csv::Error),
    /// A query stopped before its end: its caller went away or it ran past
    /// its time limit (the server's `--query-timeout`).
    #[error("the query was stopped: {0}")]
    Cancelled(String),
    /// SQLite refused a nirs4all `store.sqlite` (not a database, locked
    /// past the busy timeout, a table or column missing). Its message
    /// once, with the file. (With the `store` feature.)
    #[cfg(feature = "store")]
    #[error("{path}: sqlite: {error}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        error: rusqlite::Error,
    },
    /// A `store.sqlite` of a nirs4all schema version this build does not
    /// read (`PRAGMA user_version`).
    #[error(
        "{path}: nirs4all store schema version {found} is not supported \
         (PRAGMA user_version; this build reads version {supported}, nirs4all 0.8.4 to 1.4.10)"
    )]
    UnsupportedStoreVersion {
        /// The database file.
        path: PathBuf,
        /// The `user_version` found.
        found: i64,
        /// The one this build reads.
        supported: i64,
    },
    /// Input rows (JSON Lines or CSV) that could not be parsed.
    #[error("{path}:{line}: {reason}")]
    Input {
        /// The input file.
        path: PathBuf,
        /// 1-based line (JSON Lines) or record (CSV) number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// A short name of the failure's kind for reports: `io`, `parquet`,
    /// `damaged_data`, `corrupt`, `arrow`, `invalid_summary`,
    /// `unsupported_version`, `schema`, `unknown_metric`,
    /// `invalid_dataset_name`, `invalid_query`, `invalid_option`, `csv`,
    /// `input`, `cancelled`, `invalid_row`, `changed_during_refresh`,
    /// `sqlite`, `unsupported_store_version`: one
    /// per variant (the match is exhaustive, so a new variant must name its
    /// kind), and a [`Error::WithPath`] says its cause's.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Parquet { .. } => "parquet",
            Error::DamagedData { .. } => "damaged_data",
            Error::Corrupt { .. } => "corrupt",
            Error::Arrow(_) => "arrow",
            Error::InvalidSummary { .. } => "invalid_summary",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::Schema { .. } => "schema",
            Error::UnknownMetricDirection { .. } => "unknown_metric",
            Error::InvalidRow { .. } => "invalid_row",
            Error::ChangedDuringRefresh { .. } => "changed_during_refresh",
            Error::Cancelled(_) => "cancelled",
            Error::WithPath { source, .. } => source.kind(),
            Error::InvalidDatasetName { .. } => "invalid_dataset_name",
            Error::InvalidQuery(_) => "invalid_query",
            Error::InvalidOption(_) => "invalid_option",
            Error::Csv(_) => "csv",
            Error::Input { .. } => "input",
            #[cfg(feature = "store")]
            Error::Sqlite { .. } => "sqlite",
            Error::UnsupportedStoreVersion { .. } => "unsupported_store_version",
        }
    }

    /// The file the error concerns, when one is known (the Python
    /// package's exceptions carry it as `path`).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::Parquet { path, .. }
            | Error::DamagedData { path, .. }
            | Error::Corrupt { path, .. }
            | Error::InvalidSummary { path, .. }
            | Error::UnsupportedVersion { path, .. }
            | Error::WithPath { path, .. }
            | Error::ChangedDuringRefresh { path }
            | Error::UnsupportedStoreVersion { path, .. }
            | Error::Input { path, .. } => Some(path),
            #[cfg(feature = "store")]
            Error::Sqlite { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Wraps a parquet error with the path it concerns.
    pub fn parquet(path: impl AsRef<Path>, error: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }

    /// Wraps a SQLite error with the database it concerns.
    #[cfg(feature = "store")]
    pub fn sqlite(path: impl AsRef<Path>, error: rusqlite::Error) -> Self {
        Error::Sqlite {
            path: path.as_ref().to_path_buf(),
            error,
        }
    }

    /// A file that n4a's own checks refuse (see [`Error::Corrupt`]).
    pub fn corrupt(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A batch of rows of `path` that did not decode (its footer did).
    pub fn damaged(path: impl AsRef<Path>, error: arrow_schema::ArrowError) -> Self {
        Error::DamagedData {
            path: path.as_ref().to_path_buf(),
            cause: cause(&error),
        }
    }
}

/// The innermost cause of `e`, its wrappers' prefixes taken off: the
/// parquet and arrow crates wrap one cause in several layers (`External:
/// Parquet argument error: EOF: ...`, the chain repeating it), and a user
/// needs it once.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    let mut msg = inner.to_string();
    const WRAPPERS: [&str; 6] = [
        "External: ",
        "External error: ",
        "Parquet argument error: ",
        "Parquet error: ",
        "General: ",
        "EOF: ",
    ];
    while let Some(rest) = WRAPPERS.iter().find_map(|w| msg.strip_prefix(w)) {
        msg = rest.to_string();
    }
    // A wrapper that kept the chain in its own text: the first layer.
    if let Some((first, _)) = msg.split_once(": External: ") {
        msg = first.to_string();
    }
    msg
}
