//! `n4a.Workspace` and `n4a.refresh`: keywords converted once into the
//! library's queries (the same filters, sort, offset and limit as the
//! CLI, by the same names: [`n4a::query::filter::FIELDS`]), the engine
//! run with the GIL released, the answer returned as a `pyarrow.Table`
//! with the rest of the answer in its schema metadata.

use std::path::PathBuf;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use n4a::metric::{Direction, Directions};
use n4a::query::filter::FIELDS;
use n4a::query::{Filters, GroupKey, GroupQuery, PageQuery, QueryEngine, Sort, TopQuery};

use crate::convert::{json_to_py, table_with_info, without};
use crate::errors::OrRaise;

/// A workspace folder (`.meta.parquet` files, or a nirs4all `store.sqlite`
/// workspace, read through its cached mirror as the CLI does, re-checked by
/// every call: `n4a::Workspace` decides which). Footers are
/// kept between calls and re-read only for files that changed, so a
/// long-lived object answers repeated questions from memory.
#[pyclass(frozen, module = "n4a._n4a")]
pub(crate) struct Workspace {
    /// As given.
    path: PathBuf,
    /// Footers with summaries decoded (`summary`).
    summaries: n4a::Workspace,
    /// Footers without nirs4all's 1.0 JSON summaries (queries: as the CLI).
    rows: n4a::Workspace,
    /// Directions of metrics outside the built-in table.
    directions: Directions,
}

