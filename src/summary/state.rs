//! The mergeable state of a summary: Welford state and a sketch per score,
//! per-model sums, distinct sets, per-config bests and the top-k lists per
//! metric and partition. What appends and workspace merges carry instead of
//! rows.

use super::sketch::Sketch;
use super::topk::{TopEntry, TopK};
use super::welford::Welford;
use super::StateMerger;
use crate::error::Result;
use crate::metric::Direction;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    pub(super) fn push(&mut self, x: f64) {
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
    pub(super) fn push_memo(&mut self, x: f64, memo: &mut Option<(u64, super::sketch::Bucket)>) {
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

    pub(super) fn merge(&mut self, other: &ScoreState) -> bool {
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

/// Rows per metric, the direction used to rank them and (1.3) the score
/// statistics and model sums of those rows alone: scores of different
/// metrics are never pooled where an answer averages or ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricState {
    /// Rows carrying this metric.
    pub count: u64,
    /// The direction used for "best" and "top".
    pub direction: Direction,
    /// (1.3) val, test and train statistics of this metric's rows (empty
    /// in a state of before 1.3 that mixes metrics: see
    /// [`SummaryState::by_metric`]).
    #[serde(default)]
    pub scores: [ScoreState; 3],
    /// (1.3) Per-model counts and sums of this metric's rows.
    #[serde(default)]
    pub models: BTreeMap<String, ModelState>,
}

impl MetricState {
    /// A metric seen for the first time.
    pub fn new(direction: Direction) -> Self {
        MetricState {
            count: 0,
            direction,
            scores: Default::default(),
            models: BTreeMap::new(),
        }
    }

    /// Folds another file's or state's statistics of the same metric.
    /// Returns false when a sketch could not merge.
    pub(super) fn merge(&mut self, other: &MetricState) -> bool {
        self.count += other.count;
        let mut ok = true;
        for (mine, theirs) in self.scores.iter_mut().zip(&other.scores) {
            ok &= mine.merge(theirs);
        }
        add_models(&mut self.models, &other.models);
        ok
    }
}

pub(super) fn add_models(
    into: &mut BTreeMap<String, ModelState>,
    from: &BTreeMap<String, ModelState>,
) {
    for (k, m) in from {
        let e = get_or_insert(into, k);
        e.count += m.count;
        e.val_sum += m.val_sum;
        e.val_count += m.val_count;
    }
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
    /// (1.3) True when every metric's `scores` and `models` hold its rows'
    /// statistics: always for a state built or merged since 1.3; for an
    /// older state only when it has one metric (its pooled statistics are
    /// that metric's, [`Self::fill_by_metric`]).
    pub by_metric: bool,
    /// (1.5) Per (metric, partition) aggregates in total, by model and by
    /// fold ([`super::groups`]): built with the rows, stored in the file's
    /// body, read by group-bys only (a head leaves them `None`; so does a
    /// state of before 1.5, or one whose keys overflowed).
    #[serde(skip)]
    pub groups: Option<super::groups::Groups>,
}

impl SummaryState {
    /// A state of before 1.3 (no per-metric statistics): with one metric
    /// (or none), its pooled statistics are that metric's, copied in; with
    /// several, `by_metric` stays false (an append then rebuilds the state
    /// from the rows).
    pub fn fill_by_metric(&mut self) {
        if !self.by_metric && self.metrics.len() <= 1 {
            self.fill_single_metric();
        }
    }

    /// With one metric (or none), copies the pooled statistics and model
    /// sums into that metric (a 1.3 head leaves them out then: they are
    /// the same) and marks the state `by_metric`. Nothing otherwise.
    pub fn fill_single_metric(&mut self) {
        if self.metrics.len() > 1 {
            return;
        }
        let scores = [
            self.val_score.clone(),
            self.test_score.clone(),
            self.train_score.clone(),
        ];
        let models = self.models.clone();
        for m in self.metrics.values_mut() {
            m.scores = scores.clone();
            m.models = models.clone();
        }
        self.by_metric = true;
    }

    /// Keeps, for each metric whose `val` list holds entries, only that
    /// list: best lists rank instances by their val row, and a footer need
    /// not carry the train and test rows' lists beside it (a third of the
    /// head). A metric without scored `val` rows keeps every partition's
    /// list. Every (metric, partition) with rows has a list, empty when no
    /// val score is finite, so a missing list means "pruned": queries for
    /// such a partition scan (the footer does not claim them).
    pub fn prune_tops(&mut self) {
        for parts in self.top.values_mut() {
            if parts.get("val").is_some_and(|v| !v.is_empty()) {
                parts.retain(|p, _| p == "val");
            }
        }
    }

    pub(super) fn scores_mut(&mut self) -> [&mut ScoreState; 3] {
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

    /// The best list of `metric`, best first: one entry per model instance
    /// (dataset, config, model, fold; `avg` and `w_avg` are instances of
    /// their own), ranked by the validation score with its test and train
    /// scores beside it, as nirs4all shows them: the `val` partition's
    /// top-k (an instance's train, val and test rows carry the same
    /// scores). Without `val` rows, every partition's entries, one per
    /// instance.
    pub fn top_of_metric(&self, metric: &str) -> Vec<TopEntry> {
        let Some(m) = self.metrics.get(metric) else {
            return Vec::new();
        };
        let Some(parts) = self.top.get(metric) else {
            return Vec::new();
        };
        // Each partition's list holds one entry per instance, so the
        // union's best k instances are exact.
        let mut t = TopK::new(self.top_k, m.direction);
        match parts.get("val").filter(|v| !v.is_empty()) {
            Some(val) => val.iter().cloned().for_each(|e| t.offer(e)),
            None => parts.values().flatten().cloned().for_each(|e| t.offer(e)),
        }
        t.sorted()
    }
}

/// Moves a state's top lists into heaps of k `state.top_k`.
pub(super) fn take_tops(state: &mut SummaryState) -> BTreeMap<String, BTreeMap<String, TopK>> {
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

pub(super) fn get_or_insert<'a, V: Default>(
    map: &'a mut BTreeMap<String, V>,
    key: &str,
) -> &'a mut V {
    // Two searches either way (a `get_mut` returned from its own arm is
    // rejected by the borrow checker), and a key copied only when new.
    if map.contains_key(key) {
        map.get_mut(key).expect("present")
    } else {
        map.entry(key.to_string()).or_default()
    }
}

/// `other`'s keys added to `mine`, the values of keys in both combined by
/// `both` and the others made by `new`. When `other` is not much smaller
/// than `mine` (workspace merges of a few large files: 19,000 configs in
/// 10 files), the two sorted maps are walked together and the result built
/// in one go (O(n + m), no search); else each key is looked up
/// (O(m log n): thousands of small files into one large map).
pub(super) fn union_with<V, W>(
    mine: &mut BTreeMap<String, V>,
    other: &BTreeMap<String, W>,
    new: impl Fn(&W) -> V,
    mut both: impl FnMut(&mut V, &W),
) {
    if other.len().saturating_mul(8) < mine.len() {
        for (k, w) in other {
            match mine.get_mut(k) {
                Some(v) => both(v, w),
                None => {
                    mine.insert(k.clone(), new(w));
                }
            }
        }
        return;
    }
    let mut out: Vec<(String, V)> = Vec::with_capacity(mine.len() + other.len());
    let mut theirs = other.iter().peekable();
    for (k, mut v) in std::mem::take(mine) {
        while let Some((tk, w)) = theirs.next_if(|(tk, _)| tk.as_str() < k.as_str()) {
            out.push((tk.clone(), new(w)));
        }
        if let Some((_, w)) = theirs.next_if(|(tk, _)| tk.as_str() == k.as_str()) {
            both(&mut v, w);
        }
        out.push((k, v));
    }
    out.extend(theirs.map(|(k, w)| (k.clone(), new(w))));
    // Sorted and distinct: `from_iter` finds the one run and builds the
    // tree in bulk.
    *mine = out.into_iter().collect();
}

/// `other`'s keys added to the set `mine` (as [`union_with`]).
pub(super) fn union_set(mine: &mut BTreeSet<String>, other: &BTreeSet<String>) {
    if other.len().saturating_mul(8) < mine.len() {
        other.iter().for_each(|k| insert(mine, k));
    } else if mine.is_empty() {
        mine.clone_from(other);
    } else {
        let both: Vec<String> = std::mem::take(mine)
            .into_iter()
            .chain(other.iter().cloned())
            .collect();
        // Two sorted runs: merged, duplicates dropped, built in bulk.
        *mine = both.into_iter().collect();
    }
}

pub(super) fn note_name(names: &mut Vec<String>, name: &str) {
    if names.len() < 2 && !names.iter().any(|n| n == name) {
        names.push(name.to_string());
    }
}

pub(super) fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *get_or_insert(into, k) += v;
    }
}

