//! A footer read whole by the parquet crate: what an append, a refresh's
//! rewrite and [`super::Footer::metadata`] need (the row groups, every
//! key/value), and the summary and state decoded from it whichever version
//! stored them. A workspace reads footers the cheaper way of `super::info`.

use crate::blob::Blob;
use std::path::Path;

use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::{Error, Result};
use crate::schema::{RUNS_KEY, STATE_KEY, SUMMARY_KEY};
use crate::summary::codec;
use crate::summary::json;
use crate::summary::Summary;

/// The whole parquet metadata of `path`, read by the parquet crate (one
/// open, two small reads at the end of the file), for a tool that shows
/// what is stored even where n4a's summary does not decode (`n4a inspect`).
///
/// # Errors
/// [`Error::Io`] if it cannot be opened, [`Error::Parquet`] if it is not a
/// parquet file or is truncated.
pub fn read(path: &Path) -> Result<ParquetMetaData> {
    open_metadata(path).map(|(_, m)| m)
}

/// Opens `path` and reads its parquet metadata (two small reads at the end
/// of the file).
///
/// # Errors
/// [`Error::Io`] if it cannot be opened, [`Error::Parquet`] if it is not a
/// parquet file or is truncated.
pub(crate) fn open_metadata(path: &Path) -> Result<(Blob, ParquetMetaData)> {
    super::guard::guarded(path, || open_metadata_unguarded(path))
}

fn open_metadata_unguarded(path: &Path) -> Result<(Blob, ParquetMetaData)> {
    let file = Blob::open(path).map_err(|e| Error::io(path, e))?;
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| Error::parquet(path, e))?;
    Ok((file, meta))
}

/// The value of `key` in a file's key/value metadata.
pub(crate) fn key_value<'a>(meta: &'a ParquetMetaData, key: &str) -> Option<&'a str> {
    meta.file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_deref())
}

/// The raw `n4a_summary` text of a file's key/value metadata.
pub(crate) fn summary_text(meta: &ParquetMetaData) -> Option<&str> {
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
pub(crate) fn decode_state(
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

/// The state of `n4a_state` and its runs, if the footer has one: 1.2's
/// from the `n4a_runs` key/value, 1.3's from the file's body (one more
/// open and read of `path`, checked against the head's hash).
fn state_of(path: &Path, meta: &ParquetMetaData) -> Result<Option<crate::summary::SummaryState>> {
    let Some(value) = key_value(meta, STATE_KEY) else {
        return Ok(None);
    };
    let packed = codec::split(value.as_bytes()).map_err(|e| invalid_state(path, &e))?;
    let prefix = packed.prefix().map_err(|e| invalid_state(path, &e))?;
    let read = |at: u64, len: u64| -> Result<Vec<u8>> {
        let file = Blob::open(path).map_err(|e| Error::io(path, e))?;
        let len = usize::try_from(len).map_err(|_| Error::corrupt(path, "state length"))?;
        let mut v = vec![0u8; len];
        file.read_exact_at(&mut v, at)
            .map_err(|e| Error::io(path, e))?;
        Ok(v)
    };
    let body;
    let runs: &[u8] = match prefix.runs {
        codec::RunsPlace::KeyValue { .. } => key_value(meta, RUNS_KEY)
            .ok_or_else(|| Error::InvalidSummary {
                path: path.to_path_buf(),
                reason: format!("{STATE_KEY} without {RUNS_KEY}"),
            })?
            .as_bytes(),
        codec::RunsPlace::Body(r) => {
            body = read(r.at, r.len)?;
            &body
        }
    };
    let (mut state, _) = packed.state(runs).map_err(|e| invalid_state(path, &e))?;
    // 1.5: the group aggregates, which an append continues.
    if let Some(g) = packed.groups_place().map_err(|e| invalid_state(path, &e))? {
        let bytes = read(g.at, g.len)?;
        state.groups = Some(codec::decode_groups(&bytes, &g).map_err(|e| invalid_state(path, &e))?);
    }
    Ok(Some(state))
}

fn invalid_state(path: &Path, e: &codec::CodecError) -> Error {
    Error::InvalidSummary {
        path: path.to_path_buf(),
        reason: format!("{STATE_KEY}: {e}"),
    }
}
