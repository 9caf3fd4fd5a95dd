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
//! What a new kind implements here: its folder and its sync (a store read
//! in place, without a mirror, and object-store URLs, where listing and
//! byte-range reads also move behind this interface).

use std::path::{Path, PathBuf};

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
    /// A store and its mirror.
    #[cfg(feature = "store")]
    Store {
        /// The store workspace and its mirror folder.
        mirror: crate::store::Mirror,
        /// How the mirror's files are written (directions of metrics
        /// outside the built-in table).
        import: crate::store::ImportOptions,
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
        #[cfg(feature = "store")]
        if crate::store::is_store(path) {
            let mirror = crate::store::Mirror::new(path, &crate::store::cache_root())?;
            return Ok(Source::Store {
                mirror,
                import: crate::store::ImportOptions::default(),
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
            #[cfg(feature = "store")]
            Source::Store { mirror, .. } => {
                *mirror = crate::store::Mirror::new(&mirror.store, root)?;
                Ok(())
            }
        }
    }

    /// The kind of workspace.
    pub(crate) fn kind(&self) -> SourceKind {
        match self {
            Source::Folder(_) => SourceKind::Folder,
            #[cfg(feature = "store")]
            Source::Store { .. } => SourceKind::Store,
        }
    }

    /// What the user opened: the folder, or the store workspace.
    pub(crate) fn origin(&self) -> &Path {
        match self {
            Source::Folder(p) => p,
            #[cfg(feature = "store")]
            Source::Store { mirror, .. } => &mirror.store,
        }
    }

    /// The path a failed sync's errors name: the store's database.
    pub(crate) fn error_path(&self) -> PathBuf {
        match self {
            Source::Folder(p) => p.clone(),
            #[cfg(feature = "store")]
            Source::Store { mirror, .. } => mirror.store.join(crate::store::STORE_FILE),
        }
    }

    /// The folder the engine reads: the folder itself, or the mirror.
    pub(crate) fn dir(&self) -> &Path {
        match self {
            Source::Folder(p) => p,
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
            #[cfg(feature = "store")]
            Source::Store { import, .. } => {
                import.writer.summary.directions = directions.clone();
            }
        }
    }

    /// Brings [`Self::dir`] up to date with the origin. Cost: nothing for a
    /// folder; for a store, one `stat` per store file while it is
    /// unchanged, else one SQLite pass per dataset and the rewrite of the
    /// changed ones (see [`crate::store::Mirror::sync`]).
    ///
    /// # Errors
    /// For a store that cannot be read at all ([`Error::Sqlite`], a
    /// schema version this build does not read); a dataset that fails is
    /// in [`Synced::errors`].
    pub(crate) fn sync(&self) -> Result<Synced> {
        match self {
            Source::Folder(_) => Ok(Synced::default()),
            #[cfg(feature = "store")]
            Source::Store { mirror, import } => {
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
