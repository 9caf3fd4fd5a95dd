//! A store answered in place: its rows read straight from SQLite, column by
//! column as queries ask, and shown to the engine as one dataset per
//! `.meta.parquet` file would be (a footer held in memory and a
//! [`RowSource`]), so a first answer never waits for an import.
//!
//! What it costs: one pass over `predictions` per set of columns first
//! asked (`read`: two connections, about 0.4 s for a page query's
//! columns and 0.8 s for a summary's on the 1M-row bench store), the
//! columns then held for the snapshot's life (about 40 bytes a row for a
//! summary's, 10 for a page's: 40 MB at 1M rows); a page's rows whole are
//! fetched by `rowid`. The table is a snapshot: a workspace drops it when
//! the store's files change ([`InPlace::stamp`]). The store is only read.

mod file;
mod read;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{Field, Schema};

use crate::error::{Error, Result};
use crate::footer::info::{ColumnFacts, Footer, MetricFact, ScoreFact};
use crate::rows::source::RowSource;
use crate::rows::StrCol;
use crate::schema::validate_dataset_name;
use crate::summary::{utc_now, SummaryBuilder, SummaryOptions};

use read::{Lookups, Plan};

/// Rows at or below which a pass runs on one connection (a second costs
/// more to open than it saves).
const ONE_CONNECTION_ROWS: i64 = 50_000;

/// The columns a summary read in place reads: the summary's own less `id`,
/// which only the few rows of its top lists need (`fill_ids`); reading
/// 1M ids was 8% of the bench store's summary pass.
pub const SUMMARY_READS: [&str; 11] = [
    "dataset_name",
    "config_name",
    "pipeline_uid",
    "model_name",
    "fold_id",
    "partition",
    "metric",
    "task_type",
    "val_score",
    "test_score",
    "train_score",
];

/// Gives the top lists of a summary made without ids (the builder fed
/// [`SUMMARY_READS`]) their rows' ids, read for those rows alone. The
/// lists are ordered by score, dataset and row, never by id, so they are
/// the lists the ids would have given.
fn fill_ids(summary: &mut crate::summary::Summary, src: &dyn RowSource) -> Result<()> {
    let mut rows: Vec<u64> = summary
        .top_predictions
        .iter()
        .chain(
            summary
                .top_by_metric
                .values()
                .flat_map(|m| m.predictions.iter()),
        )
        .chain(
            summary
                .state
                .iter()
                .flat_map(|st| st.top.values().flat_map(|p| p.values().flatten())),
        )
        .map(|e| e.row)
        .collect();
    rows.sort_unstable();
    rows.dedup();
    if rows.is_empty() {
        return Ok(());
    }
    let b = src.columns(&["id"], Some(&rows))?;
    let col = StrCol::of(&b, "id");
    let ids: HashMap<u64, Option<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, &r)| (r, col.get(i).map(str::to_string)))
        .collect();
    let fill = |e: &mut crate::summary::topk::TopEntry| {
        if let Some(id) = ids.get(&e.row) {
            e.id.clone_from(id);
        }
    };
    summary.top_predictions.iter_mut().for_each(fill);
    for m in summary.top_by_metric.values_mut() {
        m.predictions.iter_mut().for_each(fill);
    }
    if let Some(st) = summary.state.as_mut() {
        for p in st.top.values_mut() {
            for v in p.values_mut() {
                v.iter_mut().for_each(fill);
            }
        }
    }
    Ok(())
}

/// Slices of the `rowid` range a large table's pass through SQLite is cut
/// into (two halves finished up to 35% apart: rows differ in cost).
const CHUNKS: usize = 8;

/// Slices of the leaf pages a direct read is cut into: one per thread. A
/// leaf costs about its bytes, so halves finish together; and every
/// dataset cut by a slice boundary is joined afterwards (with 8 slices,
/// nearly all: 0.25 s on the bench store's summary).
const DIRECT_CHUNKS: usize = 2;