#[pymethods]
impl Workspace {
    /// Opens the workspace at `path`. Costs a `stat`, or for a store the
    /// import into its mirror when the mirror is missing or stale.
    #[new]
    #[pyo3(signature = (path, *, recursive = false, threads = 0, directions = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        recursive: bool,
        threads: usize,
        directions: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let directions = parse_directions(directions)?;
        // A store is imported into its mirror now (only what changed since
        // the mirror was made) and re-checked by every call after.
        let open = |summaries: bool| -> n4a::Result<n4a::Workspace> {
            Ok(n4a::Workspace::open(&path)?
                .with_recursive(recursive)
                .with_threads(threads)
                .with_summaries(summaries)
                .with_directions(&directions)
                .with_recheck(Some(std::time::Duration::ZERO)))
        };
        let (summaries, rows) = py
            .detach(|| -> n4a::Result<_> {
                let summaries = open(true)?;
                summaries.sync()?;
                Ok((summaries, open(false)?))
            })
            .or_raise()?;
        Ok(Workspace {
            path,
            summaries,
            rows,
            directions,
        })
    }

    /// The folder as given.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The workspace summary from the footers alone, as a dict in the
    /// dashboard's shape (`n4a summary --format json`).
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = py
            .detach(|| -> n4a::Result<Vec<u8>> {
                let mut s = std::sync::Arc::unwrap_or_clone(self.summaries.summary()?);
                s.workspace = self.path.clone();
                Ok(s.to_json(n4a::workspace::merge::Form::Full))
            })
            .or_raise()?;
        json_to_py(py, &String::from_utf8_lossy(&text))
    }

    /// A filtered, sorted page (`n4a query`).
    // One argument per Python keyword: the signature is the API.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (*, sort = None, offset = 0, limit = 50, columns = None, r#where = None, **filters))]
    fn query<'py>(
        &self,
        py: Python<'py>,
        sort: Option<String>,
        offset: usize,
        limit: usize,
        columns: Option<Vec<String>>,
        r#where: Option<&Bound<'py, PyAny>>,
        filters: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let q = PageQuery {
            filters: to_filters(filters, r#where)?,
            columns,
            sort: sort.as_deref().map(Sort::parse).transpose().or_raise()?,
            offset,
            limit,
        };
        let page = py.detach(|| self.engine().page_arrow(&q)).or_raise()?;
        let info = serde_json::json!({
            "total": page.total,
            "limit": page.limit,
            "offset": page.offset,
            "has_more": page.has_more,
            "served_by": page.served_by,
            "provenance": page.provenance,
        });
        table_with_info(py, page.records, &info)
    }

    /// The best `k` model instances by the score in its metric's
    /// direction (`n4a top`): the val partition unless `partition` says
    /// otherwise (`"all"`: every row). A workspace of several metrics gives
    /// one list per metric, in one table led by a `metric` column.
    #[pyo3(signature = (k = 10, *, direction = None, score = "val_score", r#where = None, **filters))]
    fn top<'py>(
        &self,
        py: Python<'py>,
        k: usize,
        direction: Option<String>,
        score: &str,
        r#where: Option<&Bound<'py, PyAny>>,
        filters: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let q = TopQuery {
            filters: to_filters(filters, r#where)?.for_ranking().0,
            k,
            direction: direction.as_deref().map(parse_direction).transpose()?,
            score: score.to_string(),
        };
        let lists = py
            .detach(|| -> n4a::Result<_> {
                let lists = self.engine().top_by_metric(&q)?;
                let batches = lists
                    .iter()
                    .map(|(_, t)| t.to_batch())
                    .collect::<n4a::Result<Vec<_>>>()?;
                Ok((lists, batches))
            })
            .or_raise()?;
        let (lists, batches) = lists;
        if let ([(metric, top)], [batch]) = (lists.as_slice(), batches.as_slice()) {
            let mut info = without(to_json(top)?, "records");
            info["metric"] = serde_json::json!(metric);
            return table_with_info(py, batch.clone(), &info);
        }
        // Several metrics: one list each (by its own direction), in one
        // table led by a `metric` column.
        let mut led = Vec::with_capacity(batches.len());
        let mut by_metric = Vec::with_capacity(lists.len());
        for ((metric, top), b) in lists.iter().zip(&batches) {
            led.push(with_columns(b, &[("metric", metric.as_deref())])?);
            let mut v = without(to_json(top)?, "records");
            v["metric"] = serde_json::json!(metric);
            by_metric.push(v);
        }
        let batch = arrow_select::concat::concat_batches(&led[0].schema(), &led)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        table_with_info(py, batch, &serde_json::json!({ "by_metric": by_metric }))
    }

    /// Counts and score statistics per group (`n4a stats`), over the val
    /// partition unless `partition` says otherwise, within one metric at a
    /// time (and one partition at a time with `partition="all"`): several
    /// groupings come in one table led by `metric` and `partition` columns.
    #[pyo3(signature = (group_by, *, count_mean_only = false, direction = None, score = "val_score", r#where = None, **filters))]
    // One argument per Python keyword: the signature is the API.
    #[allow(clippy::too_many_arguments)]
    fn stats<'py>(
        &self,
        py: Python<'py>,
        group_by: &str,
        count_mean_only: bool,
        direction: Option<String>,
        score: &str,
        r#where: Option<&Bound<'py, PyAny>>,
        filters: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = GroupKey::parse(group_by).or_raise()?;
        let q = GroupQuery {
            filters: to_filters(filters, r#where)?.for_ranking().0,
            key,
            score: score.to_string(),
            count_and_mean_only: count_mean_only,
            direction: direction.as_deref().map(parse_direction).transpose()?,
        };
        let answers = py
            .detach(|| self.engine().group_by_metric(&q))
            .or_raise()?
            .groupings;
        if let [(split, g)] = answers.as_slice() {
            let batch = g.to_batch(key).or_raise()?;
            let mut info = without(to_json(&g.clone_without_groups())?, "groups");
            info["metric"] = serde_json::json!(split.metric);
            info["partition"] = serde_json::json!(split.partition);
            return table_with_info(py, batch, &info);
        }
        let mut batches = Vec::with_capacity(answers.len());
        let mut by_metric = Vec::with_capacity(answers.len());
        for (split, g) in &answers {
            let b = g.to_batch(key).or_raise()?;
            batches.push(with_columns(
                &b,
                &[
                    ("metric", split.metric.as_deref()),
                    ("partition", split.partition.as_deref()),
                ],
            )?);
            let mut v = without(to_json(&g.clone_without_groups())?, "groups");
            v["metric"] = serde_json::json!(split.metric);
            v["partition"] = serde_json::json!(split.partition);
            by_metric.push(v);
        }
        let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        table_with_info(py, batch, &serde_json::json!({ "by_metric": by_metric }))
    }

    fn __repr__(&self) -> String {
        format!("Workspace({:?})", self.path.display().to_string())
    }
}

impl Workspace {
    /// A query engine over the row workspace, with the caller's directions.
    fn engine(&self) -> QueryEngine<'_> {
        QueryEngine::new(&self.rows).with_directions(self.directions.clone())
    }
}

