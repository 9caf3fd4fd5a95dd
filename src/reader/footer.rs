//! Footer-only reads of one prediction file through the parquet crate's
//! full metadata decode: a typed [`Summary`] with its state (whichever
//! version stored it), for appends, refresh and inspection. A workspace
//! reads footers the cheaper way of [`super::info`].

use std::fs::File;
use std::path::Path;

use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::{Error, Result};
use crate::schema::{RUNS_KEY, STATE_KEY, SUMMARY_KEY};
use crate::summary::codec;
use crate::summary::json;
use crate::summary::Summary;

/// What one file's footer says, fully typed.
#[derive(Debug, Clone)]
pub struct Footer {
    /// Rows, from the parquet metadata.
    pub num_rows: u64,
    /// Row groups.
    pub num_row_groups: usize,
    /// The decoded summary (with its state, whichever version stored it),
    /// if the file has one.
    pub summary: Option<Summary>,
}

/// Opens `path` and reads its parquet metadata (two small reads at the end
/// of the file).
///
/// # Errors
/// [`Error::Io`] if it cannot be opened, [`Error::Parquet`] if it is not a
/// parquet file or is truncated.
pub fn open_metadata(path: &Path) -> Result<(File, ParquetMetaData)> {
    super::guard::guarded(path, || open_metadata_unguarded(path))
}

fn open_metadata_unguarded(path: &Path) -> Result<(File, ParquetMetaData)> {
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

/// Decodes the summary of already-read metadata, with its state from
/// `n4a_state` (1.2) or from inside the JSON (1.1); `Ok(None)` when the
/// file has none (nirs4all before summaries existed: normal, not an
/// error).
///
/// # Errors
/// [`Error::InvalidSummary`] (the state too) or [`Error::UnsupportedVersion`].
pub fn decode_summary(path: &Path, meta: &ParquetMetaData) -> Result<Option<Summary>> {
    let Some(text) = summary_text(meta) else {
        return Ok(None);
    };
    let mut s = json::decode(path, text.as_bytes())?;
    if let Some(state) = state_of(path, meta)? {
        s.state = Some(state);
    }
    Ok(Some(s))
}

/// Only the mergeable state of already-read metadata: from `n4a_state`
/// (1.2) without parsing the summary JSON, from inside the JSON for 1.1,
/// and `None` for a summary without one (nirs4all's 1.0, whose JSON is then
/// not parsed at all: it names no `"state"`). What an append needs.
///
/// # Errors
/// As [`decode_summary`].
pub fn decode_state(
    path: &Path,
    meta: &ParquetMetaData,
) -> Result<Option<crate::summary::SummaryState>> {
    if let Some(state) = state_of(path, meta)? {
        return Ok(Some(state));
    }
    match summary_text(meta) {
        Some(text) if text.contains("\"state\"") => Ok(json::decode(path, text.as_bytes())?.state),
        Some(text) => json::version_of(path, text.as_bytes()).map(|_| None),
        None => Ok(None),
    }
}

/// The 1.2 state of `n4a_state` and `n4a_runs`, if the footer has one.
fn state_of(path: &Path, meta: &ParquetMetaData) -> Result<Option<crate::summary::SummaryState>> {
    let Some(value) = key_value(meta, STATE_KEY) else {
        return Ok(None);
    };
    let runs = key_value(meta, RUNS_KEY).ok_or_else(|| Error::InvalidSummary {
        path: path.to_path_buf(),
        reason: format!("{STATE_KEY} without {RUNS_KEY}"),
    })?;
    let (state, _) = codec::split(value.as_bytes())
        .and_then(|e| e.state(runs.as_bytes()))
        .map_err(|e| invalid_state(path, &e))?;
    Ok(Some(state))
}

fn invalid_state(path: &Path, e: &codec::CodecError) -> Error {
    Error::InvalidSummary {
        path: path.to_path_buf(),
        reason: format!("{STATE_KEY}: {e}"),
    }
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