/// One dataset's slices of a pass, in `rowid` order, as one part: columns
/// concatenated, facet dictionaries merged (each value once, in order of
/// first appearance; the codes remapped, not hashed again).
fn join_parts(ps: Vec<read::Part>) -> Result<read::Part> {
    let n_cols = ps[0].columns.len();
    let mut rowids = Vec::with_capacity(ps.iter().map(|p| p.rowids.len()).sum());
    for p in &ps {
        rowids.extend_from_slice(&p.rowids);
    }
    let mut columns = Vec::with_capacity(n_cols);
    for c in 0..n_cols {
        let arrays: Vec<&dyn Array> = ps.iter().map(|p| p.columns[c].as_ref()).collect();
        let joined = match merge_dictionaries(&arrays) {
            Some(a) => a,
            None => arrow_select::concat::concat(&arrays).map_err(Error::from)?,
        };
        columns.push(joined);
    }
    Ok(read::Part { rowids, columns })
}

/// Dictionary arrays joined with one code per distinct value (`None` when
/// they are not all `Dictionary<Int32, Utf8>`).
fn merge_dictionaries(arrays: &[&dyn Array]) -> Option<ArrayRef> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    let mut values: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, i32> = HashMap::new();
    let total: usize = arrays.iter().map(|a| a.len()).sum();
    let mut keys: Vec<Option<i32>> = Vec::with_capacity(total);
    for a in arrays {
        let d = a.as_dictionary_opt::<Int32Type>()?;
        let vals = d.values().as_string_opt::<i32>()?;
        let map: Vec<i32> = (0..vals.len())
            .map(|i| {
                let v = vals.value(i);
                *index.entry(v).or_insert_with(|| {
                    values.push(v);
                    (values.len() - 1) as i32
                })
            })
            .collect();
        keys.extend(d.keys().iter().map(|k| k.map(|k| map[k as usize])));
    }
    let values = Arc::new(arrow_array::StringArray::from(values));
    arrow_array::DictionaryArray::<Int32Type>::try_new(keys.into(), values)
        .ok()
        .map(|d| Arc::new(d) as ArrayRef)
}

/// Rows of a dataset fetched by `rowid` rather than by a pass of the
/// whole column (a page's rows, a top list's details).
const FETCH_ROWS: usize = 4096;

/// One dataset's rows: their `rowid`s (ascending: the copy's row order) and
/// the columns read so far.
struct DatasetRows {
    rowids: Vec<i64>,
    columns: RwLock<HashMap<String, ArrayRef>>,
}

#[derive(Default)]
struct Held {
    /// Read once: the datasets and their rows.
    loaded: bool,
    datasets: BTreeMap<String, Arc<DatasetRows>>,
    /// Datasets that cannot be answered, with why.
    bad: BTreeMap<String, Arc<Error>>,
}

/// A store's snapshot read in place (see the module documentation).
pub struct InPlace {
    db: PathBuf,
    stamp: String,
    lookups: Lookups,
    held: Mutex<Held>,
    summaries: Mutex<HashMap<String, Arc<Footer>>>,
}

impl std::fmt::Debug for InPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InPlace").field("db", &self.db).finish()
    }
}

impl InPlace {
    /// Opens the store workspace `dir` for reading in place: checks its
    /// schema version. Reads no prediction yet.
    ///
    /// # Errors
    /// As [`super::Store::open`].
    pub fn open(dir: &Path) -> Result<InPlace> {
        let stamp = super::mirror::stamp(dir);
        let store = super::Store::open(dir)?;
        let db = store.db_path().to_path_buf();
        let lookups = Lookups::default();
        Ok(InPlace {
            db,
            stamp,
            lookups,
            held: Mutex::new(Held::default()),
            summaries: Mutex::new(HashMap::new()),
        })
    }

    /// The store files' stamp when this snapshot was opened: a workspace
    /// compares it with `mirror::stamp` to know it is stale.
    pub fn stamp(&self) -> &str {
        &self.stamp
    }

    /// The name a dataset read in place goes by (in answers and errors):
    /// the database file, `#`, the dataset.
    pub fn path_of(&self, dataset: &str) -> PathBuf {
        PathBuf::from(format!("{}#{dataset}", self.db.display()))
    }

