//! Rewriting only a file's tail: the old bytes up to the footer (less the
//! old 1.3 runs that end the body), then the new runs and the old
//! `FileMetaData` with its key/values replaced (`ARROW:schema` carrying the
//! summary, n4a's last) in the form every reader accepts (`footer`),
//! parsed back and renamed into place under the dataset's lock when the
//! file did not change meanwhile.

use super::{keys, meta, FileKey};
use crate::error::{Error, Result};
use crate::files::TempFile;
use crate::summary::Summary;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Writes the file's body (its bytes up to its footer, without the runs
/// of its old 1.3 state) plus the new tail (`footer::write_tail`: the new
/// state's runs, then the footer whose key/values are the old ones without
/// n4a's, `ARROW:schema` with the file's Arrow types, the old
/// `ARROW:schema`'s when it had one, and the summary inside, then n4a's)
/// into a temporary file, checks it parses with the same rows and row
/// groups, and renames it over the file unless the file changed since
/// `key` (the file as `file` was opened, whose metadata is `meta`).
/// `before_commit` runs just before the last check (tests use it to race a
/// writer). Cost: the body copied once, the footer parsed back once.
pub(crate) fn rewrite_footer(
    path: &Path,
    file: &File,
    key: FileKey,
    meta: &ParquetMetaData,
    summary: &Summary,
    before_commit: Option<&dyn Fn(&Path)>,
) -> Result<()> {
    let parts = summary.footer_parts();
    let columns =
        parquet::arrow::parquet_to_arrow_schema(meta.file_metadata().schema_descr(), None)
            .map_err(|e| Error::parquet(path, e))?;
    let old_keys = keys::OldKeys::of(meta);
    let (old_footer, footer_at) = super::footer_bytes(file, path, key.len)?;
    let data_len = super::body_end(meta, footer_at);
    let (tmp, mut out) = TempFile::create(path)?;
    let tmp_err = |e| Error::io(tmp.path(), e);
    let mut src = file;
    src.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    let copied = std::io::copy(&mut src.take(data_len), &mut out).map_err(tmp_err)?;
    if copied != data_len {
        return Err(if FileKey::of(path).ok() == Some(key) {
            Error::io(path, std::io::ErrorKind::UnexpectedEof.into())
        } else {
            Error::ChangedDuringRefresh {
                path: path.to_path_buf(),
            }
        });
    }
    out.flush().map_err(tmp_err)?;
    super::write_tail(
        &out,
        tmp.path(),
        data_len,
        &old_footer,
        parts.body.as_deref(),
        |runs_at| keys::compose(&old_keys, &[], &columns, &parts.entries(runs_at)),
    )?;
    let check = ParquetMetaDataReader::new()
        .parse_and_finish(&out)
        .map_err(|e| Error::parquet(tmp.path(), e))?;
    let same = check.file_metadata().num_rows() == meta.file_metadata().num_rows()
        && check.num_row_groups() == meta.num_row_groups()
        && meta::summary_text(&check) == Some(parts.text.as_str());
    if !same {
        return Err(Error::corrupt(
            tmp.path(),
            "the rewritten footer does not read back as written",
        ));
    }
    if let Some(hook) = before_commit {
        hook(path);
    }
    if FileKey::of(path).ok() != Some(key) {
        return Err(Error::ChangedDuringRefresh {
            path: path.to_path_buf(),
        });
    }
    tmp.commit(out, path)
}
