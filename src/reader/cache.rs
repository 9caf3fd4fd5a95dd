//! A cache of decoded footers keyed by each file's identity and change
//! markers, so asking again about an unchanged workspace costs one `stat`
//! per file.
//!
//! The key is (size, mtime with nanoseconds, ctime with nanoseconds, inode,
//! device). n4a's writers always replace a file by `rename`, which gives it a
//! new inode, so their changes are always seen. What a key cannot see is an
//! in-place rewrite (same inode: pyarrow's `write_table` over an existing
//! path does this) that keeps the size and lands within the filesystem's
//! timestamp granularity of the cached read (a few milliseconds on Linux's
//! coarse clock, up to seconds on FAT or some network filesystems). The
//! guard, after git's "racy clean" rule: an entry whose file's mtime is less
//! than [`RACY_WINDOW`] before the read is not trusted, and the next ask
//! reads that file again; only files already quiet when read are served
//! from the cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Modifications this recent at read time make an entry untrusted.
pub const RACY_WINDOW: Duration = Duration::from_secs(1);

/// What identifies one version of a file (the default: no file, for
/// entries keyed by something else).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Size in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status-change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Inode number.
    pub ino: u64,
    /// Device number.
    pub dev: u64,
}

impl FileKey {
    /// The key of `path` now: one `stat`.
    ///
    /// # Errors
    /// The `stat` failure.
    pub fn of(path: &Path) -> std::io::Result<FileKey> {
        let m = std::fs::metadata(path)?;
        Ok(Self::from_metadata(&m))
    }

    /// The key of already-read metadata.
    pub fn from_metadata(m: &std::fs::Metadata) -> FileKey {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileKey {
                len: m.len(),
                mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
                ino: m.ino(),
                dev: m.dev(),
            }
        }
        #[cfg(not(unix))]
        {
            let ns = |t: std::io::Result<SystemTime>| {
                t.ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i128)
            };
            FileKey {
                len: m.len(),
                mtime_ns: ns(m.modified()),
                ctime_ns: ns(m.created()),
                ino: 0,
                dev: 0,
            }
        }
    }

    /// True when the file was modified within [`RACY_WINDOW`] of `read_at`.
    pub fn is_racy(&self, read_at: SystemTime) -> bool {
        let read_ns = read_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        self.mtime_ns + RACY_WINDOW.as_nanos() as i128 > read_ns
    }
}

struct Entry<V> {
    key: FileKey,
    trusted: bool,
    value: Arc<V>,
}

/// Values (decoded footers, or their errors) by path and [`FileKey`].
pub struct FooterCache<V> {
    /// Keyed by the path's bytes: hashing a `Path` walks its components.
    map: Mutex<HashMap<std::ffi::OsString, Entry<V>>>,
}

impl<V> Default for FooterCache<V> {
    fn default() -> Self {
        FooterCache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<V> FooterCache<V> {
    /// The cached value for `path` if its key is unchanged and the entry is
    /// trusted (not racy).
    pub fn get(&self, path: &Path, key: &FileKey) -> Option<Arc<V>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(path.as_os_str())
            .filter(|e| e.trusted && e.key == *key)
            .map(|e| e.value.clone())
    }

    /// True when `path` has an entry (trusted or not).
    pub fn contains(&self, path: &Path) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.contains_key(path.as_os_str())
    }

    /// Stores `value` read from `path` with `key`, the key taken before the
    /// read started at `read_at`.
    /// Returns whether the entry is trusted (the file was quiet when read).
    pub fn put(&self, path: &Path, key: FileKey, read_at: SystemTime, value: Arc<V>) -> bool {
        let trusted = !key.is_racy(read_at);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            path.as_os_str().to_os_string(),
            Entry {
                key,
                trusted,
                value,
            },
        );
        trusted
    }

    /// Drops entries of files no longer listed.
    pub fn retain(&self, live: &[PathBuf]) {
        let live: std::collections::HashSet<&std::ffi::OsStr> =
            live.iter().map(|p| p.as_os_str()).collect();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|p, _| live.contains(p.as_os_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racy_entries_are_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let key = FileKey::of(&p).unwrap();
        let cache = FooterCache::<u32>::default();
        cache.put(&p, key, SystemTime::now(), Arc::new(1));
        assert!(cache.get(&p, &key).is_none(), "just written: racy");
        cache.put(
            &p,
            key,
            SystemTime::now() + Duration::from_secs(10),
            Arc::new(2),
        );
        assert_eq!(*cache.get(&p, &key).unwrap(), 2);
        let mut other = key;
        other.len += 1;
        assert!(cache.get(&p, &other).is_none());
    }
}
