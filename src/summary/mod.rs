//! The `n4a_summary` footer: an incremental, mergeable summary of a
//! prediction file.
//!
//! [`SummaryBuilder`] observes rows one at a time in O(1) amortised work and
//! bounded memory (Welford state, a quantile sketch, per-model sums, distinct
//! sets, bounded top-k heaps per metric and partition), and renders a
//! [`Summary`]: every version-1.0 key nirs4all writes, with the same meaning,
//! plus the mergeable [`SummaryState`] under `state` so appends and
//! workspace summaries never rescan rows.
//!
//! Where nirs4all is wrong n4a differs, and says so in the summary: "best"
//! and "top" follow the metric's direction (`ranking.direction`), not the
//! maximum.
//!
//! Semantics, shared with the oracle in the tests: NaN and ±inf scores are
//! counted (`nan_count`, `inf_count`) but kept out of min/max/mean/std,
//! quartiles, averages, bests and the top lists, as pandas' NaN-skipping does
//! for NaN; null facets (a null model name, partition, ...) are not counted,
//! as pandas' `value_counts` drops them.

pub mod codec;
pub mod json;
pub mod legacy;
pub mod sketch;
pub mod topk;
pub mod welford;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metric::{Direction, Directions};
use crate::schema::Prediction;
use sketch::Sketch;
use topk::{TopEntry, TopK};
use welford::Welford;

/// The version n4a writes: 1.0's keys unchanged, plus `ranking`,
/// `metrics`, `top_by_metric` and per-score counts in the JSON, and the
/// mergeable state in its own footer key (see [`codec`]).
pub const N4A_VERSION: &str = "1.2";
/// nirs4all's summary lists ten top predictions.
pub const DEFAULT_TOP_K: usize = 10;
/// Quartiles stay exact (every value kept in memory) up to this many rows.
pub const DEFAULT_EXACT_LIMIT: u64 = 1_000_000;

/// The fields of one row that the summary looks at, borrowed.
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct RowView<'a> {
    pub id: Option<&'a str>,
    pub dataset_name: Option<&'a str>,
    pub config_name: Option<&'a str>,
    pub pipeline_uid: Option<&'a str>,
    pub model_name: Option<&'a str>,
    pub fold_id: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub metric: Option<&'a str>,
    pub task_type: Option<&'a str>,
    /// val, test, train.
    pub scores: [Option<f64>; 3],
}

impl<'a> RowView<'a> {
    /// A view of `p`.
    pub fn of(p: &'a Prediction) -> Self {
        RowView {
            id: p.id.as_deref(),
            dataset_name: p.dataset_name.as_deref(),
            config_name: p.config_name.as_deref(),
            pipeline_uid: p.pipeline_uid.as_deref(),
            model_name: p.model_name.as_deref(),
            fold_id: p.fold_id.as_deref(),
            partition: p.partition.as_deref(),
            metric: p.metric.as_deref(),
            task_type: p.task_type.as_deref(),
            scores: p.score_values(),
        }
    }
}

/// Running statistics of one score column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreState {
    /// Welford state over finite values.
    pub welford: Welford,
    /// NaN values seen.
    pub nan_count: u64,
    /// ±inf values seen.
    pub inf_count: u64,
    /// Quantile sketch over finite values.
    pub sketch: Sketch,
}

impl ScoreState {
    fn push(&mut self, x: f64) {
        if x.is_nan() {
            self.nan_count += 1;
        } else if x.is_infinite() {
            self.inf_count += 1;
        } else {
            self.welford.push(x);
            self.sketch.push(x);
        }
    }

    /// [`Self::push`] remembering the last value's sketch bucket in `memo`:
    /// a repeated value skips the logarithm.
    fn push_memo(&mut self, x: f64, memo: &mut Option<(u64, sketch::Bucket)>) {
        if !x.is_finite() {
            return self.push(x);
        }
        self.welford.push(x);
        let bits = x.to_bits();
        let b = match memo {
            Some((last, b)) if *last == bits => *b,
            _ => {
                let b = self.sketch.bucket(x);
                *memo = Some((bits, b));
                b
            }
        };
        self.sketch.push_bucket(b);
    }

    fn merge(&mut self, other: &ScoreState) -> bool {
        self.welford.merge(&other.welford);
        self.nan_count += other.nan_count;
        self.inf_count += other.inf_count;
        self.sketch.merge(&other.sketch)
    }
}

/// Per-model running sums, so averages merge exactly (weighted by count).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    /// Rows of this model.
    pub count: u64,
    /// Sum of finite val scores.
    pub val_sum: f64,
    /// Number of finite val scores.
    pub val_count: u64,
}

/// Best val and test score of a run under one metric.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Best finite val score.
    pub val: Option<f64>,
    /// Best finite test score.
    pub test: Option<f64>,
}

/// One pipeline config ("run").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Rows of this config.
    pub n: u64,
    /// Best scores per metric, by that metric's direction.
    pub best: SmallMap<Best>,
}

/// A map from metric name to `V` for the usual one or two metrics: a sorted
/// vector, serialised as a JSON object. A `BTreeMap` allocates a node of
/// eleven slots per map, which for hundreds of thousands of runs was most of
/// the summary's memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmallMap<V>(Vec<(String, V)>);

