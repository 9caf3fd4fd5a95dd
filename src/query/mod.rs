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
mod hint;
mod model;
mod prune;

use footers::{footer_count, footer_groups, footer_top};
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
use crate::metric::{Direction, Directions};
use crate::reader::info::FooterInfo;
use crate::reader::info::MetricFact;
use crate::reader::workspace::{FileError, Workspace};
use crate::summary::SummaryState;
pub use cache::{CacheStats, ColumnCache};
pub use filter::{Filters, Range};
pub use output::to_csv;

/// A file that survived pruning.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) dataset: String,
    pub(crate) path: PathBuf,
    pub(crate) info: Arc<FooterInfo>,
    /// Decoded columns kept between queries, when the engine has them.
    pub(crate) cache: Option<Arc<cache::ColumnCache>>,
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

    /// The files that may hold matching rows, from footers alone.
    fn plan(&self, f: &Filters) -> Result<(Vec<Candidate>, Provenance)> {
        let (all, errors) = self.candidates()?;
        Ok(Self::prune(all, errors, f))
    }

    /// Every file whose footer was read, as a candidate, and the files
    /// whose footer could not be: one footer read of the workspace (from
    /// the cache when the workspace keeps one), shared by the queries of
    /// one answer.
    fn candidates(&self) -> Result<(Vec<Candidate>, Vec<FileError>)> {
        let (footers, mut errors) = self.ws.footers()?;
        let mut out = Vec::with_capacity(footers.len());
        for ff in footers {
            match ff.footer {
                Ok(info) => out.push(Candidate {
                    dataset: ff.file.dataset.clone(),
                    path: ff.file.path.clone(),
                    info,
                    cache: self.cache.clone(),
                    cancel: self.cancel.clone(),
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
        let (cands, _) = self.plan(f)?;
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
        let (cands, mut prov) = self.plan(&q.filters)?;
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
            // have their schema checked, in parallel.
            let checked = self.ws.par_map(&cands, |c| {
                if c.state().is_some() {
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
        let (cands, _) = self.plan(f)?;
        Ok(self.metrics_exact(&cands, f)?.into_keys().collect())
    }

    /// [`Self::top`] once per metric the rows hold (each by its own
    /// direction): what a user asking for "the best predictions" of a
    /// workspace that mixes metrics wants. A query that names one metric,
    /// or rows of one metric, give one list.
    ///
    /// # Errors
    /// As [`Self::top`].
    /// The workspace's footers are read once for all the lists.
    pub fn top_by_metric(&self, q: &TopQuery) -> Result<Vec<(Option<String>, TopAnswer)>> {
        check_score(&q.score, "rank by")?;
        let (all, errors) = self.candidates()?;
        let (cands, prov) = Self::prune(all.clone(), errors.clone(), &q.filters);
        let metrics: Vec<String> = self
            .metrics_exact(&cands, &q.filters)?
            .into_keys()
            .collect();
        if metrics.len() <= 1 {
            return Ok(vec![(
                metrics.into_iter().next(),
                self.top_in(q, cands, prov)?,
            )]);
        }
        metrics
            .into_iter()
            .map(|m| {
                let mut one = q.clone();
                one.filters = one.filters.with("metric", [m.clone()])?;
                let (cands, prov) = Self::prune(all.clone(), errors.clone(), &one.filters);
                Ok((Some(m), self.top_in(&one, cands, prov)?))
            })
            .collect()
    }

    /// The best `k` rows by the score, in the metric's direction.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] when the rows mix directions and none is
    /// given, or for an unknown score column; as [`Self::page`].
    pub fn top(&self, q: &TopQuery) -> Result<TopAnswer> {
        check_score(&q.score, "rank by")?;
        let (cands, prov) = self.plan(&q.filters)?;
        self.top_in(q, cands, prov)
    }

    /// [`Self::top`] over planned candidates.
    fn top_in(
        &self,
        q: &TopQuery,
        cands: Vec<Candidate>,
        mut prov: Provenance,
    ) -> Result<TopAnswer> {
        let direction = self.direction(&cands, &q.filters, q.direction)?;
        let answer = |records, served_by, prov| TopAnswer {
            records,
            direction,
            served_by,
            provenance: prov,
        };
        let Some(dir) = direction else {
            return Ok(answer(Vec::new(), ServedBy::Pruned, prov));
        };
        // A best list holds one entry per model instance (its train, val
        // and test rows carry the same scores): rows are asked for until k
        // instances are found or the rows run out; one partition's rows
        // are one per instance in what nirs4all writes.
        let one_partition = q.filters.get("partition").is_some_and(|p| p.len() == 1);
        let mut want = if one_partition {
            q.k
        } else {
            q.k.saturating_mul(3)
        };
        let mut served = ServedBy::Footers;
        loop {
            let wide = TopQuery {
                k: want,
                ..q.clone()
            };
            let (records, errors) = match footer_top(&cands, &wide, dir) {
                Some(r) if served == ServedBy::Footers => (r, None),
                _ => {
                    served = ServedBy::Scan;
                    let scan::Scanned {
                        value: records,
                        errors,
                    } = scan::top(self.ws, &cands, &wide, dir)?;
                    self.check_cancel()?;
                    (records, Some(errors))
                }
            };
            let rows = records.len();
            let mut best = crate::summary::topk::one_per_instance(records);
            if best.len() >= q.k || rows < want || want >= q.k.saturating_mul(64) {
                best.truncate(q.k);
                if let Some(errors) = errors {
                    self.absorb(&mut prov, cands.len(), errors);
                }
                return Ok(answer(best, served, prov));
            }
            want = want.saturating_mul(2);
        }
    }

    /// Counts and score statistics per group.
    ///
    /// # Errors
    /// As [`Self::top`] (a direction is needed for `best` unless only
    /// count and mean are asked).
    pub fn group(&self, q: &GroupQuery) -> Result<GroupAnswer> {
        check_score(&q.score, "aggregate")?;
        let (cands, prov) = self.plan(&q.filters)?;
        self.group_in(q, cands, prov)
    }

    /// [`Self::group`] over planned candidates.
    fn group_in(
        &self,
        q: &GroupQuery,
        cands: Vec<Candidate>,
        prov: Provenance,
    ) -> Result<GroupAnswer> {
        if q.key != GroupKey::Metric && !cands.is_empty() {
            // Averages and bests within one metric only.
            let metrics = self.metrics_exact(&cands, &q.filters)?;
            if metrics.len() > 1 {
                return Err(Error::InvalidQuery(format!(
                    "the rows mix metrics ({}): averages and bests are per metric (filter --metric, or ask for one grouping per metric)",
                    metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        self.group_of(q, cands, prov)
    }

    /// [`Self::group`] within one metric at a time and, over every
    /// partition (no partition asked), within one partition at a time:
    /// averages and bests never pool scores of different metrics, and a
    /// model instance's train, val and test rows (which carry the same
    /// scores) are not counted as three observations of one group. Each
    /// grouping comes with its split, in (metric, partition) order; rows
    /// without a metric (or partition) form a grouping of their own, last,
    /// so no row is left out. Rows of one metric and one partition give one
    /// grouping, answered as [`Self::group`] (footers where they can). Else
    /// one pass over each file reads the metric and partition columns
    /// besides the key's and buckets the rows by their dictionary codes.
    ///
    /// # Errors
    /// As [`Self::group`].
    pub fn group_by_metric(&self, q: &GroupQuery) -> Result<GroupsByMetric> {
        check_score(&q.score, "aggregate")?;
        let (cands, prov) = self.plan(&q.filters)?;
        self.group_by_metric_in(q, cands, prov)
    }

    /// [`Self::group_by_metric`] over planned candidates.
    fn group_by_metric_in(
        &self,
        q: &GroupQuery,
        cands: Vec<Candidate>,
        mut prov: Provenance,
    ) -> Result<GroupsByMetric> {
        let metrics = self.metrics_exact(&cands, &q.filters)?;
        let by_metric = q.key != GroupKey::Metric && metrics.len() > 1;
        // Grouped by metric over several: each group's best by its own
        // metric's direction (below), no one metric named.
        let per_group = q.key == GroupKey::Metric && metrics.len() > 1 && q.direction.is_none();
        let asked = q.filters.get("partition");
        // Several partitions (every one, or more than one asked): one
        // grouping each.
        let by_partition =
            q.key != GroupKey::Partition && asked.is_none_or(|p| p.len() > 1) && !cands.is_empty();
        let one_partition = asked.and_then(|p| (p.len() == 1).then(|| p[0].clone()));
        if !by_metric && !by_partition {
            let split = GroupSplit {
                metric: (q.key != GroupKey::Metric)
                    .then(|| metrics.keys().next().cloned())
                    .flatten(),
                partition: one_partition,
            };
            let answer = self.group_in(q, cands, prov)?;
            return Ok(GroupsByMetric {
                groupings: vec![(split, answer)],
            });
        }
        let forced = q.direction;
        let only = q.count_and_mean_only;
        let direction = |m: Option<&str>| -> Option<Direction> {
            if only || per_group {
                return None;
            }
            forced.or_else(|| match m {
                Some(m) => metrics.get(m).copied(),
                None if !by_metric => metrics.values().next().copied(),
                None => None,
            })
        };
        // Per group: the scan keeps the score closest to zero, and min and
        // max; each group's best is picked by its metric below.
        let scan_direction = |m: Option<&str>| {
            if per_group && !only {
                Some(Direction::TowardZero)
            } else {
                direction(m)
            }
        };
        let scan::Scanned { value, errors } =
            scan::group_split(self.ws, &cands, q, by_metric, by_partition, scan_direction);
        self.absorb(&mut prov, cands.len(), errors);
        self.check_cancel()?;
        let single = metrics.keys().next().cloned().filter(|_| !per_group);
        let groupings = value
            .into_iter()
            .map(|((m, p), mut groups)| {
                if per_group && !only {
                    for g in &mut groups {
                        g.best = match g.key.as_ref().and_then(|k| metrics.get(k)) {
                            Some(Direction::Maximize) => g.max,
                            Some(Direction::Minimize) => g.min,
                            Some(Direction::TowardZero) => g.best,
                            None => None,
                        };
                    }
                }
                let direction = direction(m.as_deref());
                let split = GroupSplit {
                    metric: if by_metric { m } else { single.clone() },
                    partition: if by_partition {
                        p
                    } else {
                        one_partition.clone()
                    },
                };
                let answer = GroupAnswer {
                    groups,
                    direction,
                    served_by: ServedBy::Scan,
                    provenance: prov.clone(),
                };
                (split, answer)
            })
            .collect::<Vec<_>>();
        // Nothing matched: one empty grouping (with the provenance).
        let groupings = if groupings.is_empty() {
            vec![(
                GroupSplit {
                    metric: single,
                    partition: one_partition,
                },
                GroupAnswer {
                    groups: Vec::new(),
                    direction: direction(None),
                    served_by: if cands.is_empty() {
                        ServedBy::Pruned
                    } else {
                        ServedBy::Scan
                    },
                    provenance: prov,
                },
            )]
        } else {
            groupings
        };
        Ok(GroupsByMetric { groupings })
    }

    /// [`Self::group_by_metric`] as JSON: one grouping as [`Self::group_json`]
    /// answers it, with its `metric` and `partition`; several as
    /// `{"by_metric": [...]}`, each grouping so. With a column cache, the
    /// bytes are kept as [`Self::group_json`] keeps its own.
    ///
    /// # Errors
    /// As [`Self::group`].
    pub fn group_by_metric_json(&self, q: &GroupQuery) -> Result<bytes::Bytes> {
        check_score(&q.score, "aggregate")?;
        let (cands, prov) = self.plan(&q.filters)?;
        let cached =
            |what: &str, make: &dyn Fn() -> Result<bytes::Bytes>| -> Result<bytes::Bytes> {
                let Some(cache) = self.cache.clone() else {
                    return make();
                };
                let files = {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    for c in &cands {
                        (&c.path, &c.info.key).hash(&mut h);
                    }
                    h.finish()
                };
                let what = format!(
                    "{what} {q:?} {:?} over {} files {files:x} {}",
                    self.directions,
                    cands.len(),
                    serde_json::to_string(&prov).unwrap_or_default()
                );
                let root = self.ws.root();
                let key = crate::reader::cache::FileKey::default();
                if let Some(bytes) = cache.derived::<bytes::Bytes>(root, &key, &what) {
                    return Ok(bytes.as_ref().clone());
                }
                let bytes = make()?;
                cache.put_derived(root, &key, &what, Arc::new(bytes.clone()), bytes.len());
                Ok(bytes)
            };
        cached("groups by metric", &|| {
            let answer = self.group_by_metric_in(q, cands.clone(), prov.clone())?;
            Ok(answer.to_json(self.ws).into())
        })
    }

    /// [`Self::group`] as JSON ([`GroupAnswer::to_json`]). With a column
    /// cache, the bytes are kept under the query and the version of every
    /// file the plan chose (path and file key) with the plan's provenance:
    /// a repeated group-by costs its plan (the footers, cached) and a copy,
    /// where grouping 190k configs of 100 files and writing their 27 MB of
    /// JSON took 115 ms from cached columns. A changed file changes the
    /// key, so an answer is never served for files it was not computed on.
    ///
    /// # Errors
    /// As [`Self::group`].
    pub fn group_json(&self, q: &GroupQuery) -> Result<bytes::Bytes> {
        check_score(&q.score, "aggregate")?;
        let (cands, prov) = self.plan(&q.filters)?;
        let Some(cache) = self.cache.clone() else {
            return Ok(self.group_of(q, cands, prov)?.to_json(self.ws).into());
        };
        let files = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for c in &cands {
                (&c.path, &c.info.key).hash(&mut h);
            }
            h.finish()
        };
        let what = format!(
            "group answer {q:?} {:?} over {} files {files:x} {}",
            self.directions,
            cands.len(),
            serde_json::to_string(&prov).unwrap_or_default()
        );
        let root = self.ws.root();
        let key = crate::reader::cache::FileKey::default();
        if let Some(bytes) = cache.derived::<bytes::Bytes>(root, &key, &what) {
            return Ok(bytes.as_ref().clone());
        }
        let bytes = bytes::Bytes::from(self.group_of(q, cands, prov)?.to_json(self.ws));
        cache.put_derived(root, &key, &what, Arc::new(bytes.clone()), bytes.len());
        Ok(bytes)
    }

    fn group_of(
        &self,
        q: &GroupQuery,
        cands: Vec<Candidate>,
        mut prov: Provenance,
    ) -> Result<GroupAnswer> {
        // Grouped by metric over several metrics: each group's best by its
        // own metric's direction (the scan keeps min, max and the score
        // closest to zero; the right one is picked per group below).
        let per_group =
            if q.key == GroupKey::Metric && !q.count_and_mean_only && q.direction.is_none() {
                Some(self.metrics_of(&cands, &q.filters)?).filter(|m| m.len() > 1)
            } else {
                None
            };
        let direction = if q.count_and_mean_only || per_group.is_some() {
            None
        } else {
            self.direction(&cands, &q.filters, q.direction)?
        };
        let answer = |groups, served_by, prov| GroupAnswer {
            groups,
            direction,
            served_by,
            provenance: prov,
        };
        if cands.is_empty() {
            return Ok(answer(Vec::new(), ServedBy::Pruned, prov));
        }
        if q.count_and_mean_only {
            if let Some(groups) = footer_groups(&cands, q) {
                return Ok(answer(groups, ServedBy::Footers, prov));
            }
        }
        let scan_direction = per_group
            .as_ref()
            .map_or(direction, |_| Some(Direction::TowardZero));
        let scan::Scanned {
            value: mut groups,
            errors,
        } = scan::group(self.ws, &cands, q, scan_direction);
        if let Some(dirs) = &per_group {
            for g in &mut groups {
                g.best = match g.key.as_ref().and_then(|k| dirs.get(k)) {
                    Some(Direction::Maximize) => g.max,
                    Some(Direction::Minimize) => g.min,
                    Some(Direction::TowardZero) => g.best,
                    None => None,
                };
            }
        }
        self.absorb(&mut prov, cands.len(), errors);
        self.check_cancel()?;
        Ok(answer(groups, ServedBy::Scan, prov))
    }
}