/// Refreshes the workspace's summaries (`n4a refresh`) and returns the
/// report as a dict (`n4a refresh --format json`).
#[pyfunction]
#[pyo3(signature = (workspace, *, verify = false, fix = false, dry_run = false, recursive = false, threads = 0, directions = None))]
// One argument per Python keyword: the signature is the API.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refresh<'py>(
    py: Python<'py>,
    workspace: PathBuf,
    verify: bool,
    fix: bool,
    dry_run: bool,
    recursive: bool,
    threads: usize,
    directions: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    use n4a::refresh::{refresh_workspace, Mode, RefreshOptions};
    if fix && !verify {
        return Err(n4a::Error::InvalidOption(
            "fix=True needs verify=True".into(),
        ))
        .or_raise();
    }
    let mut opts = RefreshOptions {
        mode: if verify { Mode::Verify } else { Mode::Refresh },
        write: !dry_run && (!verify || fix),
        threads,
        recursive,
        ..RefreshOptions::default()
    };
    opts.summary.directions = parse_directions(directions)?;
    let report = py
        .detach(|| refresh_workspace(&workspace, &opts, &|_, _| {}))
        .or_raise()?;
    let text = serde_json::to_string(&report).map_err(|e| PyValueError::new_err(e.to_string()))?;
    json_to_py(py, &text)
}

/// `{"metric": "max"|"min"|"zero"}` as directions.
pub(crate) fn parse_directions(d: Option<&Bound<'_, PyDict>>) -> PyResult<Directions> {
    let mut out = Directions::new();
    for (k, v) in d.into_iter().flat_map(|d| d.iter()) {
        let metric: String = k.extract()?;
        let dir: String = v.extract()?;
        out = out.with(metric, parse_direction(&dir)?);
    }
    Ok(out)
}

fn parse_direction(s: &str) -> PyResult<Direction> {
    Direction::parse(s)
        .ok_or_else(|| {
            n4a::Error::InvalidQuery(format!("direction {s:?}: expected max, min or zero"))
        })
        .or_raise()
}

/// Keyword filters (`dataset=`, `model=`, ... as the CLI's flags: a string
/// or a list of strings each) and `where` (a string or a list) as
/// [`Filters`]; an unknown keyword is an `InvalidQueryError` naming the
/// known ones.
fn to_filters(
    filters: Option<&Bound<'_, PyDict>>,
    r#where: Option<&Bound<'_, PyAny>>,
) -> PyResult<Filters> {
    let mut f = Filters::default();
    for (k, v) in filters.into_iter().flat_map(|d| d.iter()) {
        let key: String = k.extract()?;
        let Some(field) = FIELDS.iter().find(|f| f.param == key) else {
            return Err(n4a::Error::InvalidQuery(format!(
                "unknown keyword {key:?} (filters: {}; and sort, offset, limit, columns, where)",
                FIELDS.map(|f| f.param).join(", ")
            )))
            .or_raise();
        };
        f = f.with(field.name, strings(&v, &key)?).or_raise()?;
    }
    if let Some(w) = r#where {
        for expr in strings(w, "where")? {
            f = f.with_where(&expr).or_raise()?;
        }
    }
    Ok(f)
}

/// A string, or a list or tuple of strings.
fn strings(v: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if v.is_none() {
        return Ok(Vec::new());
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(vec![s.extract::<String>()?]);
    }
    if v.cast::<PyList>().is_ok() || v.is_instance_of::<pyo3::types::PyTuple>() {
        return v.extract::<Vec<String>>();
    }
    Err(PyTypeError::new_err(format!(
        "{name}: expected a string or a list of strings, got {}",
        v.get_type().name()?
    )))
}

/// An answer as JSON.
fn to_json(v: &impl serde::Serialize) -> PyResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// `b` led by constant string columns (a grouping's metric, partition).
fn with_columns(b: &RecordBatch, lead: &[(&str, Option<&str>)]) -> PyResult<RecordBatch> {
    let mut fields: Vec<Field> = lead
        .iter()
        .map(|(name, _)| Field::new(*name, arrow_schema::DataType::Utf8, true))
        .collect();
    fields.extend(b.schema().fields().iter().map(|f| f.as_ref().clone()));
    let mut cols: Vec<ArrayRef> = lead
        .iter()
        .map(|(_, v)| std::sync::Arc::new(StringArray::from(vec![*v; b.num_rows()])) as ArrayRef)
        .collect();
    cols.extend(b.columns().iter().cloned());
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), cols)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}
