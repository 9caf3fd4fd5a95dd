//! What a workspace lists: its prediction files, and for each its footer or
//! why it could not be read. Shared by the workspace, its merge and every
//! per-file report (queries, refresh, the server).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::footer::info::Footer;

/// One prediction file of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DatasetFile {
    /// The file's path.
    pub path: PathBuf,
    /// The dataset: the file name less `.meta.parquet`.
    pub dataset: String,
}

/// What listing a workspace finds.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Its prediction files, sorted by path.
    pub files: Vec<DatasetFile>,
    /// The sub-folders that could not be listed (a recursive listing goes
    /// on without them).
    pub errors: Vec<FileError>,
}

/// A file n4a could not serve, with why: `kind` is [`Error::kind`] (`io`,
/// `parquet` for a file the parquet library refuses, `corrupt`,
/// `damaged_data`, `invalid_summary`, `unsupported_version`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "server",
    schema(
        description = "A file n4a could not serve, with why: `kind` is `io`, `parquet` \
        (a file the parquet library refuses), `corrupt`, `damaged_data`, `invalid_summary`, \
        `unsupported_version`, ..."
    )
)]
pub struct FileError {
    /// The file.
    #[cfg_attr(feature = "server", schema(value_type = String))]
    pub path: PathBuf,
    /// Its dataset, when the name gave one.
    pub dataset: Option<String>,
    /// The kind of failure.
    pub kind: String,
    /// The full message, naming the file.
    pub error: String,
}

impl FileError {
    /// The report of `e` about `path`.
    pub fn new(path: &Path, dataset: Option<&str>, e: &Error) -> Self {
        let kind = e.kind();
        FileError {
            path: path.to_path_buf(),
            dataset: dataset.map(str::to_string),
            kind: kind.to_string(),
            error: e.to_string(),
        }
    }
}

/// One file's footer, or why it could not be read.
#[derive(Debug, Clone)]
pub struct FileFooter {
    /// The file.
    pub file: DatasetFile,
    /// Its footer, or its error (shared with the cache).
    pub footer: std::result::Result<Arc<Footer>, Arc<FileError>>,
    /// Where its rows are read when they are not in a `.meta.parquet`
    /// file at `file.path` (a store answered in place).
    pub rows: Option<Arc<dyn crate::rows::source::RowSource>>,
}
