//! One pass over a slice of a store's `predictions` table (a `rowid`
//! range, or the rows of a page) for some columns, split by dataset in
//! `rowid` order (the order of the `.meta.parquet` copy). The caller
//! ([`super::InPlace`]) runs slices on two connections.
//!
//! Why two connections and not one: SQLite decodes a row on the thread
//! that steps it, and a page of the 1M-row bench store costs about as much
//! to decode as to read; two connections take 0.35-0.47 s for the columns
//! of a page query and 0.73-0.83 s for the eleven of a summary, where one
//! takes 1.35 s for the eleven (measured on the bench machine, `rusqlite`,
//! warm page cache: the floor the issue asked for). Values are appended
//! straight into Arrow builders (no `String` per cell; facets into
//! dictionaries, [`Facet`]); `config_name` and `step_idx` come from the
//! small `pipelines` and `chains` tables, read once into maps, instead of
//! a join per row (the join cost 40% more on the floor program).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::ArrayRef;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
use crate::schema::{Kind, COLUMNS};

use super::super::rows::refit_metadata;
use super::super::BUSY_TIMEOUT;

/// Where a contract column comes from in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum From {
    /// A `predictions` column of that name, of that kind.
    Column(&'static str),
    /// `pipelines.name` by `pipeline_id`.
    ConfigName,
    /// `chains.model_step_idx` by `chain_id`.
    StepIdx,
    /// `refit_context`, carried in the `metadata` JSON.
    Metadata,
    /// Not in the store: null.
    Nothing,
}

/// The store's source of the contract column `name` (`docs/STORE.md`'s
/// table, the same as the import's query).
pub(super) fn source_of(name: &str) -> From {
    match name {
        "id" => From::Column("prediction_id"),
        "dataset_name" => From::Column("dataset_name"),
        "config_name" => From::ConfigName,
        "pipeline_uid" => From::Column("pipeline_id"),
        "step_idx" => From::StepIdx,
        "model_classname" => From::Column("model_class"),
        "metadata" => From::Metadata,
        "model_name" | "fold_id" | "partition" | "val_score" | "test_score" | "train_score"
        | "metric" | "task_type" | "n_samples" | "n_features" | "preprocessings"
        | "best_params" | "scores" | "branch_id" | "branch_name" | "exclusion_count"
        | "exclusion_rate" => {
            From::Column(COLUMNS.iter().find(|(n, _)| *n == name).map_or("", |c| c.0))
        }
        _ => From::Nothing,
    }
}

/// The contract kind of a column (strings for unknown names).
pub(super) fn kind_of(name: &str) -> Kind {
    COLUMNS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(Kind::Str, |(_, k)| *k)
}

/// The `predictions` column a source reads, if any.
fn sql_column(f: From) -> Option<&'static str> {
    match f {
        From::Column(c) => Some(c),
        From::ConfigName => Some("pipeline_id"),
        From::StepIdx => Some("chain_id"),
        From::Metadata => Some("refit_context"),
        From::Nothing => None,
    }
}

/// How the import names a source in its errors.
fn error_name(f: From) -> &'static str {
    match f {
        From::Column("pl.name") => "pipelines.name",
        From::Column("c.model_step_idx") => "chains.model_step_idx",
        From::Column(c) => c,
        From::ConfigName => "pipelines.name",
        From::StepIdx => "chains.model_step_idx",
        From::Metadata => "refit_context",
        From::Nothing => "?",
    }
}

/// A value of `pipelines.name` or `chains.model_step_idx`, as the import's
/// join reads it, or what was found instead.
type Looked<T> = std::result::Result<Option<T>, &'static str>;

/// The two small tables a row's config name and model step come from,
/// each read on the first pass that needs it (a page query's columns need
/// neither: `chains` alone took 45 ms on the bench store).
#[derive(Default)]
pub(super) struct Lookups {
    configs: std::sync::OnceLock<HashMap<Vec<u8>, Looked<String>>>,
    steps: std::sync::OnceLock<HashMap<Vec<u8>, Looked<i64>>>,
}

