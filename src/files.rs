//! The filesystem pieces every writer of a workspace shares: where a
//! dataset's two files are, atomic replacement through temporary files, and
//! the per-dataset lock. Below `reader` and `writer` in the data flow
//! (the writer, ingest and refresh all write through it).
//!
//! Every write goes to a temporary file in the same folder (so the final
//! `rename` stays on one filesystem and is atomic), is fsynced, renamed over
//! the target and the folder fsynced. A crash or a dropped writer at any
//! point leaves the old file byte-identical: until the rename nothing touched
//! it. Writers of one dataset serialise through an exclusive `flock` on a
//! hidden lock file, which the kernel releases if the process dies.
//!
//! Also where n4a keeps what it may rebuild ([`cache_root`]): a store's
//! mirror, the footer cache on disk.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Marker inside temporary file names; `n4a` removes stale ones it finds
/// under the lock (a crashed writer's leftovers).
pub(crate) const TMP_MARKER: &str = ".n4a-tmp-";

/// The folder n4a keeps caches in (a store's mirror, footers read
/// before): `N4A_CACHE_DIR`, else `$XDG_CACHE_HOME/n4a`, else
/// `$HOME/.cache/n4a`, else the temporary folder's `n4a-cache`. Nothing in
/// it is the only copy of anything: deleting it costs a rebuild.
pub fn cache_root() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("N4A_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("n4a")))
        .or_else(|| env("HOME").map(|p| p.join(".cache").join("n4a")))
        .unwrap_or_else(|| std::env::temp_dir().join("n4a-cache"))
}

/// A folder of its own under the cache folder's `staging`, removed (with
/// what is in it) when dropped: where a write to a bucket stages the files
/// it puts back.
#[derive(Debug)]
#[cfg_attr(not(feature = "object-store"), allow(dead_code))]
pub(crate) struct Staging(PathBuf);

