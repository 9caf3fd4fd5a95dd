//! Bounded top-k of predictions by a metric's direction.
//!
//! A max-heap keyed on "worse first" holds at most k entries: a new
//! prediction either loses to the current worst in O(1) or replaces it in
//! O(log k). Ties are broken by (dataset, row ordinal), first row first,
//! which reproduces pandas' `nlargest(keep="first")` that nirs4all uses, and
//! keeps the order stable across appends and workspace merges. Merging two
//! top-k lists and keeping k is exactly the top-k of the union.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::metric::Direction;

/// One ranked prediction, as the summary lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct TopEntry {
    /// Row id.
    pub id: Option<String>,
    /// Model name.
    pub model_name: Option<String>,
    /// Pipeline config.
    pub config_name: Option<String>,
    /// The ranked score.
    pub val_score: Option<f64>,
    /// The row's test score.
    pub test_score: Option<f64>,
    /// (1.3) The row's train score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_score: Option<f64>,
    /// Fold entry.
    pub fold_id: Option<String>,
    /// Partition.
    pub partition: Option<String>,
    /// Dataset, set when entries from several files are merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// 0-based row ordinal within its file: the tie-breaker.
    #[serde(default)]
    pub row: u64,
}

impl TopEntry {
    fn score(&self) -> f64 {
        self.val_score.unwrap_or(f64::NAN)
    }
}

/// True when two entries are rows of one model instance: the same
/// dataset, config, model and fold (`avg` and `w_avg` are instances of
/// their own), as nirs4all counts trained models; a trained model's train,
/// val and test rows carry the same scores. Entries whose config, model
/// and fold are all unknown (placeholders of a row search) are never the
/// same instance.
pub fn same_instance(a: &TopEntry, b: &TopEntry) -> bool {
    let unknown =
        |e: &TopEntry| e.config_name.is_none() && e.model_name.is_none() && e.fold_id.is_none();
    !unknown(a)
        && a.fold_id == b.fold_id
        && a.config_name == b.config_name
        && a.model_name == b.model_name
        && a.dataset == b.dataset
}

/// Keeps the first (best) entry of each model instance ([`same_instance`]),
/// in order.
pub fn one_per_instance(entries: Vec<TopEntry>) -> Vec<TopEntry> {
    let mut out: Vec<TopEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        if !out.iter().any(|o| same_instance(o, &e)) {
            out.push(e);
        }
    }
    out
}

/// Orders entries best first under `direction`.
pub fn compare(direction: Direction, a: &TopEntry, b: &TopEntry) -> Ordering {
    direction
        .compare(a.score(), b.score())
        .then_with(|| a.dataset.cmp(&b.dataset))
        .then_with(|| a.row.cmp(&b.row))
}

struct Ranked {
    direction: Direction,
    entry: TopEntry,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    // "Greater" means worse, so the heap's top is the worst kept entry.
    fn cmp(&self, other: &Self) -> Ordering {
        compare(self.direction, &self.entry, &other.entry)
    }
}

/// The best `k` predictions under one direction.
pub struct TopK {
    k: usize,
    direction: Direction,
    heap: BinaryHeap<Ranked>,
}

impl TopK {
    /// An empty top-k.
    pub fn new(k: usize, direction: Direction) -> Self {
        TopK {
            k,
            direction,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// A top-k holding `entries` (for example decoded from a footer).
    pub fn from_entries(k: usize, direction: Direction, entries: Vec<TopEntry>) -> Self {
        let mut t = TopK::new(k, direction);
        entries.into_iter().for_each(|e| t.offer(e));
        t
    }

    /// True when an entry with this score and ordinal would be kept; lets
    /// callers skip building an entry (and its strings) for most rows.
    pub fn would_keep(&self, score: f64, row: u64) -> bool {
        if self.k == 0 || !score.is_finite() {
            return false;
        }
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.k => {
                let probe = TopEntry {
                    id: None,
                    model_name: None,
                    config_name: None,
                    val_score: Some(score),
                    test_score: None,
                    train_score: None,
                    fold_id: None,
                    partition: None,
                    dataset: worst.entry.dataset.clone(),
                    row,
                };
                compare(self.direction, &probe, &worst.entry) == Ordering::Less
            }
            _ => true,
        }
    }

    /// True when an entry of `score` from `dataset` at `row` would be kept
    /// (ties break by dataset, then row). O(1), allocates nothing.
    pub fn beats_worst(&self, score: f64, dataset: Option<&str>, row: u64) -> bool {
        if self.k == 0 || !score.is_finite() {
            return false;
        }
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.k => {
                let w = &worst.entry;
                self.direction
                    .compare(score, w.score())
                    .then_with(|| dataset.cmp(&w.dataset.as_deref()))
                    .then_with(|| row.cmp(&w.row))
                    == Ordering::Less
            }
            _ => true,
        }
    }

