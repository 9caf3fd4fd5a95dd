//! Queries over a workspace: filtered, sorted pages with totals,
//! direction-aware top-k, and group-bys.
//!
//! Footers first: a dataset filter keeps only that dataset's file; a file
//! whose summary state shows none of the requested models, configs,
//! partitions, folds, task types or metrics, or whose score range cannot
//! meet a `--where` range, is never opened; and a query the footers answer
//! exactly (counts with at most one facet filter, top-k within the stored k,
//! counts and means by model) reads no row at all. The rest is scanned
//! (`scan`) file by file on the workspace's pool, reading only the columns
//! the filter and the sort need (`columns`), with string filters decided
//! once per dictionary value and a bounded selection of each file's best
//! `offset + limit` rows; then only the page's rows are read whole.
//! Every answer says which path served it ([`ServedBy`]).

pub(crate) mod cache;
mod columns;
pub mod filter;
pub(crate) mod output;
mod scan;

mod footers;
mod groups;
mod hint;
mod model;
mod prune;
mod tops;

use footers::footer_count;
pub use hint::Unmatched;
use model::check_column;
pub use model::{
    ArrowPage, Group, GroupAnswer, GroupKey, GroupQuery, GroupSplit, GroupsByMetric, Page,
    PageQuery, Provenance, ServedBy, Sort, TopAnswer, TopLists, TopQuery,
};
use prune::{facts_may_match, may_match};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::footer::info::Footer;
use crate::footer::info::MetricFact;
use crate::metric::{Direction, Directions};
use crate::summary::SummaryState;
use crate::workspace::{FileError, Workspace};
pub use cache::{CacheStats, ColumnCache};
pub use filter::{Filters, Range};
pub use output::to_csv;

/// A file that survived pruning.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) dataset: String,
    pub(crate) path: PathBuf,
    pub(crate) info: Arc<Footer>,
    /// Decoded columns kept between queries, when the engine has them.
    pub(crate) cache: Option<Arc<cache::ColumnCache>>,
    /// Where the rows are when not in a `.meta.parquet` file at `path` (a
    /// store answered in place): every column read goes there instead.
    pub(crate) rows: Option<Arc<dyn crate::rows::source::RowSource>>,
    /// Set when the query is to stop (see [`QueryEngine::with_cancel`]).
    pub(crate) cancel: Option<Arc<AtomicBool>>,
}

impl Candidate {
    /// [`Error::Cancelled`] once the query's cancel flag is set: every
    /// per-file step checks it before reading, so a stopped query ends
    /// after the files being read at that moment.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => {
                Err(Error::Cancelled("cancelled while reading files".into()))
            }
            _ => Ok(()),
        }
    }

    /// The file's summary state, when it agrees with the file: its head,
    /// without runs and pipelines (see [`Self::full_state`]).
    fn state(&self) -> Option<&SummaryState> {
        self.info
            .state_head()
            .filter(|s| s.rows == self.info.num_rows)
    }

    /// The whole state, runs included (decoded on first use and kept with
    /// the footer); `None` without state or when it does not decode.
    fn full_state(&self) -> Option<Arc<SummaryState>> {
        self.state()?;
        self.info
            .summary
            .as_ref()?
            .full_state(&self.path, &self.info.key)
            .ok()
            .flatten()
    }
}

/// A page's rows as `F` fetches them, the total, the path that served it
/// and the provenance.
type PageOf<F> = (Vec<<F as scan::Fetch>::Row>, u64, ServedBy, Provenance);

/// The answer to `q`: its rows, `total` matches, and how it was served.
/// A score column a query may rank by or aggregate, else
/// [`Error::InvalidQuery`] saying what was asked (`what`: "rank by").
fn check_score(score: &str, what: &str) -> Result<()> {
    if filter::SCORES.contains(&score) {
        Ok(())
    } else {
        Err(Error::InvalidQuery(format!("cannot {what} {score:?}")))
    }
}