impl<V: Default> SmallMap<V> {
    /// The value of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The value of `key`, inserted as `V::default()` if absent.
    pub fn get_or_default(&mut self, key: &str) -> &mut V {
        let i = match self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (key.to_string(), V::default()));
                i
            }
        };
        &mut self.0[i].1
    }
}

impl<V: Serialize> Serialize for SmallMap<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SmallMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = BTreeMap::<String, V>::deserialize(d)?;
        Ok(SmallMap(m.into_iter().collect()))
    }
}

/// Rows per metric and the direction used to rank them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricState {
    /// Rows carrying this metric.
    pub count: u64,
    /// The direction used for "best" and "top".
    pub direction: Direction,
}

/// Everything needed to update or merge a summary without the rows.
///
/// Size: O(distinct models + configs + pipelines + partitions + folds +
/// metrics·partitions·k + sketch buckets); it does not grow with rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SummaryState {
    /// Rows observed.
    pub rows: u64,
    /// Up to two distinct dataset names (enough to tell "exactly one").
    pub dataset_names: Vec<String>,
    /// val, test and train score statistics.
    pub val_score: ScoreState,
    #[allow(missing_docs)]
    pub test_score: ScoreState,
    #[allow(missing_docs)]
    pub train_score: ScoreState,
    /// Per-model counts and sums.
    pub models: BTreeMap<String, ModelState>,
    /// Rows per partition.
    pub partitions: BTreeMap<String, u64>,
    /// Distinct fold ids.
    pub folds: BTreeSet<String>,
    /// Rows per task type.
    pub task_types: BTreeMap<String, u64>,
    /// Per-config counts and bests.
    pub runs: BTreeMap<String, RunState>,
    /// Distinct pipeline uids.
    pub pipelines: BTreeSet<String>,
    /// Rows and direction per metric.
    pub metrics: BTreeMap<String, MetricState>,
    /// k of the top lists.
    pub top_k: usize,
    /// Top-k by val score: metric -> partition ("" for null) -> best first.
    pub top: BTreeMap<String, BTreeMap<String, Vec<TopEntry>>>,
}

impl SummaryState {
    fn scores_mut(&mut self) -> [&mut ScoreState; 3] {
        [
            &mut self.val_score,
            &mut self.test_score,
            &mut self.train_score,
        ]
    }

    /// The three score states, val/test/train.
    pub fn scores(&self) -> [&ScoreState; 3] {
        [&self.val_score, &self.test_score, &self.train_score]
    }

    /// Folds `other` into `self`, as if its rows had followed ours in the
    /// same file: row ordinals of `other`'s top entries are shifted past
    /// ours. O(size of state). Returns false when the sketches could not
    /// merge (different α), in which case quartiles must not be rendered
    /// from them.
    pub fn merge(&mut self, other: &SummaryState) -> bool {
        self.merge_impl(other, self.rows, None)
    }

    /// Folds the state of another file, `dataset`, into a workspace-wide
    /// state: its top entries are tagged with the dataset (ties then break
    /// by dataset, then row) and keep their own row ordinals.
    pub fn merge_dataset(&mut self, other: &SummaryState, dataset: &str) -> bool {
        self.merge_impl(other, 0, Some(dataset))
    }

    fn merge_impl(&mut self, other: &SummaryState, offset: u64, tag: Option<&str>) -> bool {
        let mut m = StateMerger::new(std::mem::take(self));
        m.add(other, offset, tag);
        let (st, ok) = m.finish();
        *self = st;
        ok
    }

    /// The metric with the most rows (ties: name order), which ranks the
    /// 1.0 keys `top_predictions` and `runs`.
    pub fn primary_metric(&self) -> Option<(&str, Direction)> {
        self.metrics
            .iter()
            .max_by(|a, b| a.1.count.cmp(&b.1.count).then_with(|| b.0.cmp(a.0)))
            .map(|(n, m)| (n.as_str(), m.direction))
    }

    /// Top-k of `metric` across all partitions, best first.
    pub fn top_of_metric(&self, metric: &str) -> Vec<TopEntry> {
        let Some(m) = self.metrics.get(metric) else {
            return Vec::new();
        };
        let mut t = TopK::new(self.top_k, m.direction);
        for entries in self.top.get(metric).into_iter().flat_map(|p| p.values()) {
            entries.iter().cloned().for_each(|e| t.offer(e));
        }
        t.sorted()
    }
}

/// Folds many states into one without rebuilding the top-k heaps for each
/// (a workspace merge adds thousands): O(size of each added state), and an
/// added top entry is cloned only if it makes the cut.
pub struct StateMerger {
    state: SummaryState,
    tops: BTreeMap<String, BTreeMap<String, TopK>>,
    ok: bool,
}

impl StateMerger {
    /// A merger starting from `state`.
    pub fn new(mut state: SummaryState) -> Self {
        let tops = take_tops(&mut state);
        StateMerger {
            state,
            tops,
            ok: true,
        }
    }

