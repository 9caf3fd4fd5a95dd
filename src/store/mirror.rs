//! A store workspace answered by the `.meta.parquet` engine: an import kept
//! in a cache folder, refreshed when the store changes.
//!
//! Why a copy: the engine's speed comes from footers that summarise each
//! file and columns it can skip; a SQLite table has neither, and a second
//! engine over SQL would give second answers. The copy costs one import the
//! first time and one `stat` per store file afterwards while nothing
//! changed ([`Mirror::fresh`]); after a change, one SQLite pass per dataset
//! and the rewrite of the changed ones. The store itself is only ever read.
//!
//! The cache is `N4A_CACHE_DIR`, else `$XDG_CACHE_HOME/n4a`, else
//! `$HOME/.cache/n4a`, else the temporary folder's `n4a-cache`; each store
//! gets `stores/<hash of its database path>/`. Two processes mirroring one
//! store at once are safe: each dataset is written under its lock and
//! replaced atomically.

use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};
use crate::files::TempFile;

use super::import::{import_store, ImportOptions, ImportReport};
use super::STORE_FILE;

/// The stamp file in a mirror: the store files' sizes and times when the
/// mirror was last made whole.
const STAMP: &str = ".n4a-store-stamp";

pub use crate::files::cache_root;

/// A store's mirror folder.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// The store workspace.
    pub store: PathBuf,
    /// The `.meta.parquet` copy.
    pub dir: PathBuf,
}

impl Mirror {
    /// The mirror of the store workspace `store` under `root`. Cost: one
    /// `canonicalize`.
    ///
    /// # Errors
    /// [`Error::Io`] when the store's database cannot be resolved.
    pub fn new(store: &Path, root: &Path) -> Result<Mirror> {
        let db = store.join(STORE_FILE);
        let canon = db.canonicalize().map_err(|e| Error::io(&db, e))?;
        let key = xxh3_64(canon.as_os_str().as_encoded_bytes());
        Ok(Mirror {
            store: store.to_path_buf(),
            dir: root.join("stores").join(format!("{key:016x}")),
        })
    }

    /// The store files' stamp (see [`stamp`]).
    fn stamp(&self) -> String {
        stamp(&self.store)
    }

    /// True when the store has not changed since the mirror was last
    /// brought up to date.
    pub fn fresh(&self) -> bool {
        std::fs::read_to_string(self.dir.join(STAMP)).is_ok_and(|s| s == self.stamp())
    }