impl Lookups {
    /// Reads, on `conn`, the maps `plan` needs and were not read yet:
    /// `pipelines` (id, name) and `chains` (id, step), one pass over each.
    pub(super) fn ensure(&self, plan: &Plan, conn: &Connection, db: &Path) -> Result<()> {
        let sql = |e| Error::sqlite(db, e);
        let needs = |f: From| plan.sources.iter().any(|s| s.0 == f);
        if needs(From::ConfigName) && self.configs.get().is_none() {
            let mut map = HashMap::new();
            let mut st = conn
                .prepare("SELECT pipeline_id, name FROM pipelines")
                .map_err(sql)?;
            let mut rows = st.query([]).map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                if let ValueRef::Text(k) = r.get_ref(0).map_err(sql)? {
                    let v = text(r.get_ref(1).map_err(sql)?).map(|t| t.map(|t| t.into_owned()));
                    map.insert(k.to_vec(), v);
                }
            }
            let _ = self.configs.set(map);
        }
        if needs(From::StepIdx) && self.steps.get().is_none() {
            let mut map = HashMap::new();
            let mut st = conn
                .prepare("SELECT chain_id, model_step_idx FROM chains")
                .map_err(sql)?;
            let mut rows = st.query([]).map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                if let ValueRef::Text(k) = r.get_ref(0).map_err(sql)? {
                    map.insert(k.to_vec(), int(r.get_ref(1).map_err(sql)?));
                }
            }
            let _ = self.steps.set(map);
        }
        Ok(())
    }
}

/// A text cell as the import reads it (numbers as their text), or what
/// was found instead.
fn text(v: ValueRef<'_>) -> std::result::Result<Option<std::borrow::Cow<'_, str>>, &'static str> {
    Ok(match v {
        ValueRef::Null => None,
        ValueRef::Text(t) => Some(std::borrow::Cow::Borrowed(
            std::str::from_utf8(t).map_err(|_| "text that is not UTF-8")?,
        )),
        ValueRef::Integer(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        ValueRef::Real(x) => Some(std::borrow::Cow::Owned(x.to_string())),
        ValueRef::Blob(_) => return Err("a blob"),
    })
}

fn int(v: ValueRef<'_>) -> Looked<i64> {
    Ok(match v {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Some(x as i64),
        ValueRef::Real(_) => return Err("a real"),
        ValueRef::Text(_) => return Err("text"),
        ValueRef::Blob(_) => return Err("a blob"),
    })
}

fn float(v: ValueRef<'_>) -> Looked<f64> {
    Ok(match v {
        ValueRef::Null => None,
        ValueRef::Real(x) => Some(x),
        ValueRef::Integer(n) => Some(n as f64),
        ValueRef::Text(_) => return Err("text"),
        ValueRef::Blob(_) => return Err("a blob"),
    })
}

/// A facet column read into a dictionary: its values in order of first
/// appearance, each row's code. Facets have few values that repeat in
/// runs, so the previous row's value is tried first, then (up to 16
/// values) each value in turn, and only then a hash map: measured on the
/// 1M-row bench store, hashing every cell (arrow's dictionary builder)
/// was 15% of the pass. A cell's bytes are looked up before they are
/// checked as UTF-8: bytes equal to a value held are that valid text, so
/// only a new value is checked (the check of every cell whose value
/// differs from the previous row's, a partition's every row, was 4% of
/// the pass).
#[derive(Default)]
struct Facet {
    codes: Vec<Option<i32>>,
    values: Vec<String>,
    last: usize,
    index: foldhash::HashMap<Box<[u8]>, i32>,
}

impl Facet {
    /// Appends the previous row's code when `v` is the text of the
    /// previous row's value, and says so.
    #[inline]
    fn repeats(&mut self, v: &ValueRef<'_>) -> bool {
        match (v, self.values.get(self.last)) {
            (ValueRef::Text(t), Some(l)) if l.as_bytes() == *t => {
                self.codes.push(Some(self.last as i32));
                true
            }
            _ => false,
        }
    }

    /// The code of the value whose bytes are `t`, if held (the previous
    /// row's tried first unless `tried_last`).
    #[inline]
    fn find(&self, t: &[u8], tried_last: bool) -> Option<usize> {
        if !tried_last
            && self
                .values
                .get(self.last)
                .is_some_and(|l| l.as_bytes() == t)
        {
            return Some(self.last);
        }
        if self.values.len() <= 16 {
            self.values.iter().position(|x| x.as_bytes() == t)
        } else {
            self.index.get(t).map(|&k| k as usize)
        }
    }

    /// Appends a text cell by its bytes, once [`Self::repeats`] said it is
    /// not the previous row's: a value held is found without a UTF-8
    /// check; a new one is checked, then held.
    fn append_text(&mut self, t: &[u8]) -> std::result::Result<(), &'static str> {
        if let Some(at) = self.find(t, true) {
            self.last = at;
            self.codes.push(Some(at as i32));
            return Ok(());
        }
        let v = std::str::from_utf8(t).map_err(|_| "text that is not UTF-8")?;
        self.insert(v)
    }

    fn append(&mut self, v: Option<&str>) -> std::result::Result<(), &'static str> {
        let Some(v) = v else {
            self.codes.push(None);
            return Ok(());
        };
        match self.find(v.as_bytes(), false) {
            Some(at) => {
                self.last = at;
                self.codes.push(Some(at as i32));
                Ok(())
            }
            None => self.insert(v),
        }
    }

    /// Holds `v`, not held yet, as a new value and appends its code.
    fn insert(&mut self, v: &str) -> std::result::Result<(), &'static str> {
        let at = self.values.len();
        if at >= i32::MAX as usize {
            return Err("more distinct values than a dictionary holds");
        }
        self.values.push(v.to_string());
        if at == 16 {
            self.index = self
                .values
                .iter()
                .enumerate()
                .map(|(i, x)| (Box::from(x.as_bytes()), i as i32))
                .collect();
        } else if at > 16 {
            self.index.insert(Box::from(v.as_bytes()), at as i32);
        }
        self.last = at;
        self.codes.push(Some(at as i32));
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        let keys = arrow_array::Int32Array::from(std::mem::take(&mut self.codes));
        let values = Arc::new(arrow_array::StringArray::from(std::mem::take(
            &mut self.values,
        )));
        Arc::new(
            arrow_array::DictionaryArray::<Int32Type>::try_new(keys, values)
                .expect("codes index the values"),
        )
    }
}

