//! Split group-bys: each file's rows grouped within each (metric,
//! partition) in one pass, by the dictionary codes of the three columns
//! (or, when they do not combine into few slots, by bucketing the rows),
//! so averages and bests never pool two metrics or an instance's three
//! partition rows.

use super::group::{fold_rows, fold_scores, merge_runs, to_groups, Acc, Groups};
use super::{derive, file_error, filter_columns, float_col, read_cols, selection, Scanned};
use crate::error::Result;
use crate::metric::Direction;
use crate::query::{Candidate, Group, GroupQuery};
use crate::rows::StrCol;
use crate::workspace::Workspace;
use arrow_array::{Array, RecordBatch};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) use super::acc::SplitKey;

/// One file's groups per split, splits in key order; kept in the
/// candidate's cache.
type SplitGroups = Vec<(SplitKey, Groups)>;

/// Every split's groups, and how many files their stored aggregates
/// answered.
type SplitAnswer = (Vec<(SplitKey, Vec<Group>)>, usize);

/// [`file_groups`] within each (metric, partition) of the file's rows
/// (`by_metric`, `by_partition` say which to split on): one pass reading
/// the two columns more, the rows bucketed by their dictionary codes, then
/// each bucket grouped by the key. The score closest to zero is kept too,
/// so any split's direction can pick its best.
fn file_split_groups(
    c: &Candidate,
    q: &GroupQuery,
    by_metric: bool,
    by_partition: bool,
) -> Result<Arc<SplitGroups>> {
    derive(
        c,
        || {
            format!(
                "split groups where {:?} {:?} by {} of {} metric {by_metric} partition {by_partition}",
                q.filters.values,
                q.filters.ranges,
                q.key.column(),
                q.score,
            )
        },
        || {
            let g = fold_file_split_groups(c, q, by_metric, by_partition)?;
            let bytes = g
                .iter()
                .flat_map(|(_, g)| g)
                .map(|(k, _)| 96 + k.as_ref().map_or(0, String::len))
                .sum();
            Ok((g, bytes))
        },
    )
}