    /// The database file.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// Reads the columns `names` of every row not read yet (one pass for
    /// all of them; nothing when all are held), then lists the datasets:
    /// each with its rows, and those that cannot be answered with why.
    ///
    /// # Errors
    /// [`Error::Sqlite`] when the store cannot be read at all;
    /// [`Error::ChangedDuringRefresh`] when a later pass finds other rows
    /// than the first (the store changed: open it again).
    #[allow(clippy::type_complexity)]
    pub fn load(
        self: &Arc<Self>,
        names: &[&str],
    ) -> Result<(
        Vec<(String, Arc<dyn RowSource>, u64)>,
        Vec<(String, Arc<Error>)>,
    )> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let missing: Vec<&str> = {
            let mut m: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| {
                    !held.loaded
                        || held
                            .datasets
                            .values()
                            .any(|d| !d.columns.read().is_ok_and(|c| c.contains_key(*n)))
                })
                .collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        if !held.loaded || !missing.is_empty() {
            let pass = self.full_pass(&missing)?;
            self.absorb(&mut held, &missing, pass)?;
        }
        let list = held
            .datasets
            .iter()
            .map(|(name, d)| {
                let src: Arc<dyn RowSource> = Arc::new(Dataset {
                    table: self.clone(),
                    name: name.clone(),
                    rows: d.clone(),
                });
                (name.clone(), src, d.rowids.len() as u64)
            })
            .collect();
        let bad = held
            .bad
            .iter()
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        Ok((list, bad))
    }

    /// True when the store holds a prediction. Cost: one indexed step.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn has_rows(&self) -> Result<bool> {
        let conn = read::connect(&self.db)?;
        conn.query_row("SELECT EXISTS (SELECT 1 FROM predictions)", [], |r| {
            r.get(0)
        })
        .map_err(|e| Error::sqlite(&self.db, e))
    }

    /// The footer of `dataset` with its summary (read in place, kept for
    /// the snapshot's life): what the copy's footer would hold.
    ///
    /// # Errors
    /// As [`Self::load`]; an unknown metric's direction, naming the dataset.
    pub fn footer(self: &Arc<Self>, dataset: &str, opts: &SummaryOptions) -> Result<Arc<Footer>> {
        if let Some(f) = self
            .summaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(dataset)
        {
            return Ok(f.clone());
        }
        let (list, _) = self.load(&SUMMARY_READS)?;
        let Some((_, src, n)) = list.into_iter().find(|(d, _, _)| d == dataset) else {
            return Err(Error::ChangedDuringRefresh {
                path: self.path_of(dataset),
            });
        };
        let path = self.path_of(dataset);
        let b = src.columns(&SUMMARY_READS, None)?;
        // Shown, never stored: no group aggregates (group-bys in place
        // read the rows).
        let mut builder = SummaryBuilder::new(crate::summary::SummaryOptions {
            groups: false,
            ..opts.clone()
        });
        crate::rows::summarize_batch(&b, &mut builder, &path.display().to_string()).map_err(
            |e| match e {
                e @ Error::Schema { .. } => e,
                e => Error::WithPath {
                    path: path.clone(),
                    source: Box::new(e),
                },
            },
        )?;
        let mut summary = builder.finish(Some(utc_now()));
        fill_ids(&mut summary, src.as_ref())?;
        let footer = Arc::new(Footer::held(&path, n, facts(&b), Some(summary))?);
        self.summaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dataset.to_string(), footer.clone());
        Ok(footer)
    }

    /// The footer of `dataset` without a summary (rows and, when read, the
    /// metric and score facts): what a query's pruning uses.
    pub fn plain_footer(&self, dataset: &str, src: &dyn RowSource, n: u64) -> Footer {
        let cols = ["metric", "val_score", "test_score", "train_score"];
        // Facts only from columns already read: never a pass for them.
        let facts = if self.held_all(dataset, &cols) {
            src.columns(&cols, None)
                .map_or_else(|_| ColumnFacts::default(), |b| facts(&b))
        } else {
            ColumnFacts::default()
        };
        Footer::held(&self.path_of(dataset), n, facts, None).unwrap_or_else(|_| unreachable!())
    }

    fn held_all(&self, dataset: &str, cols: &[&str]) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.datasets.get(dataset).is_some_and(|d| {
            d.columns
                .read()
                .is_ok_and(|c| cols.iter().all(|n| c.contains_key(*n)))
        })
    }

    /// One pass over every row for `names`: on one connection for a small
    /// table; else the `rowid` range cut in [`CHUNKS`] slices that two
    /// connections take in turn (halves finished up to 35% apart: the rows
    /// differ in size), then each dataset's slices joined in `rowid` order.
    /// Done again on one connection (one snapshot) when a write landed
    /// meanwhile.
    fn full_pass(&self, names: &[&str]) -> Result<read::Pass> {
        let plan = Plan::new(names, "WHERE rowid BETWEEN ?1 AND ?2");
        let conn = read::connect(&self.db)?;
        // Two sub-queries: SQLite answers `min` and `max` each from the
        // b-tree's ends, but `min(rowid), max(rowid)` together by a scan
        // of every row (0.5 s on the bench store).
        let (lo, hi): (Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT (SELECT min(rowid) FROM predictions), (SELECT max(rowid) FROM predictions)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| Error::sqlite(&self.db, e))?;
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Ok(read::Pass::default());
        };
        self.lookups.ensure(&plan, &conn, &self.db)?;
        // `conn` has read (min and max): its read transaction now holds
        // the snapshot the direct read's soundness rests on.
        if let Some(pass) = self.direct_pass(&conn, names)? {
            return Ok(pass);
        }
        if hi - lo < ONE_CONNECTION_ROWS {
            return read::pass(&conn, &self.db, &plan, &self.lookups, &[&lo, &hi]);
        }
        let dir = self.db.parent().unwrap_or(Path::new("."));
        let before = super::mirror::stamp(dir);
        let step = (hi - lo) / CHUNKS as i64 + 1;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = |c: &rusqlite::Connection| -> Result<Vec<(usize, read::Pass)>> {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= CHUNKS {
                    return Ok(out);
                }
                let a = lo + i as i64 * step;
                let b = (a + step - 1).min(hi);
                out.push((i, read::pass(c, &self.db, &plan, &self.lookups, &[&a, &b])?));
            }
        };
        let (mine, theirs) = std::thread::scope(|s| {
            let other = s.spawn(|| read::connect(&self.db).and_then(|c| work(&c)));
            let mine = work(&conn);
            let theirs = other
                .join()
                .unwrap_or_else(|_| Err(Error::Cancelled("a store read panicked".into())));
            (mine, theirs)
        });
        if super::mirror::stamp(dir) != before {
            drop(conn);
            let conn = read::connect(&self.db)?;
            return read::pass(&conn, &self.db, &plan, &self.lookups, &[&lo, &hi]);
        }
        let mut chunks: Vec<(usize, read::Pass)> = mine?;
        chunks.extend(theirs?);
        join_chunks(chunks)
    }

    /// The pass read from the database file itself ([`file`]), on two
    /// threads over slices of its leaf pages; `None` when that read would
    /// not be sound or meets a page it does not know. `guard` holds the
    /// read transaction for the whole read.
    fn direct_pass(
        &self,
        guard: &rusqlite::Connection,
        names: &[&str],
    ) -> Result<Option<read::Pass>> {
        // `N4A_STORE_DIRECT`: `off` reads through SQLite always; `require`
        // makes a store this reader would hand to SQLite an error instead
        // (how the tests know the direct read ran).
        let how = std::env::var("N4A_STORE_DIRECT").unwrap_or_default();
        if how == "off" {
            return Ok(None);
        }
        let refuse = |why: &str| -> Result<Option<read::Pass>> {
            if how == "require" {
                Err(Error::corrupt(
                    &self.db,
                    format!("not read directly (N4A_STORE_DIRECT=require): {why}"),
                ))
            } else {
                Ok(None)
            }
        };
        let Some(f) = file::DbFile::open(&self.db, guard)? else {
            return refuse("the file is not in a state a direct read is sound in");
        };
        let Some(leaves) = f.leaves() else {
            return refuse("a b-tree page this reader does not know");
        };
        let plan = Plan::new(names, "");
        let db = self.db.as_path();
        let id_of = |rowid: i64| -> Option<String> {
            read::connect(db)
                .ok()?
                .query_row(
                    "SELECT prediction_id FROM predictions WHERE rowid = ?1",
                    [rowid],
                    |r| r.get(0),
                )
                .ok()
        };
        let per = leaves.len().div_ceil(DIRECT_CHUNKS).max(1);
        let slices: Vec<&[u32]> = leaves.chunks(per).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || -> Result<Option<Vec<(usize, read::Pass)>>> {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(slice) = slices.get(i) else {
                    return Ok(Some(out));
                };
                match f.scan(slice, &plan, &self.lookups, db, &id_of)? {
                    Some(p) => out.push((i, p)),
                    None => return Ok(None),
                }
            }
        };
        let (mine, theirs) = std::thread::scope(|s| {
            let other = s.spawn(work);
            let mine = work();
            let theirs = other
                .join()
                .unwrap_or_else(|_| Err(Error::Cancelled("a store read panicked".into())));
            (mine, theirs)
        });
        let (Some(mut chunks), Some(more)) = (mine?, theirs?) else {
            return refuse("a page or record this reader does not know");
        };
        chunks.extend(more);
        join_chunks(chunks).map(Some)
    }
}