/// A column being read: facet strings straight into a dictionary (as a
/// `.meta.parquet` copy's column reads, so queries take the same paths).
enum Builder {
    Str(StringBuilder),
    Dict(Facet),
    Int(Int64Builder),
    Float(Float64Builder),
}

impl Builder {
    fn new(kind: Kind, facet: bool) -> Builder {
        match kind {
            Kind::Str if facet => Builder::Dict(Facet::default()),
            Kind::Str => Builder::Str(StringBuilder::new()),
            Kind::Int => Builder::Int(Int64Builder::new()),
            Kind::Float => Builder::Float(Float64Builder::new()),
        }
    }

    fn append_str(&mut self, v: Option<&str>) -> std::result::Result<(), &'static str> {
        match self {
            Builder::Str(b) => b.append_option(v),
            Builder::Dict(b) => b.append(v)?,
            _ => return Err("text"),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Dict(b) => b.finish(),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
        }
    }
}

/// One dataset's rows as one pass read them.
pub(super) struct Part {
    /// Their `rowid`s, ascending.
    pub(super) rowids: Vec<i64>,
    /// The columns asked for, in the order asked.
    pub(super) columns: Vec<ArrayRef>,
}

/// What one pass read: each dataset's rows (by name), and the datasets
/// whose rows could not be read, each with its first error.
#[derive(Default)]
pub(super) struct Pass {
    pub(super) parts: HashMap<String, Part>,
    pub(super) bad: HashMap<String, Error>,
}

/// What a pass reads: the contract columns, their sources and the SQL.
pub(super) struct Plan {
    sources: Vec<(From, Kind, usize, bool)>,
    sql: String,
    cols: Vec<&'static str>,
}

impl Plan {
    /// The pass reading `names` (contract names), plus `rowid` and
    /// `dataset_name` always. `filter` is the SQL after `FROM predictions`.
    pub(super) fn new(names: &[&str], filter: &str) -> Plan {
        Plan::build(names, filter, false)
    }

    /// [`Self::new`] for a few rows: `config_name` and `step_idx` by the
    /// import's joins on `pipelines` and `chains` (`filter` names the
    /// table `p`), not from maps of the whole tables.
    pub(super) fn joined(names: &[&str], filter: &str) -> Plan {
        Plan::build(names, filter, true)
    }

    fn build(names: &[&str], filter: &str, joined: bool) -> Plan {
        let mut cols: Vec<&'static str> = vec!["rowid", "dataset_name"];
        let mut sources = Vec::with_capacity(names.len());
        for &n in names {
            let from = match source_of(n) {
                From::ConfigName if joined => From::Column("pl.name"),
                From::StepIdx if joined => From::Column("c.model_step_idx"),
                f => f,
            };
            let at = match sql_column(from) {
                Some(c) => match cols.iter().position(|x| *x == c) {
                    Some(i) => i,
                    None => {
                        cols.push(c);
                        cols.len() - 1
                    }
                },
                None => usize::MAX,
            };
            sources.push((from, kind_of(n), at, crate::schema::is_facet(n)));
        }
        let sql = if joined {
            let list: Vec<String> = cols
                .iter()
                .map(|c| {
                    if c.contains('.') {
                        c.to_string()
                    } else {
                        format!("p.{c}")
                    }
                })
                .collect();
            format!(
                "SELECT {} FROM predictions p \
                 LEFT JOIN pipelines pl ON pl.pipeline_id = p.pipeline_id \
                 LEFT JOIN chains c ON c.chain_id = p.chain_id {filter}",
                list.join(", ")
            )
        } else {
            format!("SELECT {} FROM predictions {filter}", cols.join(", "))
        };
        Plan { sources, sql, cols }
    }

