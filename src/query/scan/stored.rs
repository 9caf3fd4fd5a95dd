//! Group-bys from a file's stored aggregates (format 1.5,
//! [`crate::summary::groups`]): when the query filters on nothing but the
//! metric, the partition and the dataset and groups by model, fold,
//! dataset, partition or metric, each (metric, partition) cell of the
//! file's aggregates that the filters keep gives its groups without a row
//! read. A file without them (written before 1.5, keys overflowed, rows
//! read in place) is scanned as before.

use super::acc::{Acc, Groups, SplitKey};
use crate::query::{Candidate, GroupKey, GroupQuery};
use crate::summary::groups::{Agg, Cell};
use std::collections::BTreeMap;

/// The file's groups per split, from its stored aggregates, when they
/// answer `q` exactly: splits by metric and by partition as asked (`None`
/// where not split on), each split's groups in key order. `None` when the
/// query or the file does not allow it, or when its stored bytes are not
/// the ones its head names or do not decode: the caller then reads the
/// file's rows, which give the answer (or the file's own error). Cost: one
/// `pread` of a few KB on the file's first use, then O(cells x keys).
pub(super) fn stored_groups(
    c: &Candidate,
    q: &GroupQuery,
    by_metric: bool,
    by_partition: bool,
) -> Option<Vec<(SplitKey, Groups)>> {
    let score = ["val_score", "test_score", "train_score"]
        .iter()
        .position(|s| *s == q.score)?;
    let f = &q.filters;
    if !f.ranges.is_empty()
        || f.values
            .keys()
            .any(|k| !matches!(k.as_str(), "metric" | "partition" | "dataset"))
        || q.key == GroupKey::Config
        || c.rows.is_some()
    {
        return None;
    }
    c.state()?;
    let groups = c
        .info
        .summary
        .as_ref()?
        .groups(&c.path, &c.info.key)
        .ok()??;
    let keeps = |field: &str, v: &Option<String>| match f.get(field) {
        None => true,
        Some(w) => v.as_ref().is_some_and(|v| w.contains(v)),
    };
    let mut splits: BTreeMap<SplitKey, BTreeMap<Option<String>, Acc>> = BTreeMap::new();
    for ((metric, part), cell) in &groups.cells {
        if !keeps("metric", metric) || !keeps("partition", part) {
            continue;
        }
        let split = (
            metric.clone().filter(|_| by_metric),
            part.clone().filter(|_| by_partition),
        );
        let into = splits.entry(split).or_default();
        for (key, agg) in keyed(c, q.key, metric, part, cell) {
            into.entry(key).or_default().merge(&acc(agg, score));
        }
    }
    Some(
        splits
            .into_iter()
            .map(|(k, g)| (k, g.into_iter().collect()))
            .collect(),
    )
}

/// The cell's groups by `key`.
fn keyed<'c>(
    c: &Candidate,
    key: GroupKey,
    metric: &Option<String>,
    part: &Option<String>,
    cell: &'c Cell,
) -> Vec<(Option<String>, &'c Agg)> {
    match key {
        GroupKey::Model => cell.models.iter().map(|(k, a)| (k.clone(), a)).collect(),
        GroupKey::Fold => cell.folds.iter().map(|(k, a)| (k.clone(), a)).collect(),
        GroupKey::Dataset => vec![(Some(c.dataset.clone()), &cell.total)],
        GroupKey::Partition => vec![(part.clone(), &cell.total)],
        GroupKey::Metric => vec![(metric.clone(), &cell.total)],
        GroupKey::Config => Vec::new(),
    }
}

/// A stored aggregate as the scan's accumulator of one score.
fn acc(a: &Agg, score: usize) -> Acc {
    let s = &a.scores[score];
    Acc {
        count: a.count,
        n: s.n,
        sum: s.sum,
        min: s.min,
        max: s.max,
        zero: s.zero,
    }
}
