//! nirs4all's current workspace layout, `store.sqlite` + `arrays/`, read
//! without ever writing to it, and bridged to `.meta.parquet` workspaces.
//!
//! The contract is nirs4all 1.4.10's own code; `docs/STORE.md` maps the two
//! layouts column by column. [`Store::open`] opens the database the way
//! nirs4all's `WorkspaceStore.open_readonly` does: a read-only connection,
//! `PRAGMA query_only`, a busy timeout, and one read transaction held for
//! the store's life, so every dataset is read from one committed snapshot
//! (WAL included) while nirs4all keeps writing. The schema version is
//! checked first and nothing is migrated.
//!
//! Above the writer and the reader in the data flow: [`import`] reads rows
//! here and writes them through [`crate::writer::PredictionWriter`]; [`mod@mirror`]
//! keeps such a copy in a cache folder so that every command (summary,
//! query, top, stats, serve) answers a store with the `.meta.parquet`
//! engine, the same answers and direction rules by construction.

pub(crate) mod arrays;
pub mod export;
pub mod import;
pub mod inplace;
pub mod mirror;
pub(crate) mod rows;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::schema::Prediction;

pub use export::{export_store, DatasetExport, ExportOptions, ExportReport};
pub use import::{import_store, DatasetImport, ImportOptions, ImportReport, Outcome};
pub use mirror::{cache_root, mirror, Mirror};
pub use rows::Fingerprint;

/// The database file of a store workspace.
pub const STORE_FILE: &str = "store.sqlite";

/// The nirs4all schema version this build reads (`PRAGMA user_version`,
/// nirs4all's `SCHEMA_VERSION` from 0.8.4 to 1.4.10).
pub const SCHEMA_VERSION: i64 = 5;

/// How long a read waits for a writer's lock before it fails with
/// "database is locked" (nirs4all's own `busy_timeout`).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// True when `dir` is a store workspace: it holds a `store.sqlite` file.
/// Cost: one `stat`.
pub fn is_store(dir: &Path) -> bool {
    dir.join(STORE_FILE).is_file()
}

/// One dataset of a store: its name and number of predictions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDataset {
    /// `predictions.dataset_name`.
    pub name: String,
    /// Its rows in `predictions`.
    pub predictions: u64,
}

/// A store workspace opened read-only, on one snapshot.
///
/// ```no_run
/// let store = n4a::store::Store::open(std::path::Path::new("workspace"))?;
/// for d in store.datasets()? {
///     println!("{}: {} predictions", d.name, d.predictions);
/// }
/// # Ok::<(), n4a::Error>(())
/// ```
pub struct Store {
    dir: PathBuf,
    db: PathBuf,
    conn: Connection,
}

impl Store {
    /// Opens `dir/store.sqlite` read-only and checks its schema version.
    /// Cost: an open and two statements; the snapshot is taken by the
    /// first read and held until the store is dropped.
    ///
    /// # Errors
    /// [`Error::Io`] when there is no `store.sqlite` file;
    /// [`Error::Sqlite`] when it is not a SQLite database or stays locked
    /// past [`BUSY_TIMEOUT`]; [`Error::UnsupportedStoreVersion`] for another
    /// schema version.
    pub fn open(dir: &Path) -> Result<Store> {
        let db = dir.join(STORE_FILE);
        let meta = std::fs::metadata(&db).map_err(|e| Error::io(&db, e))?;
        if !meta.is_file() {
            return Err(Error::io(
                &db,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file"),
            ));
        }
        let sql = |e| Error::sqlite(&db, e);
        let conn = Connection::open_with_flags(
            &db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        conn.execute_batch("PRAGMA query_only = ON; BEGIN")
            .map_err(sql)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        if found != SCHEMA_VERSION {
            return Err(Error::UnsupportedStoreVersion {
                path: db,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            db,
            conn,
        })
    }

    /// The workspace folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database file.
    pub fn db_path(&self) -> &Path {
        &self.db
    }

    /// The datasets with predictions, by name. Cost: one pass over the
    /// `dataset_name` index.
    ///
    /// # Errors
    /// [`Error::Sqlite`] (locked, a table missing).
    pub fn datasets(&self) -> Result<Vec<StoreDataset>> {
        let sql = |e| Error::sqlite(&self.db, e);
        let mut st = self
            .conn
            .prepare(
                "SELECT dataset_name, count(*) FROM predictions \
                 GROUP BY dataset_name ORDER BY dataset_name",
            )
            .map_err(sql)?;
        let rows = st
            .query_map([], |r| {
                Ok(StoreDataset {
                    name: r.get(0)?,
                    predictions: r.get::<_, i64>(1)?.max(0) as u64,
                })
            })
            .map_err(sql)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sql)
    }

    /// Every prediction of `dataset` in the `.meta.parquet` layout (no
    /// arrays), ordered by `prediction_id`, and the fingerprint of their
    /// content. Cost: one indexed query; memory: the rows (about 0.5 KB
    /// each, no arrays).
    ///
    /// # Errors
    /// [`Error::Sqlite`]; [`Error::Corrupt`] for a value of the wrong type.
    pub fn predictions(&self, dataset: &str) -> Result<(Vec<Prediction>, rows::Fingerprint)> {
        rows::read(&self.conn, &self.db, dataset)
    }

    /// The arrays file of `dataset`: `arrays/<name>.parquet`, the name
    /// sanitised as nirs4all does.
    pub fn arrays_path(&self, dataset: &str) -> PathBuf {
        arrays::path(&self.dir, dataset)
    }
}
