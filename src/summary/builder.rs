//! The builder: observes rows one at a time ([`RowView`], borrowed) into a
//! [`SummaryState`] in O(1) amortised work, with memos for what repeats row
//! after row, and renders the [`Summary`] when asked.

use super::groups::{Groups, GroupsBuilder};
use super::state::{better, finite, insert, note_name, take_tops};
use super::topk::{TopEntry, TopK};
use super::{
    place_quartiles, MetricState, ModelState, RunState, Summary, SummaryState, DEFAULT_EXACT_LIMIT,
    DEFAULT_TOP_K,
};
use crate::error::{Error, Result};
use crate::metric::{Direction, Directions};
use crate::schema::Prediction;
use std::collections::{BTreeMap, HashMap};

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

/// Options of a [`SummaryBuilder`].
#[derive(Debug, Clone)]
pub struct SummaryOptions {
    /// Metric directions (built-in table plus the caller's).
    pub directions: Directions,
    /// k of the top lists (default 10, as nirs4all).
    pub top_k: usize,
    /// Rows up to which quartiles are exact (default 1,000,000).
    pub exact_limit: u64,
    /// Keep the per-key aggregates of group-bys (default true; a summary
    /// built only to be shown, never stored, leaves them out).
    pub groups: bool,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        SummaryOptions {
            directions: Directions::new(),
            top_k: DEFAULT_TOP_K,
            exact_limit: DEFAULT_EXACT_LIMIT,
            groups: true,
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
    /// The last model's counts, taken out of `state.models` while its rows
    /// come (rows come grouped by model: a chain's folds and partitions);
    /// and the last (metric, model)'s, out of that metric's `models`. Two
    /// B-tree walks of string comparisons a row were 7% of a summary's
    /// building; the sums are the same additions in the same order.
    current_model: Option<(String, ModelState)>,
    current_metric_model: Option<(String, String, ModelState)>,
    /// Each score column's last value and its sketch bucket: a fold entry's
    /// train, val and test rows carry the same scores.
    last_bucket: [Option<(u64, super::sketch::Bucket)>; 3],
    tops: BTreeMap<String, BTreeMap<String, TopK>>,
    /// The per-key aggregates (1.5).
    groups: GroupsBuilder,
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
            by_metric: true,
            ..SummaryState::default()
        };
        let groups = GroupsBuilder::from_groups(opts.groups.then(Groups::default).as_ref());
        SummaryBuilder {
            opts,
            state,
            groups,
            runs: HashMap::new(),
            last_fold: String::new(),
            last_pipeline: String::new(),
            last_metric: None,
            current_run: None,
            current_model: None,
            current_metric_model: None,
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
        state.fill_by_metric();
        let mut b = SummaryBuilder::new(opts);
        state.top_k = b.opts.top_k;
        b.tops = take_tops(&mut state);
        let groups = state.groups.take();
        b.groups = GroupsBuilder::from_groups(groups.as_ref().filter(|_| b.opts.groups));
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
        self.groups
            .add(r.metric, r.partition, r.model_name, r.fold_id, &r.scores);
        let val = finite(r.scores[0]);
        if let Some(m) = r.model_name {
            let e = pending(&mut self.current_model, &mut st.models, m);
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
            // Another metric or model: the pending one goes back to its
            // metric (inserted when it was taken) before `m` is borrowed.
            if let Some((pm, pmodel, _)) = &self.current_metric_model {
                if Some(pmodel.as_str()) != r.model_name || pm != metric {
                    settle_metric_model(&mut self.current_metric_model, &mut st.metrics);
                }
            }
            let m = match st.metrics.get_mut(metric) {
                Some(m) => m,
                None => st
                    .metrics
                    .entry(metric.to_string())
                    .or_insert_with(|| MetricState::new(dir)),
            };
            m.count += 1;
            // The metric's own statistics: the bucket the pooled sketch
            // just computed (same α) is reused.
            for (i, s) in m.scores.iter_mut().enumerate() {
                match r.scores[i] {
                    Some(x) if x.is_finite() => {
                        s.welford.push(x);
                        match self.last_bucket[i] {
                            Some((bits, b)) if bits == x.to_bits() => s.sketch.push_bucket(b),
                            _ => s.sketch.push(x),
                        }
                    }
                    Some(x) => s.push(x),
                    None => {}
                }
            }
            if let Some(model) = r.model_name {
                let slot = self.current_metric_model.get_or_insert_with(|| {
                    let v = m.models.remove(model).unwrap_or_default();
                    (metric.to_string(), model.to_string(), v)
                });
                let e = &mut slot.2;
                e.count += 1;
                if let Some(v) = val {
                    e.val_sum += v;
                    e.val_count += 1;
                }
            }
            if let Some(c) = r.config_name {
                let run = self.run_of(c);
                run.n += 1;
                let b = run.best.get_or_default(metric);
                b.val = better(dir, b.val, val);
                b.test = better(dir, b.test, finite(r.scores[1]));
            }
            // Every (metric, partition) seen gets a list, empty when its
            // val scores are all null: a footer then tells "no finite
            // score" from "no list stored" (`SummaryState::prune_tops`).
            self.offer_top(metric, dir, val, ordinal, r);
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

    /// Puts the current run and models back into their maps.
    fn settle_runs(&mut self) {
        if let Some((c, r)) = self.current_run.take() {
            self.runs.insert(c, r);
        }
        if let Some((m, v)) = self.current_model.take() {
            self.state.models.insert(m, v);
        }
        settle_metric_model(&mut self.current_metric_model, &mut self.state.metrics);
    }

    fn offer_top(
        &mut self,
        metric: &str,
        dir: Direction,
        val: Option<f64>,
        ordinal: u64,
        r: &RowView<'_>,
    ) {
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
        let Some(v) = val else { return };
        if t.would_keep(v, ordinal) {
            t.offer(TopEntry {
                id: r.id.map(str::to_string),
                model_name: r.model_name.map(str::to_string),
                config_name: r.config_name.map(str::to_string),
                val_score: Some(v),
                test_score: finite(r.scores[1]),
                train_score: finite(r.scores[2]),
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
        if let Some((m, v)) = &self.current_model {
            st.models.insert(m.clone(), v.clone());
        }
        settle_metric_model(&mut self.current_metric_model.clone(), &mut st.metrics);
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
        st.prune_tops();
        st.groups = self.groups.groups();
        st
    }

    /// Renders the summary. Quartiles are exact when every value is in
    /// memory, else from the sketch with its error bound stated. O(n) in the
    /// values kept for exact quartiles (`place_quartiles`), plus O(state). The
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
        st.prune_tops();
        st.groups = self.groups.groups();
        Summary::render(st, exact, generated_at)
    }
}

/// The value of `key`, taken out of `map` into `slot` (the previous one
/// put back) unless `slot` already holds it.
fn pending<'a, V: Default>(
    slot: &'a mut Option<(String, V)>,
    map: &mut BTreeMap<String, V>,
    key: &str,
) -> &'a mut V {
    if slot.as_ref().is_none_or(|(k, _)| k != key) {
        if let Some((k, v)) = slot.take() {
            map.insert(k, v);
        }
        let v = map.remove(key).unwrap_or_default();
        *slot = Some((key.to_string(), v));
    }
    &mut slot.as_mut().expect("set above").1
}

/// Puts a pending (metric, model) back into its metric's models.
fn settle_metric_model(
    slot: &mut Option<(String, String, ModelState)>,
    metrics: &mut BTreeMap<String, MetricState>,
) {
    if let Some((metric, model, v)) = slot.take() {
        if let Some(m) = metrics.get_mut(&metric) {
            m.models.insert(model, v);
        }
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
