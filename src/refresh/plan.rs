//! Deciding, per file and from its footer alone, whether a refresh is due
//! (missing, old, invalid or inconsistent summary, or a layout readers cannot
//! find from the end), and recomputing the summary from the rows when it is
//! or when verifying.

use super::{FileReport, Mode, RefreshOptions, Status};
use crate::error::{Error, Result};
use crate::footer::meta as footer;
use crate::footer::FileKey;
use crate::rows;
use crate::schema::{ARROW_SCHEMA_KEY, STATE_KEY, SUMMARY_KEY};
use crate::summary::codec;
use crate::summary::json::SUPPORTED_MAJOR;
use crate::summary::{differences, utc_now, Summary, SummaryBuilder, N4A_VERSION};
use crate::workspace::DatasetFile;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::fs::File;
use std::path::Path;

/// A footer rewrite decided on: the file as opened, its key then, its
/// metadata and the summary recomputed from its rows.
pub(super) struct Rewrite {
    pub(super) file: File,
    pub(super) key: FileKey,
    pub(super) meta: ParquetMetaData,
    pub(super) fresh: Summary,
}

/// Why a file needs a refresh, from its footer alone.
fn footer_verdict(
    path: &Path,
    meta: &ParquetMetaData,
    report: &mut FileReport,
) -> Result<(Option<Summary>, Option<String>)> {
    let num_rows = meta.file_metadata().num_rows().max(0) as u64;
    let Some(text) = footer::summary_text(meta) else {
        return Ok((None, Some("no summary".to_string())));
    };
    let stored = match footer::decode_summary(path, meta) {
        Ok(s) => s.expect("the summary text is there"),
        Err(Error::InvalidSummary { reason, .. }) => {
            return Ok((None, Some(format!("invalid summary: {reason}"))))
        }
        Err(e) => return Err(e),
    };
    match compare_version(&stored.n4a_version) {
        std::cmp::Ordering::Less => {
            // What the file misses, in words.
            let why = match stored.n4a_version.trim() {
                "1.3" => "best lists of model instances, per-metric statistics, the runs' index",
                "1.2" => "ARROW:schema with the file's Arrow types and the summary inside",
                _ => "the state in its own compact key",
            };
            let reason = format!(
                "summary version {} (this build writes {N4A_VERSION}: {why})",
                stored.n4a_version
            );
            return Ok((Some(stored), Some(reason)));
        }
        std::cmp::Ordering::Greater => {
            report.warnings.push(format!(
                "summary version {} is newer than this build's {N4A_VERSION}: left as it is",
                stored.n4a_version
            ));
            return Ok((None, None));
        }
        std::cmp::Ordering::Equal => {}
    }
    let state_text = footer::key_value(meta, STATE_KEY);
    let reason = match &stored.state {
        None => Some("summary has no mergeable state".to_string()),
        Some(_) if stored.total_predictions != num_rows => Some(format!(
            "total_predictions is {} but the file has {num_rows} rows",
            stored.total_predictions
        )),
        Some(st) if st.rows != num_rows => Some(format!(
            "the summary state counts {} rows but the file has {num_rows}",
            st.rows
        )),
        Some(_) => {
            let check = state_text
                .and_then(|v| codec::split(v.as_bytes()).ok())
                .and_then(|e| e.head().ok())
                .map(|h| h.text);
            let keys: Vec<&str> = meta
                .file_metadata()
                .key_value_metadata()
                .map(|kv| kv.iter().map(|k| k.key.as_str()).collect())
                .unwrap_or_default();
            if !check.is_some_and(|c| c.matches(text.as_bytes())) {
                Some("the state was not written with this summary text".to_string())
            } else if let Some(why) = arrow_schema_verdict(meta, text) {
                Some(why)
            } else if !keys.ends_with(&[SUMMARY_KEY, STATE_KEY]) {
                Some(format!(
                    "n4a's key/values are not the footer's last ({}), so readers cannot find them from its end",
                    keys.join(", ")
                ))
            } else {
                None
            }
        }
    };
    Ok((Some(stored), reason))
}

/// Why the footer's `ARROW:schema` would show pyarrow something else than
/// the plain key/values (issue 28): absent (pyarrow would then show the
/// parquet schema's types, `string` where nirs4all's files had
/// `large_string`), unreadable, or without this summary inside.
fn arrow_schema_verdict(meta: &ParquetMetaData, text: &str) -> Option<String> {
    let Some(encoded) = footer::key_value(meta, ARROW_SCHEMA_KEY) else {
        return Some("no ARROW:schema: pyarrow would not show nirs4all's Arrow types".to_string());
    };
    match crate::footer::keys::decode_arrow_schema(encoded) {
        Err(e) => Some(e),
        Ok(s) if s.metadata().get(SUMMARY_KEY).map(String::as_str) != Some(text) => {
            Some("ARROW:schema does not carry this summary, so pyarrow shows another".to_string())
        }
        Ok(_) => None,
    }
}