/// A pass's slices (numbered in `rowid` order) as one pass: each
/// dataset's parts joined in order, a dataset bad in any slice bad.
fn join_chunks(mut chunks: Vec<(usize, read::Pass)>) -> Result<read::Pass> {
    chunks.sort_by_key(|(i, _)| *i);
    {
        let mut out = read::Pass::default();
        let mut parts: BTreeMap<String, Vec<read::Part>> = BTreeMap::new();
        for (_, p) in chunks {
            for (name, e) in p.bad {
                out.bad.entry(name).or_insert(e);
            }
            for (name, part) in p.parts {
                parts.entry(name).or_default().push(part);
            }
        }
        for (name, mut ps) in parts {
            if out.bad.contains_key(&name) {
                continue;
            }
            let part = if ps.len() == 1 {
                ps.pop().expect("one part")
            } else {
                join_parts(ps)?
            };
            out.parts.insert(name, part);
        }
        Ok(out)
    }
}

impl InPlace {
    /// Takes a pass's columns into the held datasets (the first pass makes
    /// them; a later one must find the same rows).
    fn absorb(&self, held: &mut Held, names: &[&str], pass: read::Pass) -> Result<()> {
        let first = !held.loaded;
        for (name, e) in pass.bad {
            held.datasets.remove(&name);
            held.bad.insert(name, Arc::new(e));
        }
        for (name, part) in pass.parts {
            if held.bad.contains_key(&name) {
                continue;
            }
            if let Err(e) = validate_dataset_name(&name) {
                held.bad.insert(name, Arc::new(e));
                continue;
            }
            let cols: HashMap<String, ArrayRef> = names
                .iter()
                .map(|n| n.to_string())
                .zip(part.columns)
                .collect();
            match held.datasets.get(&name) {
                Some(d) if !first => {
                    if d.rowids != part.rowids {
                        return Err(Error::ChangedDuringRefresh {
                            path: self.db.clone(),
                        });
                    }
                    d.columns
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(cols);
                }
                _ if first => {
                    held.datasets.insert(
                        name,
                        Arc::new(DatasetRows {
                            rowids: part.rowids,
                            columns: RwLock::new(cols),
                        }),
                    );
                }
                _ => {
                    return Err(Error::ChangedDuringRefresh {
                        path: self.db.clone(),
                    })
                }
            }
        }
        held.loaded = true;
        Ok(())
    }

