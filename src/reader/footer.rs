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

/// The value of `key` in a file's key/value metadata.
pub fn key_value<'a>(meta: &'a ParquetMetaData, key: &str) -> Option<&'a str> {
    meta.file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_deref())
}

/// The raw `n4a_summary` text of a file's key/value metadata.
pub fn summary_text(meta: &ParquetMetaData) -> Option<&str> {
    key_value(meta, SUMMARY_KEY)
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

/// A footer's row counts and raw summary bytes (the summary not decoded).
#[derive(Debug)]
pub struct RawFooter {
    /// Rows, from the parquet metadata.
    pub num_rows: u64,
    /// Row groups.
    pub num_row_groups: usize,
    /// The `n4a_summary` bytes as stored, if any.
    pub summary: Option<Vec<u8>>,
}

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
    let raw = read_raw(path, len)?;
    Ok(QuickFooter {
        num_rows: raw.num_rows,
        num_row_groups: raw.num_row_groups,
        summary: raw
            .summary
            .map(|v| json::decode_raw(path, &v))
            .transpose()?,
    })
}

/// Like [`read_quick`] without decoding the summary: its bytes as stored.
///
/// # Errors
/// [`Error::Io`] or [`Error::Parquet`] naming the file.
pub fn read_raw(path: &Path, len: u64) -> Result<RawFooter> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let tail_len = len.min(TAIL_PREFETCH);
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact_at(&mut tail, len - tail_len)
        .map_err(|e| Error::io(path, e))?;
    let skimmed = footer_slice(&file, len, &tail)?.and_then(|meta| {
        let skim = thrift::parse_file_metadata(&meta).ok()?;
        let summary = skim
            .key_values
            .iter()
            .find(|(k, _)| *k == SUMMARY_KEY.as_bytes())
            .and_then(|(_, v)| v.map(<[u8]>::to_vec));
        Some(RawFooter {
            num_rows: skim.num_rows.max(0) as u64,
            num_row_groups: skim.num_row_groups,
            summary,
        })
    });
    match skimmed {
        Some(raw) => Ok(raw),
        None => {
            let (_, meta) = open_metadata(path)?;
            Ok(RawFooter {
                num_rows: meta.file_metadata().num_rows().max(0) as u64,
                num_row_groups: meta.num_row_groups(),
                summary: summary_text(&meta).map(|t| t.as_bytes().to_vec()),
            })
        }
    }
}

/// The serialized `FileMetaData` of an open file of `len` bytes, and where
/// it starts (everything before is the magic and the row groups, page
/// indexes and bloom filters, which a footer rewrite copies as they are).
///
/// # Errors
/// [`Error::Parquet`] if the tail is not a plain parquet footer.
pub fn footer_bytes(file: &File, path: &Path, len: u64) -> Result<(Vec<u8>, u64)> {
    use std::os::unix::fs::FileExt;
    let bad = |m: &str| {
        Error::parquet(
            path,
            parquet::errors::ParquetError::General(format!("footer: {m}")),
        )
    };
    if len < 12 {
        return Err(bad("file shorter than a parquet header and footer"));
    }
    let mut end = [0u8; 8];
    file.read_exact_at(&mut end, len - 8)
        .map_err(|e| Error::io(path, e))?;
    if &end[4..] != b"PAR1" {
        return Err(bad("no PAR1 magic at the end (encrypted or not parquet)"));
    }
    let meta_len = u64::from(u32::from_le_bytes(end[..4].try_into().expect("4 bytes")));
    if meta_len + 12 > len {
        return Err(bad("metadata length larger than the file"));
    }
    let start = len - 8 - meta_len;
    let mut buf = vec![0u8; meta_len as usize];
    file.read_exact_at(&mut buf, start)
        .map_err(|e| Error::io(path, e))?;
    Ok((buf, start))
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