impl Staging {
    /// A new, empty staging folder named after `what`, this process and
    /// the time.
    ///
    /// # Errors
    /// [`Error::Io`] naming the folder when it cannot be made.
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    pub(crate) fn new(what: &str) -> Result<Staging> {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = cache_root()
            .join("staging")
            .join(format!("{what}-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Staging(dir))
    }

    /// The folder.
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The two files of one dataset in a workspace folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetPaths {
    /// `<dataset>.meta.parquet`: the prediction rows and the summary.
    pub meta: PathBuf,
    /// `<dataset>.arrays.parquet`: the arrays, by content hash.
    pub arrays: PathBuf,
}

/// The two file paths of `dataset` in `dir`. Cost: two allocations; the
/// name is not validated here ([`crate::schema::validate_dataset_name`]).
pub fn dataset_paths(dir: &Path, dataset: &str) -> DatasetPaths {
    DatasetPaths {
        meta: dir.join(format!("{dataset}{}", crate::schema::META_SUFFIX)),
        arrays: dir.join(format!("{dataset}{}", crate::schema::ARRAYS_SUFFIX)),
    }
}

/// An exclusive lock on one dataset of a workspace, held until dropped.
#[derive(Debug)]
pub struct DatasetLock {
    file: File,
    path: PathBuf,
}

impl DatasetLock {
    /// The lock file of `dataset` in `dir`: `.<dataset>.n4a.lock`.
    pub fn path_for(dir: &Path, dataset: &str) -> PathBuf {
        dir.join(format!(".{dataset}.n4a.lock"))
    }

    /// Blocks until the dataset's lock is ours. Cost: one open and one
    /// `flock`; waits as long as another writer holds it.
    ///
    /// # Errors
    /// [`Error::Io`] naming the lock file.
    pub fn acquire(dir: &Path, dataset: &str) -> Result<Self> {
        let path = Self::path_for(dir, dataset);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(DatasetLock { file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DatasetLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// A temporary file beside its target, removed on drop unless committed.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl TempFile {
    /// Creates `.<target name>.n4a-tmp-<pid>-<nanos>` beside `target`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the temporary file.
    pub fn create(target: &Path) -> Result<(Self, File)> {
        let dir = target.parent().unwrap_or(Path::new("."));
        let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("n4a");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = dir.join(format!(".{name}{TMP_MARKER}{}-{nanos}", std::process::id()));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .read(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok((
            TempFile {
                path,
                committed: false,
            },
            file,
        ))
    }

    /// The temporary path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs `file` (the temporary's handle), renames it over `target` and
    /// fsyncs the folder so the rename itself survives a power cut.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file that failed; the target is then untouched.
    pub fn commit(mut self, file: File, target: &Path) -> Result<()> {
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        drop(file);
        std::fs::rename(&self.path, target).map_err(|e| Error::io(target, e))?;
        self.committed = true;
        let dir = target.parent().unwrap_or(Path::new("."));
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Renames `file` over `target` without fsync: for a cache, whose
    /// reader checks what it reads (a hash) and rebuilds what does not
    /// check, an fsync would buy nothing but its cost. Still atomic for
    /// readers: they see the old file or the new one.
    ///
    /// # Errors
    /// [`Error::Io`] naming the target; it is then untouched.
    pub fn commit_unsynced(mut self, file: File, target: &Path) -> Result<()> {
        drop(file);
        std::fs::rename(&self.path, target).map_err(|e| Error::io(target, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes temporary files a crashed writer left for `dataset` in `dir`.
/// Call only while holding the dataset's [`DatasetLock`]: then no live
/// writer can own one. Returns how many were removed.
pub(crate) fn remove_stale_temps(dir: &Path, dataset: &str) -> usize {
    let prefixes = [
        format!(".{dataset}{}{TMP_MARKER}", crate::schema::META_SUFFIX),
        format!(".{dataset}{}{TMP_MARKER}", crate::schema::ARRAYS_SUFFIX),
    ];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            prefixes.iter().any(|p| n.starts_with(p.as_str()))
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Temporary files left in `dir` by n4a writers, by dataset, from one
/// listing of the folder (a batch job's alternative to one
/// [`remove_stale_temps`] listing per dataset). Remove a dataset's only
/// while holding its [`DatasetLock`]: a writer alive at the listing has
/// then finished, and what remains is stale.
pub(crate) fn temps_by_dataset(dir: &Path) -> std::collections::HashMap<String, Vec<PathBuf>> {
    let mut out: std::collections::HashMap<String, Vec<PathBuf>> = Default::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((target, _)) = name
            .strip_prefix('.')
            .and_then(|n| n.split_once(TMP_MARKER))
        else {
            continue;
        };
        let dataset = target
            .strip_suffix(crate::schema::META_SUFFIX)
            .or_else(|| target.strip_suffix(crate::schema::ARRAYS_SUFFIX));
        if let Some(ds) = dataset {
            out.entry(ds.to_string()).or_default().push(e.path());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_temp_file_is_removed_and_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.meta.parquet");
        std::fs::write(&target, b"old").unwrap();
        let (tmp, _f) = TempFile::create(&target).unwrap();
        let p = tmp.path().to_path_buf();
        assert!(p.exists());
        drop(tmp);
        assert!(!p.exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
    }

    #[test]
    fn stale_temps_of_this_dataset_only_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".a.meta.parquet.n4a-tmp-1-2"), b"x").unwrap();
        std::fs::write(dir.path().join(".ab.meta.parquet.n4a-tmp-1-2"), b"x").unwrap();
        std::fs::write(dir.path().join(".ab.arrays.parquet.n4a-tmp-3-4"), b"x").unwrap();
        std::fs::write(dir.path().join("ab.meta.parquet"), b"x").unwrap();
        let all = temps_by_dataset(dir.path());
        assert_eq!(all.len(), 2);
        assert_eq!(all["ab"].len(), 2);
        assert_eq!(remove_stale_temps(dir.path(), "a"), 1);
        assert!(dir.path().join(".ab.meta.parquet.n4a-tmp-1-2").exists());
    }
}
