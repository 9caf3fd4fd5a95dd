//! Where a workspace's prediction files come from: the one place a new kind
//! of workspace plugs in.
//!
//! Today two kinds: a folder of `.meta.parquet` files, read where it is,
//! and (cargo feature `store`) a nirs4all `store.sqlite` workspace, read
//! through its mirror ([`crate::store::Mirror`]: a `.meta.parquet` copy in
//! a cache folder, brought up to date when the store changes). Everything
//! above ([`super::Workspace`]'s listing, footer cache and merge, and every
//! query) sees only the folder the engine reads (`Source::dir`), and asks
//! `Source::sync` to bring that folder up to date first.
//!
//! A store whose mirror is not up to date is answered in place
//! ([`crate::store::inplace::InPlace`], a snapshot of its rows read from
//! SQLite as queries ask) while the mirror is brought up to date beside
//! the answers ([`MirrorUpdate`]): a first ask never waits for an import,
//! and once the mirror is fresh the asks after it read its footers.
//!
//! What a new kind implements here: its folder and its sync (object-store
//! URLs, where listing and byte-range reads also move behind this
//! interface).

use std::path::{Path, PathBuf};
#[cfg(feature = "store")]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(any(feature = "store", feature = "object-store"))]
use std::sync::Arc;
#[cfg(feature = "store")]
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::metric::Directions;

/// The kind of a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceKind {
    /// A folder of `.meta.parquet` files.
    Folder,
    /// A nirs4all `store.sqlite` workspace, read through its mirror.
    Store,
    /// A bucket (`s3://bucket/prefix`), read by ranged requests.
    Bucket,
}

/// How a store's mirror is brought up to date when an ask finds it stale
/// (the ask itself is answered in place meanwhile, except `Foreground`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MirrorUpdate {
    /// In a thread of this process (a server, a notebook): the default.
    #[default]
    Background,
    /// In a detached process running this program with the arguments
    /// `__mirror-store <store> <mirror root>` (the command line, whose own
    /// process ends with its answer; as `git gc --auto` does).
    Detached(PathBuf),
    /// Never: every ask is answered in place and no mirror is written (a
    /// read-only cache, a one-off look; `N4A_STORE_MIRROR=off` on the
    /// command line).
    Never,
    /// Before the ask is answered, which then reads the mirror: the import
    /// the first ask made before answers in place existed (tests, and the
    /// detached process itself).
    Foreground,
}

/// What bringing a workspace's folder up to date did.
#[derive(Debug, Default)]
pub struct Synced {
    /// False when nothing had changed (for a store: one `stat` per store
    /// file), true when the folder was brought up to date.
    pub changed: bool,
    /// Notes about what was brought in (a store's tombstones, datasets
    /// whose rows were read leniently).
    pub notes: Vec<String>,
    /// Datasets that could not be brought in, each with its error: the
    /// workspace lists them among its errors and answers the others.
    pub errors: Vec<(String, Error)>,
}

/// A workspace's origin (see the module documentation).
pub(crate) enum Source {
    /// A folder read where it is: nothing to sync.
    Folder(PathBuf),
    /// A bucket workspace (cargo feature `object-store`): its objects are
    /// listed and read by URL through [`crate::blob`].
    #[cfg(feature = "object-store")]
    Bucket(Arc<crate::bucket::Bucket>),
    /// A store and its mirror.
    #[cfg(feature = "store")]
    Store {
        /// The store workspace and its mirror folder.
        mirror: crate::store::Mirror,
        /// How the mirror's files are written (directions of metrics
        /// outside the built-in table).
        import: crate::store::ImportOptions,
        /// The snapshot answered in place while the mirror is stale.
        inplace: Mutex<Option<Arc<crate::store::inplace::InPlace>>>,
        /// How the mirror is brought up to date.
        update: MirrorUpdate,
        /// Set while an update started here runs.
        busy: Arc<AtomicBool>,
    },
}

impl Source {
    /// The source of the workspace at `path`: a store when it holds a
    /// `store.sqlite` (and the `store` feature is on), else a folder.
    /// Cost: two `stat`s and, for a store, a `canonicalize`; nothing is
    /// read or imported yet.
    ///
    /// # Errors
    /// [`Error::Io`] when `path` is not a readable folder.
    pub(crate) fn open(path: &Path) -> Result<Source> {
        #[cfg(feature = "object-store")]
        if crate::bucket::is_url(path) {
            return Ok(Source::Bucket(Arc::new(crate::bucket::Bucket::open(path)?)));
        }
        if let Some(local) = path.to_str().and_then(|s| s.strip_prefix("file://")) {
            return Source::open(Path::new(local));
        }
        #[cfg(feature = "store")]
        if crate::store::is_store(path) {
            let mirror = crate::store::Mirror::new(path, &crate::store::cache_root())?;
            return Ok(Source::Store {
                mirror,
                import: crate::store::ImportOptions::default(),
                inplace: Mutex::new(None),
                update: MirrorUpdate::default(),
                busy: Arc::new(AtomicBool::new(false)),
            });
        }
        let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !m.is_dir() {
            return Err(Error::io(path, std::io::Error::other("not a directory")));
        }
        Ok(Source::Folder(path.to_path_buf()))
    }