    /// Entries kept (at most k).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// True when k entries are kept (a new one must beat the worst).
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// The worst kept entry, the one a new entry must beat once full.
    pub fn worst(&self) -> Option<&TopEntry> {
        self.heap.peek().map(|r| &r.entry)
    }

    /// Offers one entry; entries without a finite score are ignored. A
    /// best list holds one entry per model instance ([`same_instance`]): an
    /// entry of an instance already kept replaces it only if better. O(log
    /// k) plus an O(k) scan for the instance (offers are rare: most rows
    /// are refused by [`Self::would_keep`] first).
    pub fn offer(&mut self, entry: TopEntry) {
        if self.k == 0 || !entry.score().is_finite() {
            return;
        }
        if let Some(kept) = self.heap.iter().find(|r| same_instance(&r.entry, &entry)) {
            if compare(self.direction, &entry, &kept.entry) != Ordering::Less {
                return;
            }
            self.heap.retain(|r| !same_instance(&r.entry, &entry));
        }
        self.heap.push(Ranked {
            direction: self.direction,
            entry,
        });
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// Offers every entry of `other`.
    pub fn merge(&mut self, other: &TopK) {
        for r in &other.heap {
            self.offer(r.entry.clone());
        }
    }

    /// The kept entries, best first.
    pub fn sorted(&self) -> Vec<TopEntry> {
        let mut v: Vec<TopEntry> = self.heap.iter().map(|r| r.entry.clone()).collect();
        v.sort_by(|a, b| compare(self.direction, a, b));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(score: f64, row: u64) -> TopEntry {
        TopEntry {
            id: Some(format!("r{row}")),
            model_name: None,
            config_name: None,
            val_score: Some(score),
            test_score: None,
            train_score: None,
            fold_id: None,
            partition: None,
            dataset: None,
            row,
        }
    }

    proptest! {
        #[test]
        fn topk_equals_sort_then_truncate(
            scores in prop::collection::vec(prop_oneof![0i32..20, Just(5)], 0..100),
            k in 0usize..15,
            dir in prop_oneof![Just(Direction::Maximize), Just(Direction::Minimize), Just(Direction::TowardZero)],
        ) {
            let entries: Vec<TopEntry> = scores.iter().enumerate()
                .map(|(i, s)| entry(*s as f64 - 10.0, i as u64)).collect();
            let mut t = TopK::new(k, dir);
            for e in entries.iter().cloned() {
                let keep = t.would_keep(e.val_score.unwrap(), e.row);
                let before = t.sorted();
                t.offer(e);
                prop_assert_eq!(keep, before != t.sorted());
            }
            let mut oracle = entries.clone();
            oracle.sort_by(|a, b| dir.rank_key(a.val_score.unwrap())
                .total_cmp(&dir.rank_key(b.val_score.unwrap())).then(a.row.cmp(&b.row)));
            oracle.truncate(k);
            prop_assert_eq!(t.sorted(), oracle);
        }
    }

    #[test]
    fn non_finite_scores_are_not_ranked() {
        let mut t = TopK::new(3, Direction::Maximize);
        t.offer(entry(f64::NAN, 0));
        t.offer(entry(f64::INFINITY, 1));
        t.offer(entry(1.0, 2));
        assert_eq!(t.sorted().len(), 1);
    }
}
