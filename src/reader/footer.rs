//! Footer-only reads of one prediction file.
//!
//! Reads the 8-byte tail, then the parquet metadata, never a row group: a
//! few hundred microseconds for a nirs4all-sized file, dominated by decoding
//! the summary JSON.

use std::fs::File;
use std::path::Path;

use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::{Error, Result};
use crate::schema::SUMMARY_KEY;
use crate::summary::{json, Summary};

/// What one file's footer says.
#[derive(Debug, Clone)]
pub struct Footer {
    /// Rows, from the parquet metadata.
    pub num_rows: u64,
    /// Row groups.
    pub num_row_groups: usize,
    /// The decoded summary, if the file has one.
    pub summary: Option<Summary>,
}

/// Opens `path` and reads its parquet metadata (two small reads at the end
/// of the file).
///
/// # Errors
/// [`Error::Io`] if it cannot be opened, [`Error::Parquet`] if it is not a
/// parquet file or is truncated.
pub fn open_metadata(path: &Path) -> Result<(File, ParquetMetaData)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| Error::parquet(path, e))?;
    Ok((file, meta))
}

/// The raw `n4a_summary` text of a file's key/value metadata.
pub fn summary_text(meta: &ParquetMetaData) -> Option<&str> {
    meta.file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == SUMMARY_KEY)
        .and_then(|kv| kv.value.as_deref())
}

/// Decodes the summary of already-read metadata; `Ok(None)` when the file
/// has none (nirs4all before summaries existed: normal, not an error).
///
/// # Errors
/// [`Error::InvalidSummary`] or [`Error::UnsupportedVersion`].
pub fn decode_summary(path: &Path, meta: &ParquetMetaData) -> Result<Option<Summary>> {
    summary_text(meta)
        .map(|t| json::decode(path, t.as_bytes()))
        .transpose()
}

/// Reads the footer of `path`: row counts and decoded summary.
///
/// # Errors
/// As [`open_metadata`] and [`decode_summary`].
pub fn read_footer(path: &Path) -> Result<Footer> {
    let (_, meta) = open_metadata(path)?;
    Ok(Footer {
        num_rows: meta.file_metadata().num_rows().max(0) as u64,
        num_row_groups: meta.num_row_groups(),
        summary: decode_summary(path, &meta)?,
    })
}
