//! The parquet footer as n4a reads and writes it: its Thrift bytes
//! (`thrift`: skimmed, located, rewritten), the key/values n4a writes into
//! it (`keys`: `ARROW:schema` and n4a's own), and sealing a freshly
//! written file so that every reader our users have opens it.
//!
//! This layer sits below the readers and writers: it knows the parquet
//! footer and the summary's framing, never a workspace or a query.

pub(crate) mod guard;
pub(crate) mod info;
mod key;
pub(crate) mod keys;
pub mod meta;
pub(crate) mod rewrite;
pub(crate) mod thrift;

pub use info::Footer;
pub use key::{FileKey, RACY_WINDOW};

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The serialized `FileMetaData` of an open file of `len` bytes, and where
/// it starts (everything before is the magic and the row groups, page
/// indexes and bloom filters, which a footer rewrite copies as they are).
///
/// # Errors
/// [`Error::Corrupt`] if the tail is not a plain parquet footer.
pub(crate) fn footer_bytes(file: &File, path: &Path, len: u64) -> Result<(Vec<u8>, u64)> {
    let bad = |m: &str| Error::corrupt(path, format!("footer: {m}"));
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

/// Where a file's body ends: where its footer starts (`footer_at`), or,
/// when its 1.3 state names runs that end right there, where those runs
/// start, or the 1.5 group aggregates just before them (a rewrite
/// replaces them with the new state's).
pub(crate) fn body_end(meta: &parquet::file::metadata::ParquetMetaData, footer_at: u64) -> u64 {
    let place = meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == crate::schema::STATE_KEY))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| crate::summary::codec::split(v.as_bytes()).ok())
        .and_then(|e| Some((e.prefix().ok()?.runs, e.groups_place().ok()?)));
    match place {
        Some((crate::summary::codec::RunsPlace::Body(r), groups)) if r.at + r.len == footer_at => {
            // 1.5: the group aggregates just before the runs go too.
            match groups {
                Some(g) if g.at + g.len == r.at => g.at,
                _ => r.at,
            }
        }
        _ => footer_at,
    }
}

/// Writes what n4a puts after a file's body, from `body_end` on: the runs
/// of a summary's state (`runs`: raw bytes, format 1.3), then the footer,
/// the `FileMetaData` `meta` with the key/values `kv(runs_at)` (given where
/// the runs went, which the state's head names) in the form every reader
/// accepts ([`thrift::replace_key_values`]), its length and the magic; the
/// file is cut there. Cost: the runs and the footer written once.
///
/// # Errors
/// [`Error::Io`] or [`Error::Corrupt`] naming `path`.
pub(crate) fn write_tail(
    file: &File,
    path: &Path,
    body_end: u64,
    meta: &[u8],
    runs: Option<&[u8]>,
    kv: impl FnOnce(u64) -> Vec<(String, String)>,
) -> Result<()> {
    let mut at = body_end;
    if let Some(r) = runs {
        file.write_all_at(r, at).map_err(|e| Error::io(path, e))?;
        at += r.len() as u64;
    }
    let pairs = kv(body_end);
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let footer = thrift::replace_key_values(meta, &refs).map_err(|e| not_rewritable(path, &e))?;
    put_footer(file, path, at, footer)
}

fn not_rewritable(path: &Path, e: &thrift::SkimError) -> Error {
    Error::corrupt(path, format!("footer not rewritable: {}", e.0))
}

/// Writes `footer` (a serialized `FileMetaData`), its length and the magic
/// at `at`, and cuts the file there.
fn put_footer(file: &File, path: &Path, at: u64, mut footer: Vec<u8>) -> Result<()> {
    let len = u32::try_from(footer.len())
        .map_err(|_| Error::corrupt(path, "the footer would exceed 4 GiB"))?;
    footer.extend_from_slice(&len.to_le_bytes());
    footer.extend_from_slice(b"PAR1");
    file.write_all_at(&footer, at)
        .map_err(|e| Error::io(path, e))?;
    file.set_len(at + footer.len() as u64)
        .map_err(|e| Error::io(path, e))
}

/// Seals a parquet file at `path` that the `parquet` crate (or a tool
/// built on it) just wrote and nobody reads yet: its footer is rewritten in
/// place, in the form every reader of the compatibility matrix accepts
/// (type-defined column orders, no NaN statistics bounds; docs/FORMAT.md).
/// Not atomic: use it before publishing the file (n4a's own writers seal
/// their temporary files before renaming them).
///
/// # Errors
/// [`Error::Io`] or [`Error::Corrupt`] naming `path`.
pub fn seal_in_place(path: &Path) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    seal(&file, path)?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// Rewrites the footer of a file the `parquet` crate just wrote (not yet
/// fsynced nor renamed into place) in the form every reader of the
/// compatibility matrix accepts ([`thrift::make_compatible`]: column
/// orders older readers know, no NaN statistics bounds). Cost: one read
/// and one write of the footer, a truncate; nothing when it is already in
/// that form. `file` must be open for reading and writing.
///
/// # Errors
/// [`Error::Io`] or [`Error::Corrupt`] naming `path`.
pub(crate) fn seal(file: &File, path: &Path) -> Result<()> {
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let (old, start) = footer_bytes(file, path, len)?;
    let new = thrift::make_compatible(&old).map_err(|e| not_rewritable(path, &e))?;
    if new == old {
        return Ok(());
    }
    put_footer(file, path, start, new)
}
