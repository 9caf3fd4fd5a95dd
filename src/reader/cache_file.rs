//! The workspace-level summary cache, `<workspace>/.n4a/summary-cache.json`:
//! every file's summary and change markers in one file, so a cold reader
//! (a new process) answers a workspace summary with one read instead of one
//! footer read per file.
//!
//! `n4a refresh --write-cache` writes it; [`super::Workspace`] uses it when
//! present. It is only ever a hint: each entry is used only when its file's
//! current [`FileKey`] (size, mtime, ctime, inode, device) equals the one
//! recorded and the entry was not racy when recorded (the file's mtime was
//! at least [`super::cache::RACY_WINDOW`] older than the read). Any other
//! file is read from its footer as usual, and a cache that is missing,
//! unreadable, of another version or larger than [`MAX_CACHE_BYTES`] is
//! ignored, never an error. Copying a workspace elsewhere changes inodes,
//! so the copy's reader reads footers until the cache is rewritten.
//!
//! Format (JSON): `{"n4a_cache_version": 1, "entries": [{path (relative,
//! `/`-separated), dataset, len, mtime_ns, ctime_ns, ino, dev, read_at_ns,
//! num_rows, num_row_groups, summary}]}` with `summary` the file's
//! `n4a_summary` as a JSON object (bare `NaN` already rewritten to null).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::cache::{FileKey, RACY_WINDOW};
use super::footer;
use super::workspace::DatasetFile;
use crate::error::{Error, Result};
use crate::summary::json::sanitize_non_finite;
use crate::writer::commit::TempFile;

/// Folder of n4a's workspace-level files (hidden: listings skip it).
pub const CACHE_DIR: &str = ".n4a";
/// The cache file's name inside [`CACHE_DIR`].
pub const CACHE_FILE: &str = "summary-cache.json";
/// The format version this build reads and writes.
pub const CACHE_VERSION: u32 = 1;
/// A cache file larger than this is ignored.
pub const MAX_CACHE_BYTES: u64 = 1 << 30;

/// One file's recorded footer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Path relative to the workspace, `/`-separated.
    pub path: String,
    /// The dataset.
    pub dataset: String,
    /// File size when recorded.
    pub len: u64,
    /// mtime (ns) when recorded.
    pub mtime_ns: i128,
    /// ctime (ns) when recorded.
    pub ctime_ns: i128,
    /// Inode when recorded.
    pub ino: u64,
    /// Device when recorded.
    pub dev: u64,
    /// When the footer was read (ns since the epoch), for the racy guard.
    pub read_at_ns: i128,
    /// Rows, from the parquet metadata.
    pub num_rows: u64,
    /// Row groups.
    pub num_row_groups: usize,
    /// The summary, or null for a file without one.
    pub summary: Option<Box<RawValue>>,
}

impl CacheEntry {
    /// The recorded key.
    pub fn key(&self) -> FileKey {
        FileKey {
            len: self.len,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
            dev: self.dev,
        }
    }

    /// When the footer was read.
    pub fn read_at(&self) -> SystemTime {
        let ns = self.read_at_ns.max(0) as u128;
        SystemTime::UNIX_EPOCH
            + Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
    }

    /// True when the entry may stand for a file whose key is `now`.
    pub fn matches(&self, now: &FileKey) -> bool {
        self.key() == *now && !self.key().is_racy(self.read_at())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheDoc {
    n4a_cache_version: u32,
    entries: Vec<CacheEntry>,
}

/// The cache file of the workspace at `root`.
pub fn cache_path(root: &Path) -> PathBuf {
    root.join(CACHE_DIR).join(CACHE_FILE)
}

fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// Loads the cache of `root` as a map from absolute path to entry; `None`
/// when there is no usable cache (see the module docs). Cost: one read of
/// the file and a JSON parse that keeps each summary raw (no tree built).
pub fn load(root: &Path) -> Option<HashMap<PathBuf, CacheEntry>> {
    let path = cache_path(root);
    if std::fs::metadata(&path).ok()?.len() > MAX_CACHE_BYTES {
        return None;
    }
    let bytes = std::fs::read(&path).ok()?;
    let doc: CacheDoc = serde_json::from_slice(&bytes).ok()?;
    (doc.n4a_cache_version == CACHE_VERSION).then(|| {
        doc.entries
            .into_iter()
            .filter(|e| !e.path.split('/').any(|c| c == ".." || c.is_empty()))
            .map(|e| (root.join(&e.path), e))
            .collect()
    })
}

/// Records the footers of `files` now. Waits first (at most
/// [`RACY_WINDOW`]) until every file's mtime is old enough for its entry to
/// be trusted, so entries of files just rewritten are usable. Files that
/// cannot be read or whose summary is not JSON get no entry (readers then
/// read them, and report them, as usual). Cost: one `stat` and one footer
/// read per file.
pub fn record(root: &Path, files: &[DatasetFile]) -> Vec<CacheEntry> {
    let newest = files
        .iter()
        .filter_map(|f| FileKey::of(&f.path).ok())
        .map(|k| k.mtime_ns)
        .max();
    if let Some(newest) = newest {
        let now = now_ns();
        let ready = newest + RACY_WINDOW.as_nanos() as i128 + 1_000_000;
        if ready > now {
            std::thread::sleep(Duration::from_nanos((ready - now) as u64));
        }
    }
    files
        .iter()
        .filter_map(|f| {
            let read_at_ns = now_ns();
            let key = FileKey::of(&f.path).ok()?;
            let raw = footer::read_raw(&f.path, key.len).ok()?;
            let summary = match raw.summary {
                Some(bytes) => {
                    let text = std::str::from_utf8(&bytes).ok()?;
                    let clean = sanitize_non_finite(text).into_owned();
                    Some(RawValue::from_string(clean).ok()?)
                }
                None => None,
            };
            Some(CacheEntry {
                path: relative(root, &f.path)?,
                dataset: f.dataset.clone(),
                len: key.len,
                mtime_ns: key.mtime_ns,
                ctime_ns: key.ctime_ns,
                ino: key.ino,
                dev: key.dev,
                read_at_ns,
                num_rows: raw.num_rows,
                num_row_groups: raw.num_row_groups,
                summary,
            })
        })
        .collect()
}

/// Writes `entries` as the cache of `root` atomically (temporary file,
/// fsync, rename), keeping an entry of the current cache in place of a new
/// one for the same unchanged file, so the file is rewritten only when some
/// entry really changed. Returns whether it was written.
///
/// # Errors
/// [`Error::Io`] naming the cache file or its folder.
pub fn write(root: &Path, mut entries: Vec<CacheEntry>) -> Result<bool> {
    let path = cache_path(root);
    let old = load(root).unwrap_or_default();
    for e in &mut entries {
        if let Some(prev) = old.get(&root.join(&e.path)) {
            if prev.matches(&e.key())
                && prev.num_rows == e.num_rows
                && prev.summary.as_ref().map(|s| s.get()) == e.summary.as_ref().map(|s| s.get())
            {
                e.read_at_ns = prev.read_at_ns;
            }
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let doc = CacheDoc {
        n4a_cache_version: CACHE_VERSION,
        entries,
    };
    let text = serde_json::to_vec(&doc).map_err(|e| Error::io(&path, e.into()))?;
    if std::fs::read(&path).is_ok_and(|cur| cur == text) {
        return Ok(false);
    }
    let dir = root.join(CACHE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let (tmp, mut file) = TempFile::create(&path)?;
    file.write_all(&text)
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.commit(file, &path)?;
    Ok(true)
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}