    /// The `predictions` columns selected, in order: `rowid`, then
    /// `dataset_name`, then what the asked columns come from.
    pub(super) fn columns(&self) -> &[&'static str] {
        &self.cols
    }
}

/// Opens a read-only connection for a pass (its own snapshot from its
/// first read).
pub(super) fn connect(db: &Path) -> Result<Connection> {
    let sql = |e| Error::sqlite(db, e);
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    c.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    // No `mmap_size`: measured on the 1M-row bench store, mapping the file
    // was no faster than SQLite's reads (page faults cost what the copies
    // did) and put the whole file in the process's resident size (1 GB
    // against 80 MB for a page query).
    c.execute_batch("PRAGMA query_only = ON; BEGIN")
        .map_err(sql)?;
    Ok(c)
}

/// Runs `plan` over the rows its SQL selects with `params`, on `conn`.
pub(super) fn pass(
    conn: &Connection,
    db: &Path,
    plan: &Plan,
    lookups: &Lookups,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Pass> {
    let sql = |e| Error::sqlite(db, e);
    let mut st = conn.prepare(&plan.sql).map_err(sql)?;
    debug_assert_eq!(st.column_count(), plan.cols.len());
    let mut rows = st.query(params).map_err(sql)?;
    let mut c = Collect::new(plan, lookups);
    let id_of = |rowid: i64| -> Option<String> {
        conn.query_row(
            "SELECT prediction_id FROM predictions WHERE rowid = ?1",
            [rowid],
            |r| r.get(0),
        )
        .ok()
    };
    while let Some(r) = rows.next().map_err(sql)? {
        let rowid = match r.get_ref(0).map_err(sql)? {
            ValueRef::Integer(n) => n,
            _ => continue,
        };
        let ds = match r.get_ref(1).map_err(sql)? {
            ValueRef::Text(t) => t,
            _ => continue,
        };
        c.row(rowid, ds, |i| r.get_ref(i).map_err(sql), &id_of, db)?;
    }
    Ok(c.finish())
}

/// The rows of one pass being collected, per dataset (whatever reads
/// them: SQLite, or the database file directly).
pub(super) struct Collect<'p> {
    plan: &'p Plan,
    lookups: &'p Lookups,
    building: Vec<(String, Vec<i64>, Vec<Builder>)>,
    index: HashMap<Vec<u8>, usize>,
    last: Option<(Vec<u8>, usize)>,
    memo_cfg: Option<(Vec<u8>, Looked<String>)>,
    memo_step: Option<(Vec<u8>, Looked<i64>)>,
    bad: HashMap<String, Error>,
}

impl<'p> Collect<'p> {
    pub(super) fn new(plan: &'p Plan, lookups: &'p Lookups) -> Self {
        Collect {
            plan,
            lookups,
            building: Vec::new(),
            index: HashMap::new(),
            last: None,
            memo_cfg: None,
            memo_step: None,
            bad: HashMap::new(),
        }
    }