fn page_answer<R>(
    q: &PageQuery,
    records: R,
    total: u64,
    served_by: ServedBy,
    provenance: Provenance,
) -> Page<R> {
    Page {
        records,
        total,
        limit: q.limit,
        offset: q.offset,
        has_more: (q.offset as u64).saturating_add(q.limit as u64) < total,
        served_by,
        provenance,
    }
}

/// Runs queries on a workspace. Holds the workspace (and so its footer
/// cache); counts the files it scans, so tests can check that footer
/// answers read no row.
///
/// ```
/// use n4a::query::{Filters, PageQuery, Sort, TopQuery};
///
/// # fn main() -> n4a::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # n4a::generate::generate(dir.path(), &n4a::generate::GenOptions { datasets: 2, rows: 200, ..Default::default() })?;
/// let ws = n4a::Workspace::open(dir.path())?;
/// let engine = n4a::QueryEngine::new(&ws);
/// // A sorted page of validation rows, with the total of matches.
/// let page = engine.page(&PageQuery {
///     filters: Filters::default().with("partition", ["val"])?,
///     sort: Some(Sort::parse("val_score:asc")?),
///     limit: 10,
///     ..Default::default()
/// })?;
/// assert_eq!(page.records.len(), 10);
/// assert!(page.total >= 10);
/// // The best five regression predictions, in their metric's direction.
/// let top = engine.top(&TopQuery {
///     filters: Filters::default().with("metric", ["mse"])?,
///     k: 5,
///     direction: None,
///     score: "val_score".into(),
/// })?;
/// assert!(top.records.windows(2).all(|w| w[0].val_score <= w[1].val_score));
/// # Ok(())
/// # }
/// ```
pub struct QueryEngine<'a> {
    ws: &'a Workspace,
    directions: Directions,
    scanned: AtomicUsize,
    materialised: AtomicUsize,
    cache: Option<Arc<cache::ColumnCache>>,
    cancel: Option<Arc<AtomicBool>>,
}

impl<'a> QueryEngine<'a> {
    /// An engine over `ws`.
    pub fn new(ws: &'a Workspace) -> Self {
        QueryEngine {
            ws,
            directions: Directions::new(),
            scanned: AtomicUsize::new(0),
            materialised: AtomicUsize::new(0),
            cache: None,
            cancel: None,
        }
    }

