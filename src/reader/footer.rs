//! Footer-only reads of one prediction file.
//!
//! Reads the 8-byte tail, then the parquet metadata, never a row group: a
//! few hundred microseconds for a nirs4all-sized file, dominated by decoding
//! the summary JSON.

use std::fs::File;
use std::path::Path;

use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::thrift;
use crate::error::{Error, Result};
use crate::schema::SUMMARY_KEY;
use crate::summary::json::{self, RawSummary};
use crate::summary::Summary;

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

/// What a workspace summary needs of one file, read the fast way.
#[derive(Debug)]
pub struct QuickFooter {
    /// Rows, from the parquet metadata.
    pub num_rows: u64,
    /// Row groups.
    pub num_row_groups: usize,
    /// The summary, lazily decoded (only `state` typed).
    pub summary: Option<RawSummary>,
}

/// Bytes read from the end of a file in the first `pread`; footers larger
/// than this take a second read.
pub const TAIL_PREFETCH: u64 = 64 << 10;

/// Reads a file's footer in one `pread` of its last 64 KiB in the common
/// case (two when the footer is larger), skims the Thrift metadata for the
/// row count, row groups and key/values without building column metadata,
/// and decodes the summary lazily. `len` is the file size from a `stat` the
/// caller already made. On anything unexpected it falls back to the full
/// parquet decoder, whose error names the problem.
///
/// # Errors
/// As [`read_footer`].
pub fn read_quick(path: &Path, len: u64) -> Result<QuickFooter> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let tail_len = len.min(TAIL_PREFETCH);
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact_at(&mut tail, len - tail_len)
        .map_err(|e| Error::io(path, e))?;
    let Some(meta) = footer_slice(&file, len, &tail)? else {
        return read_full(path);
    };
    let Ok(skim) = thrift::parse_file_metadata(&meta) else {
        return read_full(path);
    };
    let summary = skim
        .key_values
        .iter()
        .find(|(k, _)| *k == SUMMARY_KEY.as_bytes())
        .and_then(|(_, v)| *v)
        .map(|v| json::decode_raw(path, v))
        .transpose()?;
    Ok(QuickFooter {
        num_rows: skim.num_rows.max(0) as u64,
        num_row_groups: skim.num_row_groups,
        summary,
    })
}

/// The serialized `FileMetaData`, from `tail` or one more read; `None` when
/// the tail is not a plain parquet footer (the full decoder then explains).
fn footer_slice<'a>(
    file: &File,
    len: u64,
    tail: &'a [u8],
) -> Result<Option<std::borrow::Cow<'a, [u8]>>> {
    use std::os::unix::fs::FileExt;
    let n = tail.len();
    if n < 12 || &tail[n - 4..] != b"PAR1" {
        return Ok(None);
    }
    let meta_len = u32::from_le_bytes(tail[n - 8..n - 4].try_into().expect("4 bytes")) as u64;
    if meta_len + 12 > len {
        return Ok(None);
    }
    if meta_len + 8 <= n as u64 {
        let start = n - 8 - meta_len as usize;
        return Ok(Some(std::borrow::Cow::Borrowed(&tail[start..n - 8])));
    }
    let mut buf = vec![0u8; meta_len as usize];
    if file.read_exact_at(&mut buf, len - 8 - meta_len).is_err() {
        return Ok(None);
    }
    Ok(Some(std::borrow::Cow::Owned(buf)))
}

fn read_full(path: &Path) -> Result<QuickFooter> {
    let (_, meta) = open_metadata(path)?;
    let summary = summary_text(&meta)
        .map(|t| json::decode_raw(path, t.as_bytes()))
        .transpose()?;
    Ok(QuickFooter {
        num_rows: meta.file_metadata().num_rows().max(0) as u64,
        num_row_groups: meta.num_row_groups(),
        summary,
    })
}