    /// Takes one row: its `rowid`, its dataset, and `cell(i)` the value of
    /// the plan's column `i` ([`Plan::columns`]). A value of the wrong type
    /// marks the dataset bad with an error naming the prediction (`id_of`
    /// finds its id) and the column, as the import's would.
    pub(super) fn row<'r>(
        &mut self,
        rowid: i64,
        ds: &[u8],
        cell: impl Fn(usize) -> Result<ValueRef<'r>>,
        id_of: &dyn Fn(i64) -> Option<String>,
        db: &Path,
    ) -> Result<()> {
        let plan = self.plan;
        let lookups = self.lookups;
        let at = match &self.last {
            Some((name, at)) if name.as_slice() == ds => *at,
            _ => {
                let at = match self.index.get(ds) {
                    Some(&at) => at,
                    None => {
                        let name = String::from_utf8_lossy(ds).into_owned();
                        self.building.push((
                            name,
                            Vec::new(),
                            plan.sources
                                .iter()
                                .map(|s| Builder::new(s.1, s.3))
                                .collect(),
                        ));
                        self.index.insert(ds.to_vec(), self.building.len() - 1);
                        self.building.len() - 1
                    }
                };
                self.last = Some((ds.to_vec(), at));
                at
            }
        };
        let (name, ids, builders) = &mut self.building[at];
        if self.bad.contains_key(name.as_str()) {
            return Ok(());
        }
        let memo_cfg = &mut self.memo_cfg;
        let memo_step = &mut self.memo_step;
        let mut failed: Option<(From, &'static str, &'static str)> = None;
        for ((from, _, col, _), b) in plan.sources.iter().zip(builders.iter_mut()) {
            let v = if *col == usize::MAX {
                ValueRef::Null
            } else {
                cell(*col)?
            };
            // A facet's text equal to the previous row's is the same valid
            // UTF-8: its code is reused before any check.
            if let Builder::Dict(d) = b {
                if matches!(from, From::Column(_)) {
                    if d.repeats(&v) {
                        continue;
                    }
                    if let ValueRef::Text(t) = v {
                        match d.append_text(t) {
                            Ok(()) => continue,
                            Err(found) => {
                                failed = Some((*from, found, "text"));
                                break;
                            }
                        }
                    }
                }
            }
            let ok = match (from, b) {
                (From::Nothing, b @ (Builder::Str(_) | Builder::Dict(_))) => {
                    b.append_str(None).map_err(|f| (f, "text"))
                }
                (From::Nothing, Builder::Int(b)) => {
                    b.append_null();
                    Ok(())
                }
                (From::Nothing, Builder::Float(b)) => {
                    b.append_null();
                    Ok(())
                }
                (From::ConfigName, b @ (Builder::Str(_) | Builder::Dict(_))) => {
                    let got: &Looked<String> = match v {
                        ValueRef::Text(k) => {
                            if memo_cfg.as_ref().is_none_or(|(key, _)| key.as_slice() != k) {
                                let got = lookups
                                    .configs
                                    .get()
                                    .and_then(|m| m.get(k))
                                    .cloned()
                                    .unwrap_or(Ok(None));
                                *memo_cfg = Some((k.to_vec(), got));
                            }
                            &memo_cfg.as_ref().expect("just set").1
                        }
                        _ => &Ok(None),
                    };
                    match got {
                        Ok(t) => b.append_str(t.as_deref()).map_err(|f| (f, "text")),
                        Err(f) => Err((*f, "text")),
                    }
                }
                (From::StepIdx, Builder::Int(b)) => {
                    let got: Looked<i64> = match v {
                        ValueRef::Text(k) => match &memo_step {
                            Some((key, got)) if key.as_slice() == k => *got,
                            _ => {
                                let got = lookups
                                    .steps
                                    .get()
                                    .and_then(|m| m.get(k))
                                    .copied()
                                    .unwrap_or(Ok(None));
                                *memo_step = Some((k.to_vec(), got));
                                got
                            }
                        },
                        _ => Ok(None),
                    };
                    got.map(|n| b.append_option(n))
                        .map_err(|f| (f, "an integer"))
                }
                (From::Metadata, b @ (Builder::Str(_) | Builder::Dict(_))) => {
                    text(v).map_err(|f| (f, "text")).and_then(|t| {
                        b.append_str(t.map(|c| refit_metadata(&c)).as_deref())
                            .map_err(|f| (f, "text"))
                    })
                }
                (_, b @ (Builder::Str(_) | Builder::Dict(_))) => text(v)
                    .map_err(|f| (f, "text"))
                    .and_then(|t| b.append_str(t.as_deref()).map_err(|f| (f, "text"))),
                (_, Builder::Int(b)) => int(v)
                    .map(|n| b.append_option(n))
                    .map_err(|f| (f, "an integer")),
                (_, Builder::Float(b)) => float(v)
                    .map(|x| b.append_option(x))
                    .map_err(|f| (f, "a number")),
            };
            if let Err((found, want)) = ok {
                failed = Some((*from, found, want));
                break;
            }
        }
        match failed {
            None => ids.push(rowid),
            Some((from, found, want)) => {
                let e = Error::corrupt(
                    db,
                    format!(
                        "prediction {}: column {}: {found} where {want} was expected",
                        id_of(rowid).as_deref().unwrap_or("?"),
                        error_name(from)
                    ),
                );
                self.bad.insert(name.clone(), e);
            }
        }
        Ok(())
    }

    /// The rows taken, by dataset, and the bad datasets.
    pub(super) fn finish(self) -> Pass {
        let mut out = Pass {
            parts: HashMap::new(),
            bad: self.bad,
        };
        for (name, rowids, mut builders) in self.building {
            if out.bad.contains_key(&name) {
                continue;
            }
            let columns = builders.iter_mut().map(Builder::finish).collect();
            out.parts.insert(name, Part { rowids, columns });
        }
        out
    }
}