/// Why a footer would be refused or misread by a reader of the
/// compatibility matrix (column orders polars before 1.42 rejects, NaN
/// statistics bounds): whatever its summary, the footer is rewritten.
fn compatibility_verdict(
    file: &File,
    path: &Path,
    len: u64,
    meta: &ParquetMetaData,
) -> Result<Option<String>> {
    let (bytes, footer_at) = crate::footer::footer_bytes(file, path, len)?;
    let runs_in_body = footer::key_value(meta, STATE_KEY)
        .and_then(|v| codec::split(v.as_bytes()).ok())
        .and_then(|e| e.prefix().ok())
        .is_some_and(|p| matches!(p.runs, codec::RunsPlace::Body(_)));
    if runs_in_body && crate::footer::body_end(meta, footer_at) == footer_at {
        return Ok(Some(
            "the state's runs are not where it says, just before the footer".to_string(),
        ));
    }
    Ok(match crate::footer::thrift::is_compatible(&bytes) {
        Ok(true) => None,
        Ok(false) => Some(
            "the footer has IEEE 754 column orders or NaN statistics bounds that older readers (polars before 1.42) reject"
                .to_string(),
        ),
        Err(e) => Some(format!("footer not understood: {}", e.0)),
    })
}

/// `n4a_version` against this build's: older, same or newer (minor; a
/// newer major was refused by the decoder).
fn compare_version(v: &str) -> std::cmp::Ordering {
    let parse = |s: &str| -> (u64, u64) {
        let mut it = s.split('.').map(|p| p.trim().parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let (mine, theirs) = (parse(N4A_VERSION), parse(v));
    debug_assert_eq!(mine.0, SUPPORTED_MAJOR);
    theirs.cmp(&mine)
}

/// Checks one file and, when it needs it (or verifying), recomputes its
/// summary; returns the rewrite to do, if any and if writing. Without
/// writing, a file needing one is marked [`Status::Stale`].
pub(super) fn plan(
    f: &DatasetFile,
    opts: &RefreshOptions,
    report: &mut FileReport,
) -> Result<Option<Rewrite>> {
    let path = &f.path;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let key = FileKey::from_metadata(&file.metadata().map_err(|e| Error::io(path, e))?);
    let meta = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| Error::parquet(path, e))?;
    let num_rows = meta.file_metadata().num_rows().max(0) as u64;
    report.rows = Some(num_rows);
    let (stored, mut reason) = footer_verdict(path, &meta, report)?;
    if reason.is_none() {
        reason = compatibility_verdict(&file, path, key.len, &meta)?;
    }
    if reason.is_none() && (opts.mode == Mode::Refresh || stored.is_none()) {
        return Ok(None);
    }
    let fresh = recompute(path, stored.as_ref(), opts).map_err(|e| {
        if FileKey::of(path).ok() == Some(key) {
            e
        } else {
            Error::ChangedDuringRefresh {
                path: path.to_path_buf(),
            }
        }
    })?;
    report.recomputed = true;
    // The rows were read through a second open: make sure it was the same
    // file (an unlocked writer may have replaced it meanwhile).
    if FileKey::of(path).ok() != Some(key) {
        return Err(Error::ChangedDuringRefresh {
            path: path.to_path_buf(),
        });
    }
    if fresh.total_predictions != num_rows {
        return Err(Error::corrupt(
            path,
            format!(
                "{} rows read but the metadata says {num_rows}",
                fresh.total_predictions
            ),
        ));
    }
    if reason.is_none() {
        let stored = stored.as_ref().expect("checked above");
        report.differences = differences(stored, &fresh);
        if report.differences.is_empty() {
            return Ok(None);
        }
        reason = Some("the stored summary differs from the rows".to_string());
    }
    report.reason = reason;
    if !opts.write {
        report.status = Status::Stale;
        return Ok(None);
    }
    Ok(Some(Rewrite {
        file,
        key,
        meta,
        fresh,
    }))
}

/// The summary of the file's rows, with the stored state's directions and
/// k unless the options override them.
fn recompute(path: &Path, stored: Option<&Summary>, opts: &RefreshOptions) -> Result<Summary> {
    let mut so = opts.summary.clone();
    if let Some(st) = stored.and_then(|s| s.state.as_ref()) {
        for (metric, m) in &st.metrics {
            if so.directions.supplied(metric).is_none()
                && crate::metric::builtin_direction(metric) != Some(m.direction)
            {
                so.directions = so.directions.with(metric.clone(), m.direction);
            }
        }
        if st.top_k > 0 {
            so.top_k = st.top_k;
        }
    }
    let mut b = SummaryBuilder::new(so);
    rows::summarize(path, &mut b)?;
    Ok(b.finish(Some(utc_now())))
}

#[cfg(test)]
mod tests {
    use super::compare_version;
    use std::cmp::Ordering;

    #[test]
    fn versions_compare_by_number_not_by_text() {
        assert_eq!(
            compare_version(crate::summary::N4A_VERSION),
            Ordering::Equal
        );
        assert_eq!(compare_version("1.0"), Ordering::Less);
        assert_eq!(compare_version("1.1"), Ordering::Less);
        assert_eq!(compare_version("1.10"), Ordering::Greater);
        assert_eq!(compare_version("1.2"), Ordering::Less);
        assert_eq!(compare_version("1.3"), Ordering::Less);
        assert_eq!(compare_version("1.4"), Ordering::Less);
        assert_eq!(compare_version(" 1.6 "), Ordering::Greater);
    }
}