    /// The arrays of prediction `id` of `dataset`, from the store's arrays
    /// file (`None` without a file or a live row for it). Cost: the file's
    /// id column and one row's arrays.
    ///
    /// # Errors
    /// As `arrays::for_each_live`, naming the arrays file.
    pub fn arrays(
        &self,
        dataset: &str,
        id: &str,
    ) -> Result<Option<crate::schema::PredictionArrays>> {
        let dir = self.db.parent().unwrap_or(Path::new("."));
        let file = super::arrays::path(dir, dataset);
        if !file.is_file() {
            return Ok(None);
        }
        let index: HashMap<String, usize> = [(id.to_string(), 0)].into_iter().collect();
        let mut out = None;
        super::arrays::for_each_live(&file, &index, &mut |_, a| {
            out = Some(a);
            Ok(())
        })?;
        Ok(out)
    }

    /// Columns `names` of the rows at `rowids` (ascending), fetched by
    /// `rowid` on one connection.
    fn fetch(&self, names: &[&str], rowids: &[i64]) -> Result<Vec<ArrayRef>> {
        let conn = read::connect(&self.db)?;
        let mut parts: Vec<Vec<ArrayRef>> = Vec::new();
        for chunk in rowids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let plan = Plan::joined(
                names,
                &format!("WHERE p.rowid IN ({marks}) ORDER BY p.rowid"),
            );
            let params: Vec<&dyn rusqlite::ToSql> =
                chunk.iter().map(|r| r as &dyn rusqlite::ToSql).collect();
            let pass = read::pass(&conn, &self.db, &plan, &self.lookups, &params)?;
            if let Some((_, e)) = pass.bad.into_iter().next() {
                return Err(e);
            }
            let mut got: Vec<read::Part> = pass.parts.into_values().collect();
            if got.len() != 1 || got[0].rowids != chunk {
                return Err(Error::ChangedDuringRefresh {
                    path: self.db.clone(),
                });
            }
            parts.push(got.pop().map(|p| p.columns).unwrap_or_default());
        }
        (0..names.len())
            .map(|i| {
                let arrays: Vec<&dyn Array> = parts.iter().map(|p| p[i].as_ref()).collect();
                if arrays.len() == 1 {
                    Ok(parts[0][i].clone())
                } else {
                    arrow_select::concat::concat(&arrays).map_err(Error::from)
                }
            })
            .collect()
    }
}

