//! What identifies one version of a file: the key every footer read is
//! filed under, so a cache (the workspace's) and a rewrite (refresh) can
//! tell whether the file is still the one read.
//!
//! The key is (size, mtime with nanoseconds, ctime with nanoseconds, inode,
//! device). n4a's writers always replace a file by `rename`, which gives it a
//! new inode, so their changes are always seen. What a key cannot see is an
//! in-place rewrite (same inode: pyarrow's `write_table` over an existing
//! path does this) that keeps the size and lands within the filesystem's
//! timestamp granularity of the cached read (a few milliseconds on Linux's
//! coarse clock, up to seconds on FAT or some network filesystems). The
//! guard, after git's "racy clean" rule: an entry whose file's mtime is less
//! than [`RACY_WINDOW`] before the read is not trusted ([`FileKey::is_racy`]).

use std::path::Path;
use std::time::{Duration, SystemTime};

/// Modifications this recent at read time make an entry untrusted.
pub const RACY_WINDOW: Duration = Duration::from_secs(1);

/// The device number of an object's key ([`FileKey::of_object`]).
pub const REMOTE_DEV: u64 = u64::MAX;

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
        if let Some(o) = crate::blob::remote(path) {
            return Ok(Self::of_object(&o));
        }
        let m = std::fs::metadata(path)?;
        Ok(Self::from_metadata(&m))
    }

    /// The key of an open file or object.
    ///
    /// # Errors
    /// A local file's `fstat` failure.
    pub fn of_blob(blob: &crate::blob::Blob) -> std::io::Result<FileKey> {
        match blob {
            crate::blob::Blob::Local(f) => Ok(Self::from_metadata(&f.metadata()?)),
            crate::blob::Blob::Remote(_) => Ok(Self::of_object(
                blob.object().expect("a remote blob's object"),
            )),
        }
    }

    /// The key of an object of a bucket: its size, last-modified time and
    /// version (the ETag's hash, in place of the inode), on the device
    /// `REMOTE_DEV`. An object is never rewritten in place: a new
    /// version has a new ETag.
    pub fn of_object(o: &crate::blob::Object) -> FileKey {
        FileKey {
            len: o.len,
            mtime_ns: o.modified_ns,
            ctime_ns: 0,
            ino: o.version,
            dev: REMOTE_DEV,
        }
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
        if self.dev == REMOTE_DEV {
            return false;
        }
        let read_ns = read_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        self.mtime_ns + RACY_WINDOW.as_nanos() as i128 > read_ns
    }
}