    /// [`Self::sync`] unless another process or thread is already bringing
    /// this mirror up to date (`None` then, at once): what a background
    /// update runs, so that updates never pile up. The lock is a `flock`
    /// on `.n4a-mirror.lock` in the mirror folder, released on return.
    ///
    /// # Errors
    /// As [`Self::sync`]; [`Error::Io`] making the lock file.
    pub fn sync_if_free(&self, opts: &ImportOptions) -> Result<Option<ImportReport>> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.dir.join(".n4a-mirror.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match lock.try_lock() {
            Ok(()) => self.sync(opts),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Brings the mirror up to date: `None` when it was fresh, else the
    /// import's report. The stamp is written only after an import without
    /// errors, so a failed dataset is retried by the next call.
    ///
    /// # Errors
    /// What [`import_store`] returns; [`Error::Io`] writing the stamp.
    pub fn sync(&self, opts: &ImportOptions) -> Result<Option<ImportReport>> {
        if self.fresh() {
            return Ok(None);
        }
        let before = self.stamp();
        let report = import_store(&self.store, &self.dir, opts)?;
        // A store that changed during the import is imported again next time.
        if report.errors.is_empty() && self.stamp() == before {
            let target = self.dir.join(STAMP);
            let (tmp, mut f) = TempFile::create(&target)?;
            std::io::Write::write_all(&mut f, before.as_bytes())
                .map_err(|e| Error::io(tmp.path(), e))?;
            tmp.commit(f, &target)?;
        }
        Ok(Some(report))
    }
}

/// The store files' sizes and modification times, as one line per file:
/// `store.sqlite`, its `-wal`, and every file of `arrays/`. Equal stamps
/// mean nothing was written in between. Cost: a `stat` per file and a
/// 32-byte read of the `-wal`.
///
/// The `-wal` counts by what it holds, not by its time: its size and its
/// header's checkpoint sequence and salts (SQLite appends frames until a
/// restart, and a restart draws new salts), an empty or absent one as
/// none. A connection that only reads, closing last, deletes the `-wal`
/// and the next one creates it again empty (nirs4all's own readers open
/// the store read-write): with the file's time in the stamp, each such
/// read made the mirror stale and cost a full import (found timing the
/// store bench, whose peers read the store between n4a's calls).
///
/// Files are named relative to the store folder: the mirror is keyed by
/// the canonical path, and a stamp naming the path as given made every
/// call stale that named the store otherwise than the last update had
/// (`./ws` against `/home/me/ws`; a server and a CLI): a full import in
/// the background and an answer in place, each time.
pub(crate) fn stamp(store: &Path) -> String {
    let mut files = vec![PathBuf::from(STORE_FILE)];
    if let Ok(rd) = std::fs::read_dir(store.join("arrays")) {
        let mut a: Vec<PathBuf> = rd
            .flatten()
            .map(|e| Path::new("arrays").join(e.file_name()))
            .collect();
        a.sort();
        files.extend(a);
    }
    let mut out = String::new();
    for f in files {
        let line = match std::fs::metadata(store.join(&f)) {
            Ok(m) => {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{} {} {t}\n", f.display(), m.len())
            }
            Err(_) => format!("{} absent\n", f.display()),
        };
        out.push_str(&line);
        if f.as_os_str() == STORE_FILE {
            out.push_str(&wal_stamp(store));
        }
    }
    out
}

/// The `-wal` line of [`stamp`]: `none` without frames, else its size, its
/// checkpoint sequence and salts (header bytes 12..24).
fn wal_stamp(store: &Path) -> String {
    use std::io::Read;
    let name = format!("{STORE_FILE}-wal");
    let wal = store.join(&name);
    let header = std::fs::File::open(&wal).and_then(|mut f| {
        let len = f.metadata()?.len();
        let mut head = [0u8; 32];
        if len <= 32 {
            return Ok(None);
        }
        f.read_exact(&mut head)?;
        Ok(Some((len, head)))
    });
    match header {
        Ok(Some((len, head))) => {
            let hex: String = head[12..24].iter().map(|b| format!("{b:02x}")).collect();
            format!("{name} {len} {hex}\n")
        }
        Ok(None) => format!("{name} none\n"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("{name} none\n"),
        // Unreadable: never equal to a stamp taken before.
        Err(e) => format!("{name} unreadable {e} {:?}\n", std::time::SystemTime::now()),
    }
}

/// The mirror of the store workspace `store` under [`cache_root`], brought
/// up to date (see [`Mirror::sync`]).
///
/// # Errors
/// As [`Mirror::new`] and [`Mirror::sync`].
pub fn mirror(store: &Path, opts: &ImportOptions) -> Result<(Mirror, Option<ImportReport>)> {
    let m = Mirror::new(store, &cache_root())?;
    let report = m.sync(opts)?;
    Ok((m, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn issue_32_a_mirror_is_fresh_however_the_store_is_named() {
        let root = tempfile::tempdir().unwrap();
        let ws = root.path().join("my store");
        std::fs::create_dir_all(ws.join("arrays")).unwrap();
        std::fs::create_dir_all(root.path().join("elsewhere")).unwrap();
        let c = Connection::open(ws.join(STORE_FILE)).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        std::fs::write(ws.join("arrays").join("d.parquet"), b"x").unwrap();
        // Three names of one store: as given, through `..`, through `.`.
        let other = root.path().join("elsewhere").join("..").join("my store");
        let dotted = ws.join(".");
        let cache = root.path().join("cache");
        let m = Mirror::new(&ws, &cache).unwrap();
        std::fs::create_dir_all(&m.dir).unwrap();
        std::fs::write(m.dir.join(STAMP), m.stamp()).unwrap();
        for name in [&other, &dotted] {
            let n = Mirror::new(name, &cache).unwrap();
            assert_eq!(n.dir, m.dir, "one mirror for one store");
            assert!(n.fresh(), "{} sees the mirror fresh", name.display());
        }
        // A change is still seen, under any name.
        std::fs::write(ws.join("arrays").join("d.parquet"), b"xy").unwrap();
        assert!(!Mirror::new(&other, &cache).unwrap().fresh());
    }

    #[test]
    fn issue_32_a_reader_closing_the_store_leaves_the_stamp_but_a_write_changes_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(STORE_FILE);
        let c = Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        let wal = dir.path().join(format!("{STORE_FILE}-wal"));
        assert!(
            !wal.exists(),
            "the last connection's close removes the -wal"
        );
        let before = stamp(dir.path());
        // A reader, read-write as nirs4all's are: the -wal is created,
        // then removed on close; nothing was written.
        let r = Connection::open(&db).unwrap();
        let n: i64 = r
            .query_row("SELECT count(*) FROM t", [], |x| x.get(0))
            .unwrap();
        assert_eq!(n, 1);
        assert!(wal.exists(), "an open reader holds a -wal");
        assert_eq!(stamp(dir.path()), before, "an empty -wal is no change");
        drop(r);
        assert_eq!(stamp(dir.path()), before, "a reader's close is no change");
        // A write held in the -wal (a second connection keeps it from
        // being checkpointed away) changes the stamp; so does the next.
        let keep = Connection::open(&db).unwrap();
        keep.query_row("SELECT count(*) FROM t", [], |x| x.get::<_, i64>(0))
            .unwrap();
        let w = Connection::open(&db).unwrap();
        w.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let one = stamp(dir.path());
        assert_ne!(one, before, "a write in the -wal");
        w.execute("INSERT INTO t VALUES (3)", []).unwrap();
        let two = stamp(dir.path());
        assert_ne!(two, one, "another write");
        drop((w, keep));
        assert_ne!(
            stamp(dir.path()),
            two,
            "the checkpoint on close writes the database"
        );
    }
}
