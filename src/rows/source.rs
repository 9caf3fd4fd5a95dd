//! Rows that live somewhere other than a `.meta.parquet` file: a nirs4all
//! store read in place (`crate::store::inplace`). A workspace lists such a
//! dataset like a file (a footer held in memory), and every place a query
//! reads a file's columns asks the dataset's [`RowSource`] instead, so one
//! engine answers both and the answers agree by construction.

use arrow_array::RecordBatch;

use crate::error::Result;

/// The columns of a dataset's rows, by the contract's column names, in the
/// dataset's row order (what the `.meta.parquet` copy of it would hold).
pub trait RowSource: Send + Sync {
    /// The columns `names` (contract names; a name the source does not hold
    /// reads as a null column) of rows `rows` (0-based, ascending), or of
    /// every row, as one batch. String columns are `utf8`.
    ///
    /// # Errors
    /// What reading the source can fail with, naming it.
    fn columns(&self, names: &[&str], rows: Option<&[u64]>) -> Result<RecordBatch>;
}

impl std::fmt::Debug for dyn RowSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowSource")
    }
}