    /// Adds `other`: its top entries' row ordinals shifted by `offset` and,
    /// with `tag`, marked with that dataset.
    pub fn add(&mut self, other: &SummaryState, offset: u64, tag: Option<&str>) {
        let st = &mut self.state;
        st.rows += other.rows;
        for n in &other.dataset_names {
            note_name(&mut st.dataset_names, n);
        }
        for (mine, theirs) in st.scores_mut().into_iter().zip(other.scores()) {
            self.ok &= mine.merge(theirs);
        }
        for (k, m) in &other.models {
            let e = get_or_insert(&mut st.models, k);
            e.count += m.count;
            e.val_sum += m.val_sum;
            e.val_count += m.val_count;
        }
        add_counts(&mut st.partitions, &other.partitions);
        add_counts(&mut st.task_types, &other.task_types);
        other.folds.iter().for_each(|f| insert(&mut st.folds, f));
        other
            .pipelines
            .iter()
            .for_each(|p| insert(&mut st.pipelines, p));
        for (name, m) in &other.metrics {
            match st.metrics.get_mut(name) {
                Some(e) => e.count += m.count,
                None => {
                    st.metrics.insert(name.clone(), m.clone());
                }
            }
        }
        for (name, r) in &other.runs {
            let mine = get_or_insert(&mut st.runs, name);
            mine.n += r.n;
            for (metric, b) in r.best.iter() {
                let dir = st.metrics.get(metric).map(|m| m.direction);
                let e = mine.best.get_or_default(metric);
                if let Some(dir) = dir {
                    e.val = better(dir, e.val, b.val);
                    e.test = better(dir, e.test, b.test);
                }
            }
        }
        st.top_k = st.top_k.max(other.top_k);
        for (metric, parts) in &other.top {
            let Some(dir) = st.metrics.get(metric).map(|m| m.direction) else {
                continue;
            };
            let k = st.top_k;
            let per_metric = match self.tops.get_mut(metric) {
                Some(p) => p,
                None => self.tops.entry(metric.clone()).or_default(),
            };
            for (part, entries) in parts {
                let t = match per_metric.get_mut(part) {
                    Some(t) => t,
                    None => per_metric
                        .entry(part.clone())
                        .or_insert_with(|| TopK::new(k, dir)),
                };
                for e in entries {
                    let score = e.val_score.unwrap_or(f64::NAN);
                    let dataset = tag.or(e.dataset.as_deref());
                    if t.beats_worst(score, dataset, e.row + offset) {
                        let mut e = e.clone();
                        e.row += offset;
                        if let Some(d) = tag {
                            e.dataset = Some(d.to_string());
                        }
                        t.offer(e);
                    }
                }
            }
        }
    }

    /// Adds a state head read in place ([`codec::HeadView`]): as
    /// [`Self::add`] without runs and pipelines, and without copying a
    /// string that does not stay (a top entry is copied only if it makes
    /// the cut).
    pub fn add_view(&mut self, other: &codec::HeadView<'_>, tag: Option<&str>) {
        let st = &mut self.state;
        st.rows += other.rows;
        for n in &other.dataset_names {
            note_name(&mut st.dataset_names, n);
        }
        for (mine, theirs) in st.scores_mut().into_iter().zip(&other.scores) {
            mine.welford.merge(&theirs.welford);
            mine.nan_count += theirs.nan_count;
            mine.inf_count += theirs.inf_count;
            if (mine.sketch.alpha - theirs.alpha).abs() > 1e-15 {
                self.ok = false;
                continue;
            }
            mine.sketch.zero += theirs.zero;
            mine.sketch.collapsed |= theirs.collapsed;
            for (store, run) in [
                (&mut mine.sketch.pos, theirs.run(0)),
                (&mut mine.sketch.neg, theirs.run(1)),
            ] {
                match run.single_bytes() {
                    Some(bytes) => store.add_dense_bytes(run.first(), bytes),
                    None => store.add_dense(run.first(), run.span(), run.counts()),
                }
            }
            mine.sketch.fold_to_cap();
        }
        for (k, m) in &other.models {
            let e = get_or_insert(&mut st.models, k);
            e.count += m.count;
            e.val_sum += m.val_sum;
            e.val_count += m.val_count;
        }
        for (k, c) in &other.partitions {
            *get_or_insert(&mut st.partitions, k) += c;
        }
        for (k, c) in &other.task_types {
            *get_or_insert(&mut st.task_types, k) += c;
        }
        other.folds.iter().for_each(|f| insert(&mut st.folds, f));
        for (name, m) in &other.metrics {
            match st.metrics.get_mut(*name) {
                Some(e) => e.count += m.count,
                None => {
                    st.metrics.insert(name.to_string(), m.clone());
                }
            }
        }
        st.top_k = st.top_k.max(other.top_k);
        let k = st.top_k;
        for (metric, part, entries) in &other.top {
            let Some(dir) = st.metrics.get(*metric).map(|m| m.direction) else {
                continue;
            };
            let per_metric = match self.tops.get_mut(*metric) {
                Some(p) => p,
                None => self.tops.entry(metric.to_string()).or_default(),
            };
            let t = match per_metric.get_mut(*part) {
                Some(t) => t,
                None => per_metric
                    .entry(part.to_string())
                    .or_insert_with(|| TopK::new(k, dir)),
            };
            for e in entries {
                let score = e.val_score.unwrap_or(f64::NAN);
                // A 1.2 head's entries carry no dataset (one file's rows):
                // the tag is the file's.
                if t.beats_worst(score, tag, e.row) {
                    if let Some(mut owned) = e.to_entry() {
                        if let Some(d) = tag {
                            owned.dataset = Some(d.to_string());
                        }
                        t.offer(owned);
                    }
                }
            }
        }
    }