    /// Stops queries once `flag` is set (a client gone, a time limit):
    /// each file's scan checks it before reading, and the query then
    /// returns [`Error::Cancelled`] rather than a partial answer.
    #[must_use]
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// [`Error::Cancelled`] when the cancel flag is set.
    fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(Error::Cancelled(
                "its caller went away or it ran past its time limit".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Supplies directions for metrics outside the built-in table.
    #[must_use]
    pub fn with_directions(mut self, d: Directions) -> Self {
        self.directions = d;
        self
    }

    /// Keeps the columns scans decode in `cache` and answers from it while
    /// each file is unchanged (a long-running reader: `n4a serve`).
    #[must_use]
    pub fn with_column_cache(mut self, cache: Arc<cache::ColumnCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Files whose rows were read so far, over all queries.
    pub fn files_scanned(&self) -> usize {
        self.scanned.load(Ordering::Relaxed)
    }

    /// Rows read whole (every column) so far, over all queries: a page
    /// reads its own rows whole and no other.
    pub fn rows_materialised(&self) -> usize {
        self.materialised.load(Ordering::Relaxed)
    }

    /// The files that may hold matching rows, from footers alone, for a
    /// query that reads the filters' columns and `also`.
    fn plan(&self, f: &Filters, also: &[&str]) -> Result<(Vec<Candidate>, Provenance)> {
        let mut names = scan::filter_columns(f);
        names.extend_from_slice(also);
        let (all, errors) = self.candidates(&names)?;
        Ok(Self::prune(all, errors, f))
    }

    /// Every file whose footer was read, as a candidate, and the files
    /// whose footer could not be: one footer read of the workspace (from
    /// the cache when the workspace keeps one), shared by the queries of
    /// one answer.
    /// `reading`: the columns the query will read (a store answered in
    /// place reads them with its first pass).
    fn candidates(&self, reading: &[&str]) -> Result<(Vec<Candidate>, Vec<FileError>)> {
        let (footers, mut errors) = self.ws.footers_reading(reading)?;
        let mut out = Vec::with_capacity(footers.len());
        for ff in footers {
            match ff.footer {
                Ok(info) => out.push(Candidate {
                    dataset: ff.file.dataset.clone(),
                    path: ff.file.path.clone(),
                    info,
                    cache: self.cache.clone(),
                    cancel: self.cancel.clone(),
                    rows: ff.rows.clone(),
                }),
                Err(e) => errors.push((*e).clone()),
            }
        }
        Ok((out, errors))
    }

    /// The candidates that may hold rows matching `f`, from their footers.
    fn prune(
        all: Vec<Candidate>,
        errors: Vec<FileError>,
        f: &Filters,
    ) -> (Vec<Candidate>, Provenance) {
        let mut prov = Provenance::default();
        let mut out = Vec::new();
        for c in all {
            let keep = f.get("dataset").is_none_or(|d| d.contains(&c.dataset))
                && c.state().is_none_or(|st| may_match(st, f))
                && (c.state().is_some() || facts_may_match(&c.info.columns, f))
                && f.get("config_name").is_none_or(|w| {
                    c.full_state()
                        .is_none_or(|st| w.iter().any(|n| st.runs.contains_key(n)))
                });
            if keep {
                out.push(c);
            } else {
                prov.files_pruned += 1;
            }
        }
        prov.files_considered = out.len();
        prov.errors = errors;
        (out, prov)
    }

    /// What a filtered scan over the files that survive pruning reads and
    /// how it decides each filter.
    ///
    /// # Errors
    /// As [`Self::page`].
    pub fn explain(&self, f: &Filters) -> Result<String> {
        let (cands, _) = self.plan(f, &[])?;
        if cands.is_empty() {
            return Ok("every file pruned from its footer".to_string());
        }
        Ok(scan::describe(&cands, f))
    }

    /// A page of rows with the total number of matches.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for unknown columns; I/O on the workspace
    /// folder or a file that cannot be read.
    pub fn page(&self, q: &PageQuery) -> Result<Page> {
        let columns = scan::record_columns(q);
        let (records, total, served_by, provenance) = self.page_of(q, &scan::AsRecords(columns))?;
        Ok(page_answer(q, records, total, served_by, provenance))
    }

    /// [`Self::page`] as one Arrow batch: the asked columns in order
    /// (`dataset` as a string column, the file's 35 with the contract's
    /// types, `best_params` and `scores` as the JSON text the file holds),
    /// rows in the page's order. The same plan, total and provenance as
    /// [`Self::page`]; the page's rows are built into Arrow arrays once,
    /// with no JSON in between (what the Python package hands over without
    /// a copy). Memory: the page's rows.
    ///
    /// # Errors
    /// As [`Self::page`].
    pub fn page_arrow(&self, q: &PageQuery) -> Result<ArrowPage> {
        let columns = scan::record_columns(q);
        let (rows, total, served_by, provenance) =
            self.page_of(q, &scan::AsPredictions(columns.clone()))?;
        let batch = output::page_batch(&rows, &columns)?;
        Ok(page_answer(q, batch, total, served_by, provenance))
    }

    /// The page's rows fetched by `fetch`, the total, the path that served
    /// it and the provenance.
    fn page_of<F: scan::Fetch>(&self, q: &PageQuery, fetch: &F) -> Result<PageOf<F>> {
        if let Some(s) = &q.sort {
            check_column(&s.column)?;
        }
        for c in q.columns.iter().flatten() {
            check_column(c)?;
        }
        let sorted: Vec<&str> = q.sort.iter().map(|s| s.column.as_str()).collect();
        let (cands, mut prov) = self.plan(&q.filters, &sorted)?;
        if cands.is_empty() {
            return Ok((Vec::new(), 0, ServedBy::Pruned, prov));
        }
        if q.limit == 0 {
            if let Some(total) = footer_count(&cands, &q.filters) {
                return Ok((Vec::new(), total, ServedBy::Footers, prov));
            }
        }
        if q.sort.is_none() && q.filters.is_file_level_only() {
            // The total comes from the footers, so a file whose columns
            // cannot be read must be known before counting: files without
            // n4a state (which only n4a's writer, checking types, makes)
            // have their schema checked, in parallel. Rows read in place
            // were typed as they were read.
            let checked = self.ws.par_map(&cands, |c| {
                if c.state().is_some() || c.rows.is_some() {
                    Ok(())
                } else {
                    scan::check_file(&c.path)
                }
            });
            let mut good = Vec::with_capacity(cands.len());
            let mut bad = Vec::new();
            for (c, r) in cands.into_iter().zip(checked) {
                match r {
                    Ok(()) => good.push(c),
                    Err(e) => bad.push(FileError::new(&c.path, Some(&c.dataset), &e)),
                }
            }
            let cands = good;
            prov.files_considered -= bad.len();
            prov.errors.extend(bad);
            // File order (the dashboard's default page): the total is in
            // the footers and the page's rows are found by counting, so
            // only they are read, from the files that hold them.
            let scan::Scanned {
                value: (records, total, touched),
                errors,
            } = scan::page_in_file_order(&cands, q, fetch);
            prov.files_considered -= errors.len();
            prov.errors.extend(errors);
            prov.files_scanned = touched;
            self.materialised
                .fetch_add(records.len(), Ordering::Relaxed);
            self.scanned.fetch_add(touched, Ordering::Relaxed);
            self.check_cancel()?;
            return Ok((records, total, ServedBy::Scan, prov));
        }
        let scan::Scanned {
            value: (records, total, whole),
            errors,
        } = scan::page(self.ws, &cands, q, fetch)?;
        self.materialised.fetch_add(whole, Ordering::Relaxed);
        self.absorb(&mut prov, cands.len(), errors);
        self.check_cancel()?;
        Ok((records, total, ServedBy::Scan, prov))
    }

    /// Counts the files a scan read and reports those it could not use
    /// (each once, however many steps of the scan failed on it).
    fn absorb(&self, prov: &mut Provenance, scanned: usize, mut errors: Vec<FileError>) {
        let mut seen = BTreeSet::new();
        errors.retain(|e| seen.insert(e.path.clone()));
        let bad = errors.len();
        prov.files_considered = prov.files_considered.saturating_sub(bad);
        prov.files_scanned = scanned.saturating_sub(bad);
        self.scanned
            .fetch_add(prov.files_scanned, Ordering::Relaxed);
        prov.errors.extend(errors);
    }

    /// The metrics of the candidates' rows (as far as footers tell; files
    /// without state by their column statistics, else a scan of the
    /// metric column), each with its direction.
    fn metrics_of(&self, cands: &[Candidate], f: &Filters) -> Result<BTreeMap<String, Direction>> {
        let mut metrics: BTreeMap<String, Direction> = BTreeMap::new();
        let wanted = f.get("metric");
        let mut unknown_files = Vec::new();
        for c in cands {
            match c.state() {
                Some(st) => {
                    for (m, ms) in &st.metrics {
                        if wanted.is_none_or(|w| w.contains(m)) {
                            metrics.insert(m.clone(), ms.direction);
                        }
                    }
                }
                None => unknown_files.push(c.clone()),
            }
        }
        // Files without state: the metrics the filter names, else the one
        // metric a file's column statistics prove, else a scan of the
        // metric column (its unreadable files are reported by the main scan).
        let named: Option<Vec<(String, Direction)>> = wanted.and_then(|w| {
            w.iter()
                .map(|m| self.directions.get(m).ok().map(|d| (m.clone(), d)))
                .collect()
        });
        let mut to_scan = Vec::new();
        for c in unknown_files {
            if let Some(named) = &named {
                metrics.extend(named.iter().cloned());
            } else if let MetricFact::One { name, .. } = &c.info.columns.metric {
                metrics.insert(name.clone(), self.directions.get(name)?);
            } else if !matches!(c.info.columns.metric, MetricFact::None) {
                to_scan.push(c);
            }
        }
        if !to_scan.is_empty() {
            for m in scan::distinct_metrics(self.ws, &to_scan, f).value {
                let d = self.directions.get(&m)?;
                metrics.insert(m, d);
            }
        }
        Ok(metrics)
    }

    /// The metrics of the rows `f` keeps among `cands`. The footers' list
    /// ([`Self::metrics_of`]) is exact for the file-level filters
    /// (dataset, metric, partition); a row filter (a model, a config, a
    /// score range) may keep the rows of fewer metrics, so where the
    /// footers name several, a count by metric over those rows decides
    /// (footer-served where it can be, else a scan of the filter and metric
    /// columns): a model scored by one metric in a workspace of several is
    /// ranked, and a filter that keeps no row refuses nothing. A file the
    /// count cannot read keeps the footers' list (its error is reported by
    /// the answer that reads it).
    fn metrics_exact(
        &self,
        cands: &[Candidate],
        f: &Filters,
    ) -> Result<BTreeMap<String, Direction>> {
        let mut metrics = self.metrics_of(cands, f)?;
        let row_level = !f.ranges.is_empty()
            || f.values
                .keys()
                .any(|k| !["dataset", "metric", "partition"].contains(&k.as_str()));
        if metrics.len() > 1 && row_level {
            let kq = GroupQuery {
                filters: f.clone(),
                key: GroupKey::Metric,
                score: "val_score".into(),
                count_and_mean_only: true,
                direction: None,
            };
            let answer = self.group_of(&kq, cands.to_vec(), Provenance::default())?;
            if answer.provenance.errors.is_empty() {
                let seen: BTreeSet<String> =
                    answer.groups.into_iter().filter_map(|g| g.key).collect();
                metrics.retain(|m, _| seen.contains(m));
            }
        }
        Ok(metrics)
    }

    /// The direction for ranking the candidates' rows: their one metric's
    /// (or `forced`). Scores of different metrics are never ranked
    /// together (an `mse` and a `balanced_accuracy` are not one scale,
    /// whatever their directions).
    fn direction(
        &self,
        cands: &[Candidate],
        f: &Filters,
        forced: Option<Direction>,
    ) -> Result<Option<Direction>> {
        let metrics = self.metrics_exact(cands, f)?;
        if metrics.len() > 1 {
            return Err(Error::InvalidQuery(format!(
                "the rows mix metrics ({}): rank one metric at a time (filter --metric, or ask for one list per metric)",
                metrics
                    .iter()
                    .map(|(m, d)| format!("{m}: {}", d.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(forced.or_else(|| metrics.into_values().next()))
    }

    /// The metrics the rows of `f` hold, in name order: what the per-metric
    /// answers split on. Cost: the plan (footers), plus a scan of the
    /// metric column of files whose footers do not tell.
    ///
    /// # Errors
    /// As [`Self::page`]; [`Error::UnknownMetricDirection`] for a metric of
    /// unknown direction.
    pub fn metrics(&self, f: &Filters) -> Result<Vec<String>> {
        let (cands, _) = self.plan(f, &["metric"])?;
        Ok(self.metrics_exact(&cands, f)?.into_keys().collect())
    }
}