    /// Keeps a store's mirror under `root` instead of
    /// [`crate::store::cache_root`] (a folder has no mirror).
    ///
    /// # Errors
    /// [`Error::Io`] when the store's database cannot be resolved.
    #[cfg_attr(not(feature = "store"), allow(unused_variables))]
    pub(crate) fn set_mirror_root(&mut self, root: &Path) -> Result<()> {
        match self {
            Source::Folder(_) => Ok(()),
            #[cfg(feature = "object-store")]
            Source::Bucket(_) => Ok(()),
            #[cfg(feature = "store")]
            Source::Store { mirror, .. } => {
                *mirror = crate::store::Mirror::new(&mirror.store, root)?;
                Ok(())
            }
        }
    }

    /// Sets how a store's mirror is brought up to date (a folder has none).
    #[cfg_attr(not(feature = "store"), allow(unused_variables))]
    pub(crate) fn set_update(&mut self, how: MirrorUpdate) {
        #[cfg(feature = "store")]
        if let Source::Store { update, .. } = self {
            *update = how;
        }
    }

    /// The snapshot of a store answered in place, while its mirror is
    /// stale (since the last sync).
    #[cfg(feature = "store")]
    pub(crate) fn inplace(&self) -> Option<Arc<crate::store::inplace::InPlace>> {
        match self {
            Source::Store { inplace, .. } => {
                inplace.lock().unwrap_or_else(|e| e.into_inner()).clone()
            }
            Source::Folder(_) => None,
            #[cfg(feature = "object-store")]
            Source::Bucket(_) => None,
        }
    }