    /// The merged state, and whether every sketch merged (same α).
    pub fn finish(mut self) -> (SummaryState, bool) {
        self.state.top = self
            .tops
            .iter()
            .map(|(m, parts)| {
                let p = parts.iter().map(|(k, t)| (k.clone(), t.sorted())).collect();
                (m.clone(), p)
            })
            .collect();
        (self.state, self.ok)
    }
}

/// Moves a state's top lists into heaps of k `state.top_k`.
fn take_tops(state: &mut SummaryState) -> BTreeMap<String, BTreeMap<String, TopK>> {
    let mut tops: BTreeMap<String, BTreeMap<String, TopK>> = BTreeMap::new();
    for (metric, parts) in std::mem::take(&mut state.top) {
        let dir = state
            .metrics
            .get(&metric)
            .map_or(Direction::Maximize, |m| m.direction);
        for (part, entries) in parts {
            let t = TopK::from_entries(state.top_k, dir, entries);
            tops.entry(metric.clone()).or_default().insert(part, t);
        }
    }
    tops
}

fn get_or_insert<'a, V: Default>(map: &'a mut BTreeMap<String, V>, key: &str) -> &'a mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("inserted")
}

fn note_name(names: &mut Vec<String>, name: &str) {
    if names.len() < 2 && !names.iter().any(|n| n == name) {
        names.push(name.to_string());
    }
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *get_or_insert(into, k) += v;
    }
}

