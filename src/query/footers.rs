//! Answers from footers alone, when they are exact: counts with at most
//! one facet filter, top-k within the stored k, counts and means by model.

use super::filter::Filters;
use super::model::{Group, GroupKey, GroupQuery, TopQuery};
use super::Candidate;
use crate::metric::Direction;
use crate::summary::topk::{TopEntry, TopK};
use crate::summary::SummaryState;
use std::collections::{BTreeMap, BTreeSet};

/// The total from footers: no filter beyond the dataset, or one facet
/// field (partition, model, task type or metric) whose counts the state
/// keeps exactly. `None` when the footers cannot answer.
pub(super) fn footer_count(cands: &[Candidate], f: &Filters) -> Option<u64> {
    if !f.ranges.is_empty() {
        return None;
    }
    let facets: Vec<(&String, &Vec<String>)> = f
        .values
        .iter()
        .filter(|(k, _)| k.as_str() != "dataset")
        .collect();
    match facets.as_slice() {
        [] => Some(cands.iter().map(|c| c.info.num_rows).sum()),
        [(field, wanted)] => {
            let wanted: BTreeSet<&String> = wanted.iter().collect();
            cands
                .iter()
                .map(|c| {
                    let st = c.state()?;
                    wanted
                        .iter()
                        .map(|w| facet_count(st, field, w))
                        .sum::<Option<u64>>()
                })
                .sum()
        }
        _ => None,
    }
}

/// Rows of `value` in one facet of the state, if the state keeps that facet.
pub(super) fn facet_count(st: &SummaryState, field: &str, value: &str) -> Option<u64> {
    Some(match field {
        "partition" => st.partitions.get(value).copied().unwrap_or(0),
        "task_type" => st.task_types.get(value).copied().unwrap_or(0),
        "model_name" => st.models.get(value).map_or(0, |m| m.count),
        "metric" => st.metrics.get(value).map_or(0, |m| m.count),
        _ => return None,
    })
}

/// The top-k from the footers' heaps, when they hold it: filters only on
/// dataset, metric and partition, the val score, every file with state and
/// a stored k at least `q.k`.
pub(super) fn footer_top(
    cands: &[Candidate],
    q: &TopQuery,
    dir: Direction,
) -> Option<Vec<TopEntry>> {
    let allowed = ["dataset", "metric", "partition"];
    if q.score != "val_score"
        || !q.filters.ranges.is_empty()
        || q.filters
            .values
            .keys()
            .any(|k| !allowed.contains(&k.as_str()))
    {
        return None;
    }
    let metrics = q.filters.get("metric");
    let parts = q.filters.get("partition");
    let mut t = TopK::new(q.k, dir);
    for c in cands {
        let st = c.state()?;
        if st.top_k < q.k {
            return None;
        }
        for (m, by_part) in &st.top {
            if metrics.is_some_and(|w| !w.contains(m)) {
                continue;
            }
            // A footer keeps only the `val` list of a metric that has one
            // (`SummaryState::prune_tops`): a partition asked for with rows
            // but no list cannot be answered here.
            let unlisted = st.partitions.iter().any(|(p, n)| {
                *n > 0 && !by_part.contains_key(p) && parts.is_none_or(|w| w.iter().any(|x| x == p))
            });
            // Rows without a partition (not in the counts) have the ""
            // list, pruned beside a val list: every partition asked needs it.
            let null_rows = st.rows > st.partitions.values().sum::<u64>();
            let unlisted = unlisted || (parts.is_none() && null_rows && !by_part.contains_key(""));
            if unlisted {
                return None;
            }
            for (p, entries) in by_part {
                if parts.is_some_and(|w| !w.iter().any(|x| x == p)) {
                    continue;
                }
                for e in entries {
                    let mut e = e.clone();
                    e.dataset = Some(c.dataset.clone());
                    t.offer(e);
                }
            }
        }
    }
    Some(t.sorted())
}

/// Counts and means by model from the footers: no filter beyond the
/// dataset, every file with state, and no row without a model name.
pub(super) fn footer_groups(cands: &[Candidate], q: &GroupQuery) -> Option<Vec<Group>> {
    if q.key != GroupKey::Model || q.score != "val_score" || !q.filters.is_file_level_only() {
        return None;
    }
    let mut acc: BTreeMap<String, (u64, f64, u64)> = BTreeMap::new();
    for c in cands {
        let st = c.state()?;
        let named: u64 = st.models.values().map(|m| m.count).sum();
        if named != st.rows {
            return None;
        }
        for (name, m) in &st.models {
            let e = acc.entry(name.clone()).or_default();
            e.0 += m.count;
            e.1 += m.val_sum;
            e.2 += m.val_count;
        }
    }
    Some(
        acc.into_iter()
            .map(|(k, (count, sum, n))| Group {
                key: Some(k),
                count,
                mean: (n > 0).then(|| sum / n as f64),
                min: None,
                max: None,
                best: None,
            })
            .collect(),
    )
}