/// One dataset of a store read in place.
struct Dataset {
    table: Arc<InPlace>,
    name: String,
    rows: Arc<DatasetRows>,
}

/// The contract's array-id columns, in [`PredictionArrays`] order: filled
/// from the store's arrays file as the import's writer names them.
const ARRAY_IDS: [&str; 5] = [
    "y_true_id",
    "y_pred_id",
    "y_proba_id",
    "sample_indices_id",
    "weights_id",
];

impl RowSource for Dataset {
    fn columns(&self, names: &[&str], rows: Option<&[u64]>) -> Result<RecordBatch> {
        if names.iter().any(|n| ARRAY_IDS.contains(n)) {
            return self.with_array_ids(names, rows);
        }
        let n = rows.map_or(self.rows.rowids.len(), <[u64]>::len);
        let held = |names: &[&str]| -> Option<Vec<ArrayRef>> {
            let cols = self.rows.columns.read().ok()?;
            names.iter().map(|x| cols.get(*x).cloned()).collect()
        };
        let arrays: Vec<ArrayRef> = match (held(names), rows) {
            (Some(all), None) => all,
            (Some(all), Some(rows)) => {
                let idx = arrow_array::UInt64Array::from(rows.to_vec());
                all.iter()
                    .map(|a| arrow_select::take::take(a.as_ref(), &idx, None).map_err(Error::from))
                    .collect::<Result<_>>()?
            }
            (None, Some(rows)) if rows.len() <= FETCH_ROWS => {
                let ids: Vec<i64> = rows
                    .iter()
                    .map(|&r| self.rows.rowids.get(r as usize).copied())
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        Error::corrupt(
                            self.table.path_of(&self.name),
                            format!("a row past the dataset's {} asked", self.rows.rowids.len()),
                        )
                    })?;
                self.table.fetch(names, &ids)?
            }
            (None, _) => {
                self.table.load(names)?;
                let all = held(names).ok_or_else(|| Error::ChangedDuringRefresh {
                    path: self.table.path_of(&self.name),
                })?;
                return self.columns_of(names, all, rows);
            }
        };
        self.batch(names, arrays, n)
    }
}