fn better(dir: Direction, a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if dir.is_better(y, x) { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// Options of a [`SummaryBuilder`].
#[derive(Debug, Clone)]
pub struct SummaryOptions {
    /// Metric directions (built-in table plus the caller's).
    pub directions: Directions,
    /// k of the top lists (default 10, as nirs4all).
    pub top_k: usize,
    /// Rows up to which quartiles are exact (default 1,000,000).
    pub exact_limit: u64,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        SummaryOptions {
            directions: Directions::new(),
            top_k: DEFAULT_TOP_K,
            exact_limit: DEFAULT_EXACT_LIMIT,
        }
    }
}

/// Builds a summary incrementally, row by row.
///
/// Memory: the [`SummaryState`] plus, while the row count stays within
/// `exact_limit`, every finite score (8 bytes a score, 24 MB at 1 million
/// rows) for exact quartiles; past the limit those are dropped and quartiles
/// come from the sketch.
pub struct SummaryBuilder {
    opts: SummaryOptions,
    state: SummaryState,
    /// `state.runs` while building: one hash probe a row instead of a
    /// B-tree walk of string comparisons (thousands of configs a file).
    runs: HashMap<String, RunState>,
    /// The last fold and pipeline inserted: rows come grouped by config,
    /// so most rows repeat them and skip the set lookup.
    last_fold: String,
    last_pipeline: String,
    /// The last metric seen and its direction (rows come grouped by
    /// dataset: one metric for thousands of rows).
    last_metric: Option<(String, Direction)>,
    /// The run of the last config, taken out of `runs` while its rows come.
    current_run: Option<(String, RunState)>,
    /// Each score column's last value and its sketch bucket: a fold entry's
    /// train, val and test rows carry the same scores.
    last_bucket: [Option<(u64, sketch::Bucket)>; 3],
    tops: BTreeMap<String, BTreeMap<String, TopK>>,
    exact: [Vec<f64>; 3],
    /// Leading rows whose values are not in `exact` (loaded from a footer).
    missing_prefix_rows: u64,
    overflow: bool,
}

impl SummaryBuilder {
    /// An empty builder.
    pub fn new(opts: SummaryOptions) -> Self {
        let state = SummaryState {
            top_k: opts.top_k,
            ..SummaryState::default()
        };
        SummaryBuilder {
            opts,
            state,
            runs: HashMap::new(),
            last_fold: String::new(),
            last_pipeline: String::new(),
            last_metric: None,
            current_run: None,
            last_bucket: [None; 3],
            tops: BTreeMap::new(),
            exact: Default::default(),
            missing_prefix_rows: 0,
            overflow: false,
        }
    }

    /// A builder continuing from a stored state (an append). The old rows'
    /// values are not in memory: if quartiles must stay exact at the end,
    /// [`Self::needs_prefix_values`] says so and the caller supplies them.
    pub fn from_state(opts: SummaryOptions, mut state: SummaryState) -> Self {
        let mut b = SummaryBuilder::new(opts);
        state.top_k = b.opts.top_k;
        b.tops = take_tops(&mut state);
        b.runs = std::mem::take(&mut state.runs).into_iter().collect();
        b.missing_prefix_rows = state.rows;
        b.overflow = state.rows > b.opts.exact_limit;
        b.state = state;
        b
    }

    /// Rows observed so far (including a loaded state's).
    pub fn rows(&self) -> u64 {
        self.state.rows
    }

    /// Checks a row without changing anything: its metric must have a known
    /// direction whenever it carries a score.
    ///
    /// # Errors
    /// [`Error::UnknownMetricDirection`], or [`Error::InvalidRow`] for scores
    /// without a metric (`row` is the caller's row number).
    pub fn check(&self, row: usize, r: &RowView<'_>) -> Result<Option<Direction>> {
        match r.metric {
            Some(m) => self.opts.directions.get(m).map(Some),
            None if r.scores.iter().any(Option::is_some) => Err(Error::InvalidRow {
                row,
                reason: "it has scores but no metric".to_string(),
            }),
            None => Ok(None),
        }
    }

    /// Observes one row. O(log k + log buckets) amortised.
    ///
    /// # Errors
    /// As [`Self::check`]; on error nothing is changed.
    pub fn observe(&mut self, row: usize, r: &RowView<'_>) -> Result<()> {
        let dir = match (r.metric, &self.last_metric) {
            (Some(m), Some((last, d))) if m == last => Some(*d),
            _ => {
                let d = self.check(row, r)?;
                if let (Some(m), Some(d)) = (r.metric, d) {
                    self.last_metric = Some((m.to_string(), d));
                }
                d
            }
        };
        let ordinal = self.state.rows;
        let st = &mut self.state;
        st.rows += 1;
        if let Some(d) = r.dataset_name {
            note_name(&mut st.dataset_names, d);
        }
        for (i, s) in st.scores_mut().into_iter().enumerate() {
            if let Some(x) = r.scores[i] {
                s.push_memo(x, &mut self.last_bucket[i]);
                if x.is_finite() && !self.overflow {
                    self.exact[i].push(x);
                }
            }
        }
        let val = finite(r.scores[0]);
        if let Some(m) = r.model_name {
            let e = get_or_insert(&mut st.models, m);
            e.count += 1;
            if let Some(v) = val {
                e.val_sum += v;
                e.val_count += 1;
            }
        }
        count(&mut st.partitions, r.partition);
        count(&mut st.task_types, r.task_type);
        if let Some(f) = r.fold_id {
            if f != self.last_fold {
                insert(&mut st.folds, f);
                f.clone_into(&mut self.last_fold);
            }
        }
        if let Some(p) = r.pipeline_uid {
            if p != self.last_pipeline {
                insert(&mut st.pipelines, p);
                p.clone_into(&mut self.last_pipeline);
            }
        }
        if let (Some(metric), Some(dir)) = (r.metric, dir) {
            match st.metrics.get_mut(metric) {
                Some(m) => m.count += 1,
                None => {
                    st.metrics.insert(
                        metric.to_string(),
                        MetricState {
                            count: 1,
                            direction: dir,
                        },
                    );
                }
            }
            if let Some(c) = r.config_name {
                let run = self.run_of(c);
                run.n += 1;
                let b = run.best.get_or_default(metric);
                b.val = better(dir, b.val, val);
                b.test = better(dir, b.test, finite(r.scores[1]));
            }
            if let Some(v) = val {
                self.offer_top(metric, dir, v, ordinal, r);
            }
        } else if let Some(c) = r.config_name {
            self.run_of(c).n += 1;
        }
        if !self.overflow && self.state.rows > self.opts.exact_limit {
            self.overflow = true;
            self.exact = Default::default();
        }
        Ok(())
    }

    /// The run of `config`, kept out of the map while its rows come (they
    /// come grouped by config): one map operation per config, not per row.
    fn run_of(&mut self, config: &str) -> &mut RunState {
        if self.current_run.as_ref().map(|(c, _)| c.as_str()) != Some(config) {
            if let Some((c, r)) = self.current_run.take() {
                self.runs.insert(c, r);
            }
            let r = self.runs.remove(config).unwrap_or_default();
            self.current_run = Some((config.to_string(), r));
        }
        &mut self.current_run.as_mut().expect("set above").1
    }

    /// Puts the current run back into the map.
    fn settle_runs(&mut self) {
        if let Some((c, r)) = self.current_run.take() {
            self.runs.insert(c, r);
        }
    }

    fn offer_top(&mut self, metric: &str, dir: Direction, v: f64, ordinal: u64, r: &RowView<'_>) {
        let k = self.opts.top_k;
        let part = r.partition.unwrap_or("");
        let parts = match self.tops.get_mut(metric) {
            Some(p) => p,
            None => self.tops.entry(metric.to_string()).or_default(),
        };
        let t = match parts.get_mut(part) {
            Some(t) => t,
            None => parts
                .entry(part.to_string())
                .or_insert_with(|| TopK::new(k, dir)),
        };
        if t.would_keep(v, ordinal) {
            t.offer(TopEntry {
                id: r.id.map(str::to_string),
                model_name: r.model_name.map(str::to_string),
                config_name: r.config_name.map(str::to_string),
                val_score: Some(v),
                test_score: finite(r.scores[1]),
                fold_id: r.fold_id.map(str::to_string),
                partition: r.partition.map(str::to_string),
                dataset: None,
                row: ordinal,
            });
        }
    }

    /// True when exact quartiles at finish need the score values of the
    /// rows loaded from a stored state (the caller then reads just the
    /// three score columns of the old file).
    pub fn needs_prefix_values(&self) -> bool {
        self.missing_prefix_rows > 0 && !self.overflow
    }

    /// Supplies the finite score values of the loaded rows (val, test,
    /// train), in any order.
    pub fn provide_prefix_values(&mut self, values: [Vec<f64>; 3]) {
        if self.needs_prefix_values() {
            for (mine, mut old) in self.exact.iter_mut().zip(values) {
                old.extend_from_slice(mine);
                *mine = old;
            }
            self.missing_prefix_rows = 0;
        }
    }

    /// The mergeable state, with top lists materialised.
    pub fn state(&self) -> SummaryState {
        let mut st = self.state.clone();
        st.runs = self
            .runs
            .iter()
            .chain(self.current_run.as_ref().map(|(k, v)| (k, v)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        st.top = self
            .tops
            .iter()
            .map(|(m, parts)| {
                let p = parts.iter().map(|(k, t)| (k.clone(), t.sorted())).collect();
                (m.clone(), p)
            })
            .collect();
        st
    }

    /// Renders the summary. Quartiles are exact when every value is in
    /// memory, else from the sketch with its error bound stated. O(n) in the
    /// values kept for exact quartiles ([`place_quartiles`]), plus O(state). The
    /// state moves into the summary (no copy): the builder is spent.
    pub fn finish(&mut self, generated_at: Option<String>) -> Summary {
        self.settle_runs();
        let exact = if self.overflow || self.missing_prefix_rows > 0 {
            None
        } else {
            for v in &mut self.exact {
                place_quartiles(v);
            }
            Some(&self.exact)
        };
        let mut st = std::mem::take(&mut self.state);
        st.runs = std::mem::take(&mut self.runs).into_iter().collect();
        st.top = std::mem::take(&mut self.tops)
            .into_iter()
            .map(|(m, parts)| (m, parts.into_iter().map(|(k, t)| (k, t.sorted())).collect()))
            .collect();
        Summary::render(st, exact, generated_at)
    }
}

fn count(map: &mut BTreeMap<String, u64>, key: Option<&str>) {
    if let Some(k) = key {
        match map.get_mut(k) {
            Some(c) => *c += 1,
            None => {
                map.insert(k.to_string(), 1);
            }
        }
    }
}

fn insert(set: &mut BTreeSet<String>, key: &str) {
    if !set.contains(key) {
        set.insert(key.to_string());
    }
}

/// The current UTC time as nirs4all writes it: `2026-11-23T10:59:35.020017+00:00`.
pub fn utc_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    iso8601(d.as_secs() as i64, d.subsec_micros())
}

/// Formats Unix seconds and microseconds as ISO 8601 UTC (civil-from-days,
/// H. Hinnant's algorithm).
pub fn iso8601(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Rounds like Python's `round(x, 4)` (half to even on the exact value).
///
/// Away from a tie, `round(x * 1e4) / 1e4` is the double nearest the
/// correctly rounded decimal (the product is off by at most an ulp, and the
/// division is correctly rounded); near a tie the exact decimal expansion
/// decides, through the formatter (slow, rare).
pub fn round4(x: f64) -> f64 {
    let y = x * 1e4;
    if !y.is_finite() || ((y - y.trunc()).abs() - 0.5).abs() < 1e-6 {
        return format!("{x:.4}").parse().unwrap_or(x);
    }
    y.round() / 1e4
}

/// Reorders `v` so that each quartile position ([`quantile_index`] of
/// 0.25, 0.5, 0.75) holds the value a full sort would put there: three
/// selections, O(n), instead of an O(n log n) sort (a third of an append's
/// time at 330,000 scores).
pub fn place_quartiles(v: &mut [f64]) {
    let n = v.len() as u64;
    if n == 0 {
        return;
    }
    let [lo, mid, hi] = [0.25, 0.5, 0.75].map(|q| quantile_index(q, n) as usize);
    v.select_nth_unstable_by(mid, f64::total_cmp);
    if lo < mid {
        v[..mid].select_nth_unstable_by(lo, f64::total_cmp);
    }
    if hi > mid {
        v[mid + 1..].select_nth_unstable_by(hi - mid - 1, f64::total_cmp);
    }
}

/// Index of quantile `q` among `n` sorted values, by the contract's rule:
/// `round_half_away(q * (n - 1))`.
pub fn quantile_index(q: f64, n: u64) -> u64 {
    (q * (n - 1) as f64).round() as u64
}

/// `stats.<column>` of the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScoreSummary {
    /// Smallest finite value.
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
    /// Mean of finite values.
    pub mean: Option<f64>,
    /// Sample standard deviation (ddof 1), 0.0 for one value.
    pub std: Option<f64>,
    /// q25, q50, q75.
    pub quartiles: Vec<Option<f64>>,
    /// (1.1) Finite values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// (1.1) NaN values, left out of the statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nan_count: Option<u64>,
    /// (1.1) Infinite values, left out of the statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inf_count: Option<u64>,
    /// (1.1) "exact" or "sketch".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quartiles_method: Option<String>,
    /// (1.1) Relative error bound of sketched quartiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quartiles_rel_error: Option<f64>,
}

/// `stats` of the summary: one entry per score column that has a value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct Stats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_score: Option<ScoreSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_score: Option<ScoreSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_score: Option<ScoreSummary>,
}

/// A name with a row count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct NameCount {
    pub name: Option<String>,
    pub count: u64,
}

