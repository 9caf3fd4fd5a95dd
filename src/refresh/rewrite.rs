//! Rewriting only a file's footer: the old bytes up to the footer, then the
//! old `FileMetaData` with its key/values replaced (`ARROW:schema` dropped,
//! n4a's three last), parsed back and renamed into place under the
//! dataset's lock when the file did not change meanwhile.

use super::plan::Rewrite;
use super::RefreshOptions;
use crate::error::{Error, Result};
use crate::files::TempFile;
use crate::reader::cache::FileKey;
use crate::reader::{footer, thrift};
use crate::schema::{ARROW_SCHEMA_KEY, RUNS_KEY, STATE_KEY, SUMMARY_KEY};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Decodes a base64 `ARROW:schema` value (an IPC schema message, with or
/// without the continuation marker).
fn decode_arrow_schema(encoded: &str) -> std::result::Result<arrow_schema::Schema, String> {
    let bytes = base64_simd::STANDARD
        .decode_to_vec(encoded)
        .map_err(|e| format!("ARROW:schema is not base64: {e}"))?;
    let slice = if bytes.len() > 8 && bytes[..4] == [0xff; 4] {
        &bytes[8..]
    } else {
        &bytes[..]
    };
    let msg = arrow_ipc::root_as_message(slice)
        .map_err(|e| format!("ARROW:schema is not an Arrow IPC message: {e}"))?;
    let fb = msg
        .header_as_schema()
        .ok_or("ARROW:schema is not an Arrow schema message")?;
    arrow_ipc::convert::try_fb_to_schema(fb).map_err(|e| format!("ARROW:schema: {e}"))
}

/// The key/values of the rewritten footer: the old ones in their order
/// without n4a's and without `ARROW:schema` (whose presence would make
/// pyarrow show only the metadata inside it: the schema-level metadata it
/// carried, other than n4a's keys, becomes plain key/values, so nothing a
/// reader saw is lost; arrow readers then take the types from the parquet
/// schema, and nirs4all's large_utf8 strings read as utf8, which the
/// contract allows), then n4a's `entries` last, in their order (the state's
/// head must be the footer's last key/value: readers find it from the end).
fn new_key_values(meta: &ParquetMetaData, entries: &[(String, String)]) -> Vec<(String, String)> {
    let ours = |k: &str| k == SUMMARY_KEY || k == STATE_KEY || k == RUNS_KEY;
    let mut kv: Vec<(String, String)> = Vec::new();
    let put = |kv: &mut Vec<(String, String)>, k: &str, v: String| match kv
        .iter_mut()
        .find(|(kk, _)| kk == k)
    {
        Some(slot) => slot.1 = v,
        None => kv.push((k.to_string(), v)),
    };
    let old = meta.file_metadata().key_value_metadata();
    for k in old.into_iter().flatten() {
        let value = k.value.clone().unwrap_or_default();
        if k.key == ARROW_SCHEMA_KEY {
            if let Ok(schema) = decode_arrow_schema(&value) {
                for (ik, iv) in schema.metadata() {
                    if !ours(ik) && !kv.iter().any(|(k, _)| k == ik) {
                        kv.push((ik.clone(), iv.clone()));
                    }
                }
            }
        } else if !ours(&k.key) {
            put(&mut kv, &k.key, value);
        }
    }
    kv.extend(entries.iter().cloned());
    kv
}

/// Writes the file's bytes up to its footer plus a footer with the new
/// key/values into a temporary file, checks it parses with the same rows
/// and row groups, and renames it over the file unless the file changed
/// since `key`.
pub(super) fn rewrite_footer(path: &Path, rw: &Rewrite, opts: &RefreshOptions) -> Result<()> {
    let Rewrite {
        file,
        key,
        meta,
        fresh: summary,
    } = rw;
    let key = *key;
    let entries = summary.footer_entries();
    let text = entries
        .iter()
        .find(|(k, _)| k == SUMMARY_KEY)
        .map(|(_, v)| v.clone())
        .expect("a summary entry");
    let kv = new_key_values(meta, &entries);
    let (old_footer, data_len) = footer::footer_bytes(file, path, key.len)?;
    let pairs: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let new_footer = thrift::replace_key_values(&old_footer, &pairs)
        .map_err(|e| Error::corrupt(path, format!("footer not rewritable: {}", e.0)))?;
    let footer_len = u32::try_from(new_footer.len()).map_err(|_| Error::InvalidSummary {
        path: path.to_path_buf(),
        reason: "the new footer would exceed 4 GiB".to_string(),
    })?;
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
    out.write_all(&new_footer).map_err(tmp_err)?;
    out.write_all(&footer_len.to_le_bytes()).map_err(tmp_err)?;
    out.write_all(b"PAR1").map_err(tmp_err)?;
    out.flush().map_err(tmp_err)?;
    let check = ParquetMetaDataReader::new()
        .parse_and_finish(&out)
        .map_err(|e| Error::parquet(tmp.path(), e))?;
    let same = check.file_metadata().num_rows() == meta.file_metadata().num_rows()
        && check.num_row_groups() == meta.num_row_groups()
        && footer::summary_text(&check) == Some(text.as_str());
    if !same {
        return Err(Error::corrupt(
            tmp.path(),
            "the rewritten footer does not read back as written",
        ));
    }
    if let Some(hook) = &opts.before_commit {
        hook(path);
    }
    if FileKey::of(path).ok() != Some(key) {
        return Err(Error::ChangedDuringRefresh {
            path: path.to_path_buf(),
        });
    }
    tmp.commit(out, path)
}