fn fold_file_split_groups(
    c: &Candidate,
    q: &GroupQuery,
    by_metric: bool,
    by_partition: bool,
) -> Result<SplitGroups> {
    let key = q.key.column();
    let mut names = filter_columns(&q.filters);
    names.push(q.score.as_str());
    if key != "dataset" {
        names.push(key);
    }
    if by_metric {
        names.push("metric");
    }
    if by_partition {
        names.push("partition");
    }
    let Some(b) = read_cols(c, &names)? else {
        return Ok(Vec::new());
    };
    let rows = selection(c, &q.filters, Some(&b))?;
    let metric = by_metric.then(|| StrCol::of(&b, "metric"));
    let partition = by_partition.then(|| StrCol::of(&b, "partition"));
    if let Some(out) = fold_coded(c, &b, &rows, q, metric.as_ref(), partition.as_ref()) {
        return Ok(out);
    }
    // Else rows bucketed by (metric, partition): by dictionary codes (a
    // row's bucket is two array reads), else by value.
    let code = |col: &Option<StrCol<'_>>| -> Option<(usize, Vec<u32>)> {
        match col {
            None => Some((1, Vec::new())),
            Some(StrCol::Dict(keys, values)) => {
                let null = values.len() as u32;
                let codes = rows
                    .iter()
                    .map(|&i| {
                        let i = i as usize;
                        if keys.is_valid(i) {
                            keys.value(i) as u32
                        } else {
                            null
                        }
                    })
                    .collect();
                Some((values.len() + 1, codes))
            }
            Some(_) => None,
        }
    };
    let name = |col: &Option<StrCol<'_>>, code: usize, row: u32| -> Option<String> {
        match col {
            Some(StrCol::Dict(_, values)) => (code < values.len() && values.is_valid(code))
                .then(|| values.value(code).to_string()),
            Some(c) => c.get(row as usize).map(str::to_string),
            None => None,
        }
    };
    let mut buckets: Vec<(SplitKey, Vec<u32>)> = Vec::new();
    let coded = match (code(&metric), code(&partition)) {
        (Some(m), Some(p)) if m.0 * p.0 <= 1 << 16 => Some((m, p)),
        _ => None,
    };
    if let Some(((nm, mc), (np, pc))) = coded {
        // Bucket of each (metric code, partition code), by table.
        let mut at = vec![usize::MAX; nm * np];
        for (j, &i) in rows.iter().enumerate() {
            let (m, p) = (
                mc.get(j).map_or(0, |&c| c as usize),
                pc.get(j).map_or(0, |&c| c as usize),
            );
            let cell = &mut at[m * np + p];
            if *cell == usize::MAX {
                *cell = buckets.len();
                buckets.push(((name(&metric, m, i), name(&partition, p, i)), Vec::new()));
            }
            buckets[*cell].1.push(i);
        }
    } else {
        let mut index: HashMap<(Option<&str>, Option<&str>), usize> = HashMap::new();
        for &i in rows.iter() {
            let at = (
                metric.as_ref().and_then(|m| m.get(i as usize)),
                partition.as_ref().and_then(|p| p.get(i as usize)),
            );
            let n = buckets.len();
            let slot = *index.entry(at).or_insert(n);
            if slot == n {
                buckets.push((
                    (at.0.map(str::to_string), at.1.map(str::to_string)),
                    Vec::new(),
                ));
            }
            buckets[slot].1.push(i);
        }
    }
    let mut out: SplitGroups = buckets
        .into_iter()
        .map(|(k, rows)| (k, fold_rows(c, &b, &rows, q, true)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A dictionary column's code of each row (`len` for null) and its
/// number of codes; one code for a column not split on.
struct Codes<'a> {
    keys: Option<&'a arrow_array::Int32Array>,
    values: Option<&'a arrow_array::StringArray>,
    n: usize,
}

impl<'a> Codes<'a> {
    fn of(col: Option<&'a StrCol<'a>>) -> Option<Self> {
        match col {
            None => Some(Codes {
                keys: None,
                values: None,
                n: 1,
            }),
            Some(StrCol::Dict(keys, values)) => Some(Codes {
                keys: Some(keys),
                values: Some(values),
                n: values.len() + 1,
            }),
            Some(_) => None,
        }
    }

    #[inline]
    fn at(&self, i: usize) -> usize {
        match self.keys {
            Some(k) if k.is_valid(i) => k.value(i) as usize,
            Some(_) => self.n - 1,
            None => 0,
        }
    }

    fn name(&self, code: usize) -> Option<String> {
        let v = self.values?;
        (code < v.len() && v.is_valid(code)).then(|| v.value(code).to_string())
    }
}

/// The split groups in one fold when the metric, partition and key
/// columns are dictionaries (as parquet decodes them) and their codes
/// combine into few slots: one accumulator per (metric, partition, key)
/// code, no rows moved. `None` otherwise (the caller buckets rows).
fn fold_coded(
    c: &Candidate,
    b: &RecordBatch,
    rows: &[u32],
    q: &GroupQuery,
    metric: Option<&StrCol<'_>>,
    partition: Option<&StrCol<'_>>,
) -> Option<SplitGroups> {
    const MAX_SLOTS: usize = 1 << 18;
    let (m, p) = (Codes::of(metric)?, Codes::of(partition)?);
    let key_col = (q.key.column() != "dataset").then(|| StrCol::of(b, q.key.column()));
    let k = Codes::of(key_col.as_ref())?;
    let slots_n = m.n.checked_mul(p.n)?.checked_mul(k.n)?;
    if slots_n > MAX_SLOTS {
        return None;
    }
    let mut slots = vec![Acc::default(); slots_n];
    let score = float_col(b, &q.score);
    let (np, nk) = (p.n, k.n);
    // Each row's slot, column by column over contiguous codes (loops the
    // compiler vectorizes), then one fold.
    let n = b.num_rows();
    let mut code = vec![0u32; n];
    for (col, scale) in [(&m, np * nk), (&p, nk), (&k, 1)] {
        let Some(keys) = col.keys else { continue };
        let scale = scale as u32;
        if keys.null_count() == 0 {
            for (c, &v) in code.iter_mut().zip(keys.values().iter()) {
                *c += v as u32 * scale;
            }
        } else {
            for (i, c) in code.iter_mut().enumerate() {
                *c += col.at(i) as u32 * scale;
            }
        }
    }
    fold_scores(rows, &mut slots, |i| code[i] as usize, score, true);
    let mut splits: std::collections::BTreeMap<SplitKey, Groups> =
        std::collections::BTreeMap::new();
    for (s, a) in slots.iter().enumerate() {
        if a.count == 0 {
            continue;
        }
        let (mp, kc) = (s / nk, s % nk);
        let split = (m.name(mp / np), p.name(mp % np));
        let key = if key_col.is_some() {
            k.name(kc)
        } else {
            Some(c.dataset.clone())
        };
        splits.entry(split).or_default().push((key, *a));
    }
    Some(
        splits
            .into_iter()
            .map(|(k, mut g)| {
                g.sort_by(|a, b| a.0.cmp(&b.0));
                (k, g)
            })
            .collect(),
    )
}

/// [`super::group::group`] within each (metric, partition) of the rows, in one pass over
/// each file: the splits in (metric, partition) order (rows without a
/// metric or a partition form a split of their own, never dropped), each
/// with its groups, `best` by `dir` of the split's metric.
pub(crate) fn group_split(
    ws: &Workspace,
    cands: &[Candidate],
    q: &GroupQuery,
    by_metric: bool,
    by_partition: bool,
    dir: impl Fn(Option<&str>) -> Option<Direction>,
) -> Scanned<SplitAnswer> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|a, b| cands[*a].dataset.cmp(&cands[*b].dataset));
    let parts = ws.par_map(&order, |&fi| {
        let c = &cands[fi];
        match super::stored::stored_groups(c, q, by_metric, by_partition) {
            Some(splits) => Ok((Arc::new(splits), true)),
            None => file_split_groups(c, q, by_metric, by_partition).map(|g| (g, false)),
        }
    });
    let mut splits: std::collections::BTreeMap<SplitKey, Vec<(Option<String>, Acc)>> =
        std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    let mut stored = 0;
    for (p, fi) in parts.into_iter().zip(&order) {
        match p {
            Ok((p, from_footer)) => {
                stored += usize::from(from_footer);
                for (k, g) in p.iter() {
                    splits
                        .entry(k.clone())
                        .or_default()
                        .extend(g.iter().cloned());
                }
            }
            Err(e) => errors.push(file_error(&cands[*fi], &e)),
        }
    }
    // Rows without a metric (or partition) last, as null keys are.
    let mut value: Vec<(SplitKey, Vec<Group>)> = splits
        .into_iter()
        .map(|(k, runs)| {
            let d = dir(k.0.as_deref());
            let groups = to_groups(merge_runs(ws, runs), q.count_and_mean_only, d);
            (k, groups)
        })
        .collect();
    value.sort_by(|a, b| {
        let key = |k: &SplitKey| (k.0.is_none(), k.0.clone(), k.1.is_none(), k.1.clone());
        key(&a.0).cmp(&key(&b.0))
    });
    Scanned {
        value: (value, stored),
        errors,
    }
}