/// A model facet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ModelFacet {
    pub name: Option<String>,
    pub count: u64,
    pub avg_val_score: Option<f64>,
}

/// `facets` of the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct Facets {
    pub models: Vec<ModelFacet>,
    pub partitions: Vec<NameCount>,
    pub folds: Vec<Option<String>>,
    pub task_types: Vec<NameCount>,
    pub n_configs: u64,
    pub n_pipelines: u64,
}

/// One entry of `runs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct RunSummary {
    pub id: Option<String>,
    pub name: Option<String>,
    pub n_predictions: u64,
    pub best_val_score: Option<f64>,
    pub best_test_score: Option<f64>,
}

/// (1.1) Which metric and direction ranked `top_predictions` and `runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    /// The file's primary metric (most rows).
    pub metric: String,
    /// Its direction.
    pub direction: Direction,
}

/// (1.1) A metric present in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct MetricSummary {
    pub name: String,
    pub direction: Direction,
    pub count: u64,
}

/// (1.1) The top predictions of one metric, unrounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct MetricTop {
    pub direction: Direction,
    pub predictions: Vec<TopEntry>,
}

/// The decoded `n4a_summary`: nirs4all's 1.0 keys plus n4a's 1.1 additions.
/// Decodes nirs4all's own 1.0 summaries too (the additions are then empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// "1.0" (nirs4all) or "1.1" (n4a).
    pub n4a_version: String,
    /// ISO 8601 UTC.
    pub generated_at: Option<String>,
    /// The one dataset of the file, else null.
    pub dataset_name: Option<String>,
    /// Row count.
    pub total_predictions: u64,
    /// Score statistics.
    pub stats: Stats,
    /// Facets.
    pub facets: Facets,
    /// Best predictions of the primary metric, scores rounded to 4 places.
    pub top_predictions: Vec<TopEntry>,
    /// (1.1) Ranking used for `top_predictions` and `runs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking: Option<Ranking>,
    /// (1.1) Metrics with their directions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSummary>,
    /// (1.1) Top predictions per metric, unrounded.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub top_by_metric: BTreeMap<String, MetricTop>,
    /// One per config, best first. Serialised last, so that a light
    /// answer can cut it from the stored text.
    pub runs: Vec<RunSummary>,
    /// The mergeable state: read from inside the JSON in 1.1, from the
    /// `n4a_state` footer key since 1.2; never serialised into the JSON.
    #[serde(skip_serializing)]
    pub state: Option<SummaryState>,
}

