//! The workspace-level summary cache, `<workspace>/.n4a/summary-cache.json`:
//! the merged workspace summary together with the change markers of every
//! file it was made from, so a cold reader (a new process) answers a
//! workspace summary with one read and one `stat` per file instead of one
//! footer read and decode per file.
//!
//! `n4a refresh --write-cache` writes it ([`write`]); [`super::Workspace`]
//! uses it when present. It is only ever a hint: it is used only when the
//! workspace's current files are exactly those recorded and each file's
//! [`FileKey`] (size, mtime, ctime, inode, device) equals the recorded one,
//! every entry having been read at least [`RACY_WINDOW`] after its file's
//! mtime (git's racy-clean rule: see [`super::cache`]). Otherwise the
//! reader reads footers as usual. A cache that is missing, unreadable, of
//! another version or larger than [`MAX_CACHE_BYTES`] is ignored, never an
//! error. Copying a workspace elsewhere changes inodes, so the copy's reader
//! reads footers until the cache is rewritten.
//!
//! Why the merged summary rather than per-file summaries: decoding a file's
//! summary JSON, not reading it, is what a cold summary costs (see the
//! `footer_read` bench); per-file entries in one JSON file measured slower
//! than the footers themselves. The merged summary keeps each file's
//! summary raw (no mergeable state), which parses without building a tree.
//!
//! Format (JSON): `{"n4a_cache_version": 2, "files": [{path (relative,
//! `/`-separated), len, mtime_ns, ctime_ns, ino, dev, read_at_ns}],
//! "summary": <the workspace summary, as `n4a summary --format json`>}`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::cache::{FileKey, RACY_WINDOW};
use super::merge::WorkspaceSummary;
use super::workspace::Workspace;
use crate::error::{Error, Result};
use crate::writer::commit::TempFile;

/// Folder of n4a's workspace-level files (hidden: listings skip it).
pub const CACHE_DIR: &str = ".n4a";
/// The cache file's name inside [`CACHE_DIR`].
pub const CACHE_FILE: &str = "summary-cache.json";
/// The format version this build reads and writes.
pub const CACHE_VERSION: u32 = 2;
/// A cache file larger than this is ignored.
pub const MAX_CACHE_BYTES: u64 = 1 << 30;

/// One file's recorded change markers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedFile {
    /// Path relative to the workspace, `/`-separated.
    pub path: String,
    /// Size when recorded.
    pub len: u64,
    /// mtime (ns) when recorded.
    pub mtime_ns: i128,
    /// ctime (ns) when recorded.
    pub ctime_ns: i128,
    /// Inode when recorded.
    pub ino: u64,
    /// Device when recorded.
    pub dev: u64,
    /// When its footer was read (ns since the epoch), for the racy guard.
    pub read_at_ns: i128,
}

impl CachedFile {
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

    fn trusted(&self) -> bool {
        let ns = self.read_at_ns.max(0) as u128;
        let read_at = SystemTime::UNIX_EPOCH
            + Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32);
        !self.key().is_racy(read_at)
    }
}

#[derive(Serialize, Deserialize)]
struct Doc<S> {
    n4a_cache_version: u32,
    files: Vec<CachedFile>,
    summary: S,
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

/// A loaded cache: the files (absolute paths, sorted) with their recorded
/// keys, and the summary made from them.
pub type Loaded = (Vec<(PathBuf, FileKey)>, WorkspaceSummary);

/// Loads the cache of `root`; `None` when there is none usable: absent,
/// unreadable, another version, or an entry that was racy when recorded.
/// Cost: one read and one JSON parse (file summaries kept raw).
pub fn load(root: &Path) -> Option<Loaded> {
    let path = cache_path(root);
    if std::fs::metadata(&path).ok()?.len() > MAX_CACHE_BYTES {
        return None;
    }
    let bytes = std::fs::read(&path).ok()?;
    let doc: Doc<WorkspaceSummary> = serde_json::from_slice(&bytes).ok()?;
    if doc.n4a_cache_version != CACHE_VERSION || !doc.files.iter().all(CachedFile::trusted) {
        return None;
    }
    let mut files: Vec<(PathBuf, FileKey)> = doc
        .files
        .iter()
        .filter(|f| !f.path.split('/').any(|c| c == ".." || c.is_empty()))
        .map(|f| (root.join(&f.path), f.key()))
        .collect();
    if files.len() != doc.files.len() {
        return None;
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Some((files, doc.summary))
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Merges the workspace at `root` from its footers and records the result
/// with every file's key as its cache, atomically (temporary file, fsync,
/// rename). Waits first (at most [`RACY_WINDOW`]) until every file's mtime
/// is old enough for its entry to be trusted. Leaves the current cache in
/// place when it already records exactly these files with these keys, so a
/// second call changes nothing. Returns whether it wrote; writes nothing
/// when a sub-folder could not be listed or a file changed while it was
/// read (the next call tries again).
///
/// # Errors
/// [`Error::Io`] naming the workspace, the cache file or its folder.
pub fn write(root: &Path, recursive: bool) -> Result<bool> {
    let probe = Workspace::open(root)?.with_recursive(recursive);
    let (files, _) = probe.list()?;
    let newest = files
        .iter()
        .filter_map(|f| FileKey::of(&f.path).ok())
        .map(|k| k.mtime_ns)
        .max();
    if let Some(newest) = newest {
        let ready = newest + RACY_WINDOW.as_nanos() as i128 + 1_000_000;
        let now = now_ns();
        if ready > now {
            std::thread::sleep(Duration::from_nanos((ready - now) as u64));
        }
    }
    let ws = Workspace::open(root)?
        .with_recursive(recursive)
        .with_cache_file(false);
    let (summary, keys) = ws.summary_with_keys()?;
    let Some(keys) = keys else {
        return Ok(false);
    };
    let files: Option<Vec<CachedFile>> = keys
        .iter()
        .map(|(p, k, read_at)| {
            Some(CachedFile {
                path: relative(root, p)?,
                len: k.len,
                mtime_ns: k.mtime_ns,
                ctime_ns: k.ctime_ns,
                ino: k.ino,
                dev: k.dev,
                read_at_ns: read_at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i128),
            })
        })
        .collect();
    let Some(files) = files else {
        return Ok(false);
    };
    if let Some((cur, _)) = load(root) {
        let new: Vec<(PathBuf, FileKey)> = keys.iter().map(|(p, k, _)| (p.clone(), *k)).collect();
        if cur == new {
            return Ok(false);
        }
    }
    let path = cache_path(root);
    let doc = Doc {
        n4a_cache_version: CACHE_VERSION,
        files,
        summary: summary.as_ref(),
    };
    let text = serde_json::to_vec(&doc).map_err(|e| Error::io(&path, e.into()))?;
    let dir = root.join(CACHE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let (tmp, mut file) = TempFile::create(&path)?;
    file.write_all(&text)
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.commit(file, &path)?;
    Ok(true)
}
