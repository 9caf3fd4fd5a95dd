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

/// The cache root (see the module documentation).
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
/// mean nothing was written in between. Cost: a `stat` per file.
pub(crate) fn stamp(store: &Path) -> String {
    let mut files = vec![
        store.join(STORE_FILE),
        store.join(format!("{STORE_FILE}-wal")),
    ];
    if let Ok(rd) = std::fs::read_dir(store.join("arrays")) {
        let mut a: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        a.sort();
        files.extend(a);
    }
    let mut out = String::new();
    for f in files {
        let line = match std::fs::metadata(&f) {
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
    }
    out
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