impl Summary {
    /// Renders the 1.0 keys and 1.1 additions from a state. `exact` holds
    /// the finite values of each score column, sorted or at least with
    /// their quartile positions placed ([`place_quartiles`]), when
    /// quartiles can be exact; otherwise they come from the sketches.
    pub fn render(
        state: SummaryState,
        exact: Option<&[Vec<f64>; 3]>,
        generated_at: Option<String>,
    ) -> Summary {
        let primary = state.primary_metric().map(|(m, d)| (m.to_string(), d));
        let stats = {
            let s = |i: usize| score_summary(state.scores()[i], exact.map(|e| e[i].as_slice()));
            Stats {
                val_score: s(0),
                test_score: s(1),
                train_score: s(2),
            }
        };
        let top_predictions = primary
            .as_ref()
            .map(|(m, _)| state.top_of_metric(m))
            .unwrap_or_default()
            .into_iter()
            .map(|mut e| {
                e.val_score = e.val_score.map(round4);
                e.test_score = e.test_score.map(round4);
                e
            })
            .collect();
        let top_by_metric = state
            .metrics
            .iter()
            .map(|(m, ms)| {
                let t = MetricTop {
                    direction: ms.direction,
                    predictions: state.top_of_metric(m),
                };
                (m.clone(), t)
            })
            .collect();
        Summary {
            n4a_version: N4A_VERSION.to_string(),
            generated_at,
            dataset_name: (state.dataset_names.len() == 1).then(|| state.dataset_names[0].clone()),
            total_predictions: state.rows,
            stats,
            facets: facets(&state),
            runs: runs(&state, primary.as_ref()),
            top_predictions,
            ranking: primary.map(|(metric, direction)| Ranking { metric, direction }),
            metrics: state
                .metrics
                .iter()
                .map(|(n, m)| MetricSummary {
                    name: n.clone(),
                    direction: m.direction,
                    count: m.count,
                })
                .collect(),
            top_by_metric,
            state: Some(state),
        }
    }

    /// Serialises to the footer's JSON text (valid JSON: non-finite numbers
    /// never reach it, they are counted instead), `n4a_version` first and
    /// `runs` last, without the state.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("summary serialises")
    }

    /// The footer's key/values, in their order: `n4a_runs` (the packed runs
    /// of the state), the JSON text under `n4a_summary`, and `n4a_state`
    /// (the state's head, with the text's check) last, where a reader finds
    /// it in the file's final bytes. Without a state, only the text. Cost:
    /// O(summary), plus zstd over the runs.
    pub fn footer_entries(&self) -> Vec<(String, String)> {
        let text = self.to_json();
        match &self.state {
            Some(st) => {
                let v = codec::encode(st, &codec::TextCheck::of(&text));
                vec![
                    (crate::schema::RUNS_KEY.to_string(), v.runs),
                    (crate::schema::SUMMARY_KEY.to_string(), text),
                    (crate::schema::STATE_KEY.to_string(), v.state),
                ]
            }
            None => vec![(crate::schema::SUMMARY_KEY.to_string(), text)],
        }
    }
}