impl Dataset {
    /// [`RowSource::columns`] with array-id columns among `names`: each id
    /// is `array_` and the first 12 hex digits of the array's content hash,
    /// as the import's writer names it (the writer lengthens a prefix shared
    /// by two arrays of one dataset; such a pair, about 1 in 2^48 per pair
    /// of arrays, reads here with the short id). Cost: the arrays file's id
    /// column and the asked rows' arrays.
    fn with_array_ids(&self, names: &[&str], rows: Option<&[u64]>) -> Result<RecordBatch> {
        let plain: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !ARRAY_IDS.contains(n))
            .collect();
        let mut with_id = plain.clone();
        with_id.push("id");
        let base = self.columns(&with_id, rows)?;
        let n = base.num_rows();
        let ids = StrCol::of(&base, "id");
        let index: HashMap<String, usize> = (0..n)
            .filter_map(|i| Some((ids.get(i)?.to_string(), i)))
            .collect();
        let mut found: Vec<[Option<String>; 5]> = vec![Default::default(); n];
        let dir = self.table.db.parent().unwrap_or(Path::new("."));
        let file = super::arrays::path(dir, &self.name);
        if file.is_file() && !index.is_empty() {
            super::arrays::for_each_live(&file, &index, &mut |i, a| {
                let slots = [a.y_true, a.y_pred, a.y_proba, a.sample_indices, a.weights];
                for (k, arr) in slots.into_iter().enumerate() {
                    found[i][k] = arr.map(|arr| format!("array_{}", &arr.content_hash()[..12]));
                }
                Ok(())
            })?;
        }
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(names.len());
        for name in names {
            match ARRAY_IDS.iter().position(|a| a == name) {
                Some(k) => arrays.push(Arc::new(arrow_array::StringArray::from(
                    found.iter().map(|f| f[k].clone()).collect::<Vec<_>>(),
                ))),
                None => arrays.push(base.column_by_name(name).cloned().ok_or_else(|| {
                    Error::ChangedDuringRefresh {
                        path: self.table.path_of(&self.name),
                    }
                })?),
            }
        }
        self.batch(names, arrays, n)
    }

    fn columns_of(
        &self,
        names: &[&str],
        all: Vec<ArrayRef>,
        rows: Option<&[u64]>,
    ) -> Result<RecordBatch> {
        let n = rows.map_or(self.rows.rowids.len(), <[u64]>::len);
        let arrays = match rows {
            None => all,
            Some(rows) => {
                let idx = arrow_array::UInt64Array::from(rows.to_vec());
                all.iter()
                    .map(|a| arrow_select::take::take(a.as_ref(), &idx, None).map_err(Error::from))
                    .collect::<Result<_>>()?
            }
        };
        self.batch(names, arrays, n)
    }

    fn batch(&self, names: &[&str], arrays: Vec<ArrayRef>, n: usize) -> Result<RecordBatch> {
        let fields: Vec<Field> = names
            .iter()
            .zip(&arrays)
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(Error::from)
    }
}

/// The metric and score facts of a batch's rows (what a copy's column
/// statistics would say).
fn facts(b: &RecordBatch) -> ColumnFacts {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    let metric = {
        let col = StrCol::of(b, "metric");
        let (mut one, mut rows, mut many) = (None::<&str>, 0u64, false);
        for i in 0..b.num_rows() {
            if let Some(m) = col.get(i) {
                rows += 1;
                match one {
                    None => one = Some(m),
                    Some(o) if o != m => many = true,
                    _ => {}
                }
            }
        }
        match (one, many) {
            _ if b.column_by_name("metric").is_none() => MetricFact::Unknown,
            (_, true) => MetricFact::Unknown,
            (Some(m), false) => MetricFact::One {
                name: m.to_string(),
                rows,
            },
            (None, _) => MetricFact::None,
        }
    };
    let score = |name: &str| -> Option<ScoreFact> {
        let a = b.column_by_name(name)?.as_primitive_opt::<Float64Type>()?;
        let (mut min, mut max) = (None::<f64>, None::<f64>);
        for v in a.iter().flatten() {
            if v.is_nan() {
                continue;
            }
            min = Some(min.map_or(v, |m| m.min(v)));
            max = Some(max.map_or(v, |m| m.max(v)));
        }
        Some(ScoreFact {
            non_null: (a.len() - a.null_count()) as u64,
            min,
            max,
        })
    };
    ColumnFacts {
        metric,
        scores: [
            score("val_score"),
            score("test_score"),
            score("train_score"),
        ],
    }
}