    /// A new snapshot in place of `stale` (unless another ask already
    /// replaced it): the store changed between `stale`'s passes.
    ///
    /// # Errors
    /// As [`crate::store::inplace::InPlace::open`].
    #[cfg(feature = "store")]
    pub(crate) fn reopen_inplace(
        &self,
        stale: &Arc<crate::store::inplace::InPlace>,
    ) -> Result<Arc<crate::store::inplace::InPlace>> {
        let Source::Store {
            mirror, inplace, ..
        } = self
        else {
            return Err(Error::InvalidOption(
                "a folder is never read in place".into(),
            ));
        };
        let mut slot = inplace.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(now) = slot.as_ref().filter(|now| !Arc::ptr_eq(now, stale)) {
            return Ok(now.clone());
        }
        let fresh = Arc::new(crate::store::inplace::InPlace::open(&mirror.store)?);
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// The summary options the store's rows are summarised with.
    #[cfg(feature = "store")]
    pub(crate) fn summary_options(&self) -> crate::summary::SummaryOptions {
        match self {
            Source::Store { import, .. } => import.writer.summary.clone(),
            Source::Folder(_) => crate::summary::SummaryOptions::default(),
            #[cfg(feature = "object-store")]
            Source::Bucket(_) => crate::summary::SummaryOptions::default(),
        }
    }

    /// The bucket of a bucket workspace.
    #[cfg(feature = "object-store")]
    pub(crate) fn bucket(&self) -> Option<&Arc<crate::bucket::Bucket>> {
        match self {
            Source::Bucket(b) => Some(b),
            _ => None,
        }
    }

    /// The kind of workspace.
    pub(crate) fn kind(&self) -> SourceKind {
        match self {
            Source::Folder(_) => SourceKind::Folder,
            #[cfg(feature = "object-store")]
            Source::Bucket(_) => SourceKind::Bucket,
            #[cfg(feature = "store")]
            Source::Store { .. } => SourceKind::Store,
        }
    }

    /// What the user opened: the folder, or the store workspace.
    pub(crate) fn origin(&self) -> &Path {
        match self {
            Source::Folder(p) => p,
            #[cfg(feature = "object-store")]
            Source::Bucket(b) => b.url(),
            #[cfg(feature = "store")]
            Source::Store { mirror, .. } => &mirror.store,
        }
    }

    /// The path a failed sync's errors name: the store's database.
    pub(crate) fn error_path(&self) -> PathBuf {
        match self {
            Source::Folder(p) => p.clone(),
            #[cfg(feature = "object-store")]
            Source::Bucket(b) => b.url().to_path_buf(),
            #[cfg(feature = "store")]
            Source::Store { mirror, .. } => mirror.store.join(crate::store::STORE_FILE),
        }
    }

    /// The folder the engine reads: the folder itself, or the mirror.
    pub(crate) fn dir(&self) -> &Path {
        match self {
            Source::Folder(p) => p,
            #[cfg(feature = "object-store")]
            Source::Bucket(b) => b.url(),
            #[cfg(feature = "store")]
            Source::Store { mirror, .. } => &mirror.dir,
        }
    }

    /// Sets the directions the mirror's files are written with (a folder
    /// has none to set: its files carry theirs).
    #[cfg_attr(not(feature = "store"), allow(unused_variables))]
    pub(crate) fn set_directions(&mut self, directions: &Directions) {
        match self {
            Source::Folder(_) => {}
            #[cfg(feature = "object-store")]
            Source::Bucket(_) => {}
            #[cfg(feature = "store")]
            Source::Store { import, .. } => {
                import.writer.summary.directions = directions.clone();
            }
        }
    }

    /// Brings [`Self::dir`] up to date with the origin. Cost: nothing for a
    /// folder; for a store, one `stat` per store file while its mirror is
    /// fresh; else (`Foreground`) one SQLite pass per dataset and the
    /// rewrite of the changed ones (see [`crate::store::Mirror::sync`]), or
    /// (otherwise) the store opened for answers in place (two statements)
    /// and the mirror's update started beside them.
    ///
    /// # Errors
    /// For a store that cannot be read at all ([`Error::Sqlite`], a
    /// schema version this build does not read); a dataset that fails is
    /// in [`Synced::errors`].
    pub(crate) fn sync(&self) -> Result<Synced> {
        match self {
            Source::Folder(_) => Ok(Synced::default()),
            #[cfg(feature = "object-store")]
            Source::Bucket(_) => Ok(Synced::default()),
            #[cfg(feature = "store")]
            Source::Store {
                mirror,
                import,
                inplace,
                update,
                busy,
            } => {
                if *update != MirrorUpdate::Foreground {
                    let was = inplace.lock().unwrap_or_else(|e| e.into_inner()).is_some();
                    if mirror.fresh() {
                        *inplace.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        return Ok(Synced {
                            changed: was,
                            ..Synced::default()
                        });
                    }
                    let now = crate::store::mirror::stamp(&mirror.store);
                    let mut slot = inplace.lock().unwrap_or_else(|e| e.into_inner());
                    let stale = slot.as_ref().is_none_or(|t| t.stamp() != now);
                    if stale {
                        *slot = Some(Arc::new(crate::store::inplace::InPlace::open(
                            &mirror.store,
                        )?));
                    }
                    drop(slot);
                    start_update(mirror, import, update, busy);
                    return Ok(Synced {
                        changed: stale,
                        ..Synced::default()
                    });
                }
                let Some(report) = mirror.sync(import)? else {
                    return Ok(Synced::default());
                };
                let mut notes = report.notes;
                for d in &report.datasets {
                    notes.extend(d.notes.iter().map(|n| format!("{}: {n}", d.dataset)));
                }
                Ok(Synced {
                    changed: true,
                    notes,
                    errors: report.errors,
                })
            }
        }
    }
}

/// Starts bringing `mirror` up to date as `how` says, unless an update
/// started here still runs.
#[cfg(feature = "store")]
fn start_update(
    mirror: &crate::store::Mirror,
    import: &crate::store::ImportOptions,
    how: &MirrorUpdate,
    busy: &Arc<AtomicBool>,
) {
    if busy.swap(true, Ordering::AcqRel) {
        return;
    }
    match how {
        MirrorUpdate::Foreground | MirrorUpdate::Never => busy.store(false, Ordering::Release),
        MirrorUpdate::Background => {
            let (mirror, import, done) = (mirror.clone(), import.clone(), busy.clone());
            let spawned = std::thread::Builder::new()
                .name("n4a-mirror".into())
                .spawn(move || {
                    // A dataset that fails is answered in place (and its
                    // error listed) until a later update brings it in.
                    let _ = mirror.sync_if_free(&import);
                    done.store(false, Ordering::Release);
                });
            if spawned.is_err() {
                busy.store(false, Ordering::Release);
            }
        }
        MirrorUpdate::Detached(exe) => {
            use std::os::unix::process::CommandExt;
            let root = mirror
                .dir
                .parent()
                .and_then(Path::parent)
                .unwrap_or(&mirror.dir);
            // Its own process group: a Ctrl-C meant for the command does
            // not stop the update half-way (each dataset is replaced
            // atomically anyway). `busy` stays set: one per process.
            let _ = std::process::Command::new(exe)
                .arg("__mirror-store")
                .arg(&mirror.store)
                .arg(root)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn();
        }
    }
}