fn score_summary(s: &ScoreState, exact: Option<&[f64]>) -> Option<ScoreSummary> {
    let w = &s.welford;
    if w.count == 0 {
        return None;
    }
    let (quartiles, method, err) = match exact {
        Some(v) if v.len() as u64 == w.count => {
            let q = |q: f64| Some(v[quantile_index(q, w.count) as usize]);
            (vec![q(0.25), q(0.5), q(0.75)], "exact", None)
        }
        _ if s.sketch.count() == w.count => {
            let clamp = |x: f64| x.clamp(w.min.unwrap_or(x), w.max.unwrap_or(x));
            let q = |q: f64| {
                s.sketch
                    .value_at_rank(quantile_index(q, w.count))
                    .map(clamp)
            };
            (
                vec![q(0.25), q(0.5), q(0.75)],
                "sketch",
                Some(s.sketch.alpha),
            )
        }
        _ => (Vec::new(), "unavailable", None),
    };
    Some(ScoreSummary {
        min: w.min,
        max: w.max,
        mean: w.mean(),
        std: w.std(),
        quartiles,
        count: Some(w.count),
        nan_count: Some(s.nan_count),
        inf_count: Some(s.inf_count),
        quartiles_method: Some(method.to_string()),
        quartiles_rel_error: err,
    })
}

fn by_count_desc(map: &BTreeMap<String, u64>) -> Vec<NameCount> {
    let mut v: Vec<NameCount> = map
        .iter()
        .map(|(k, c)| NameCount {
            name: Some(k.clone()),
            count: *c,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

fn facets(st: &SummaryState) -> Facets {
    let mut models: Vec<ModelFacet> = st
        .models
        .iter()
        .map(|(name, m)| ModelFacet {
            name: Some(name.clone()),
            count: m.count,
            avg_val_score: (m.val_count > 0).then(|| round4(m.val_sum / m.val_count as f64)),
        })
        .collect();
    models.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    Facets {
        models,
        partitions: st
            .partitions
            .iter()
            .map(|(k, c)| NameCount {
                name: Some(k.clone()),
                count: *c,
            })
            .collect(),
        folds: st.folds.iter().cloned().map(Some).collect(),
        task_types: by_count_desc(&st.task_types),
        n_configs: st.runs.len() as u64,
        n_pipelines: st.pipelines.len() as u64,
    }
}

fn runs(st: &SummaryState, primary: Option<&(String, Direction)>) -> Vec<RunSummary> {
    let mut out: Vec<(Option<Direction>, RunSummary)> = st
        .runs
        .iter()
        .map(|(name, r)| {
            let chosen = primary
                .filter(|(m, _)| r.best.contains_key(m))
                .map(|(m, _)| m.as_str())
                .or_else(|| r.best.keys().next().map(String::as_str));
            let best = chosen.and_then(|m| r.best.get(m));
            let dir = chosen.and_then(|m| st.metrics.get(m)).map(|m| m.direction);
            let run = RunSummary {
                id: Some(name.clone()),
                name: Some(name.clone()),
                n_predictions: r.n,
                best_val_score: best.and_then(|b| b.val).map(round4),
                best_test_score: best.and_then(|b| b.test).map(round4),
            };
            (dir, run)
        })
        .collect();
    out.sort_by(|(da, a), (db, b)| {
        let key = |d: &Option<Direction>, r: &RunSummary| {
            r.best_val_score
                .map(|v| d.unwrap_or(Direction::Maximize).rank_key(v))
                .unwrap_or(f64::INFINITY)
        };
        key(da, a)
            .total_cmp(&key(db, b))
            .then_with(|| a.name.cmp(&b.name))
    });
    out.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(0, 0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            iso8601(1_795_431_575, 20_017),
            "2026-11-23T10:59:35.020017+00:00"
        );
        assert_eq!(iso8601(951_782_400, 0), "2000-02-29T00:00:00.000000+00:00");
    }

    #[test]
    fn round4_is_pythons_round() {
        // Python: round(0.03125, 4) == 0.0312, round(0.09375, 4) == 0.0938
        assert_eq!(round4(0.03125), 0.0312);
        assert_eq!(round4(0.09375), 0.0938);
        assert_eq!(round4(4.414367853590737), 4.4144);
        assert_eq!(round4(-0.03125), -0.0312);
    }

    #[test]
    fn round4_fast_path_equals_the_formatter() {
        let mut s = 12345u64;
        for _ in 0..200_000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 10f64.powi((s % 9) as i32 - 4);
            let slow: f64 = format!("{x:.4}").parse().unwrap();
            assert_eq!(round4(x), slow, "{x}");
        }
    }

    #[test]
    fn placed_quartiles_equal_sorted_ones() {
        let mut seed = 99u64;
        for n in 0..200usize {
            let mut v: Vec<f64> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    ((seed >> 40) % 50) as f64
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            place_quartiles(&mut v);
            for q in [0.25, 0.5, 0.75] {
                if n > 0 {
                    let i = quantile_index(q, n as u64) as usize;
                    assert_eq!(v[i], sorted[i], "n {n} q {q}");
                }
            }
        }
    }

    #[test]
    fn quantile_index_rounds_half_away() {
        assert_eq!(quantile_index(0.25, 15), 4); // 3.5 -> 4
        assert_eq!(quantile_index(0.5, 2), 1); // 0.5 -> 1
        assert_eq!(quantile_index(0.75, 1), 0);
    }
}