pub(super) fn better(dir: Direction, a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if dir.is_better(y, x) { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

pub(super) fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

pub(super) fn insert(set: &mut BTreeSet<String>, key: &str) {
    if !set.contains(key) {
        set.insert(key.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::{union_set, union_with};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// The oracle: every key looked up and inserted one at a time.
    fn one_by_one(
        mine: &BTreeMap<String, u64>,
        other: &BTreeMap<String, u64>,
    ) -> BTreeMap<String, u64> {
        let mut out = mine.clone();
        for (k, v) in other {
            *out.entry(k.clone()).or_insert(0) += v * 10;
        }
        out
    }

    proptest! {
        /// Both ways of `union_with` (walked together when the sizes are
        /// close, key by key when `other` is small) give the oracle's map;
        /// keys shared, disjoint and on both ends of the range.
        #[test]
        fn union_with_is_inserting_one_by_one(
            mine in proptest::collection::btree_map("[a-e]{0,3}", 0u64..100, 0..60),
            other in proptest::collection::btree_map("[a-e]{0,3}", 0u64..100, 0..60),
        ) {
            let mut got = mine.clone();
            union_with(&mut got, &other, |w| *w * 10, |v, w| *v += *w * 10);
            prop_assert_eq!(&got, &one_by_one(&mine, &other));
            let set = |m: &BTreeMap<String, u64>| m.keys().cloned().collect::<BTreeSet<String>>();
            let mut s = set(&mine);
            union_set(&mut s, &set(&other));
            prop_assert_eq!(s, set(&mine).union(&set(&other)).cloned().collect::<BTreeSet<_>>());
        }
    }
}
