//! Group-bys: each file's rows folded into per-dictionary-value
//! accumulators (count, mean, min, max, best by the metric's direction), the
//! files' sorted groups then merged.

use super::{
    derive, file_error, filter_columns, float_at, float_col, read_cols, selection, Scanned,
};
use crate::error::Result;
use crate::metric::Direction;
use crate::query::{Candidate, Group, GroupQuery};
use crate::reader::rows::StrCol;
use crate::reader::Workspace;
use arrow_array::{Array, Float64Array, RecordBatch};
use std::collections::HashMap;
use std::sync::Arc;

/// Count, finite count, sum, min and max of one group, and the finite
/// score closest to zero (first seen) for that direction's best.
#[derive(Debug, Clone, Copy)]
pub(super) struct Acc {
    pub(super) count: u64,
    pub(super) n: u64,
    pub(super) sum: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) zero: f64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            count: 0,
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            zero: f64::NAN,
        }
    }
}

impl Acc {
    /// Adds one row's score (NaN for null).
    #[inline]
    pub(super) fn add(&mut self, v: f64, toward_zero: bool) {
        self.count += 1;
        if v.is_finite() {
            self.n += 1;
            self.sum += v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            if toward_zero && (self.zero.is_nan() || v.abs() < self.zero.abs()) {
                self.zero = v;
            }
        }
    }

    pub(super) fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.n += o.n;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if self.zero.is_nan() || o.zero.abs() < self.zero.abs() {
            self.zero = o.zero;
        }
    }

    pub(super) fn best(&self, dir: Option<Direction>) -> Option<f64> {
        (self.n > 0).then_some(())?;
        match dir? {
            Direction::Maximize => Some(self.max),
            Direction::Minimize => Some(self.min),
            Direction::TowardZero => Some(self.zero),
        }
    }
}

/// Folds `rows` into `slots` (the slot of row `i` from `slot`), scores from
/// `score` (NaN for null). Consecutive rows go to one of four banks of
/// accumulators, merged at the end: with few groups, successive rows hit
/// the same accumulator, and each update waited for the one before it
/// (the fold was a quarter of a group-by by model; banks make it 2-3x
/// faster).
#[inline]
pub(super) fn fold(
    rows: &[u32],
    slots: &mut [Acc],
    slot: impl Fn(usize) -> usize,
    score: impl Fn(usize) -> f64,
    toward_zero: bool,
) {
    const BANKS: usize = 4;
    let n = slots.len();
    let mut banks = vec![Acc::default(); n * BANKS];
    for (j, &i) in rows.iter().enumerate() {
        let i = i as usize;
        let s = slot(i);
        if s < n {
            banks[s * BANKS + (j & (BANKS - 1))].add(score(i), toward_zero);
        }
    }
    for (s, a) in slots.iter_mut().enumerate() {
        for b in &banks[s * BANKS..(s + 1) * BANKS] {
            a.merge(b);
        }
    }
}

/// [`fold`] with the score column's layout resolved once.
pub(super) fn fold_scores(
    rows: &[u32],
    slots: &mut [Acc],
    slot: impl Fn(usize) -> usize,
    score: Option<&Float64Array>,
    toward_zero: bool,
) {
    match score {
        Some(a) if a.null_count() == 0 => {
            let v = a.values();
            fold(rows, slots, slot, |i| v[i], toward_zero);
        }
        Some(a) => fold(
            rows,
            slots,
            slot,
            |i| if a.is_valid(i) { a.value(i) } else { f64::NAN },
            toward_zero,
        ),
        None => fold(rows, slots, slot, |_| f64::NAN, toward_zero),
    }
}

/// One file's groups: (key, accumulator), sorted by key.
pub(super) type Groups = Vec<(Option<String>, Acc)>;

/// One file's groups, sorted by key; kept in the candidate's cache.
pub(super) fn file_groups(
    c: &Candidate,
    q: &GroupQuery,
    dir: Option<Direction>,
) -> Result<Arc<Groups>> {
    derive(
        c,
        || {
            format!(
                "groups where {:?} {:?} by {} of {} toward zero {}",
                q.filters.values,
                q.filters.ranges,
                q.key.column(),
                q.score,
                dir == Some(Direction::TowardZero)
            )
        },
        || {
            let g = fold_file_groups(c, q, dir)?;
            let bytes = g
                .iter()
                .map(|(k, _)| 96 + k.as_ref().map_or(0, String::len))
                .sum();
            Ok((g, bytes))
        },
    )
}

/// [`file_groups`] without the cache: one pass over the file's rows.
pub(super) fn fold_file_groups(
    c: &Candidate,
    q: &GroupQuery,
    dir: Option<Direction>,
) -> Result<Vec<(Option<String>, Acc)>> {
    let key = q.key.column();
    let mut names = filter_columns(&q.filters);
    names.push(q.score.as_str());
    if key != "dataset" {
        names.push(key);
    }
    let Some(b) = read_cols(c, &names)? else {
        return Ok(Vec::new());
    };
    let rows = selection(c, &q.filters, Some(&b))?;
    Ok(fold_rows(
        c,
        &b,
        &rows,
        q,
        dir == Some(Direction::TowardZero),
    ))
}

/// The groups of `rows` of batch `b` by `q`'s key, sorted by key.
fn fold_rows(c: &Candidate, b: &RecordBatch, rows: &[u32], q: &GroupQuery, tz: bool) -> Groups {
    let key = q.key.column();
    let mut out: Groups = Vec::new();
    let score = float_col(b, &q.score);
    if key == "dataset" {
        let mut one = [Acc::default()];
        fold_scores(rows, &mut one, |_| 0, score, tz);
        out.push((Some(c.dataset.clone()), one[0]));
        return out;
    }
    let col = StrCol::of(b, key);
    match &col {
        StrCol::Dict(keys, values) => {
            // One slot per dictionary value, the last for null.
            let null = values.len();
            let mut slots = vec![Acc::default(); null + 1];
            let k = keys.values();
            if keys.null_count() == 0 {
                fold_scores(rows, &mut slots, |i| k[i] as usize, score, tz);
            } else {
                let slot = |i| {
                    if keys.is_valid(i) {
                        k[i] as usize
                    } else {
                        null
                    }
                };
                fold_scores(rows, &mut slots, slot, score, tz);
            }
            for (s, a) in slots.iter().enumerate() {
                if a.count == 0 {
                    continue;
                }
                let k = (s < null && values.is_valid(s)).then(|| values.value(s).to_string());
                out.push((k, *a));
            }
        }
        _ => {
            let mut by: HashMap<Option<&str>, Acc> = HashMap::new();
            for &i in rows {
                let i = i as usize;
                let v = float_at(score, i).unwrap_or(f64::NAN);
                by.entry(col.get(i)).or_default().add(v, tz);
            }
            for (k, a) in by {
                out.push((k.map(str::to_string), a));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Which rows one grouping of a split group-by holds: (metric, partition),
/// each `None` where not split on (or for the rows without one).
pub(crate) type SplitKey = (Option<String>, Option<String>);

/// One file's groups per split, splits in key order; kept in the
/// candidate's cache.
type SplitGroups = Vec<(SplitKey, Groups)>;

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

/// Folds files' sorted groups, given in dataset order, into one list in
/// key order (null last), equal keys merged in file order.
fn merge_runs(ws: &Workspace, mut runs: Vec<(Option<String>, Acc)>) -> Vec<(Option<String>, Acc)> {
    // On the pool, a parallel stable sort: with 190k configs over 100 files
    // the merge was a third of a group-by's wall time on one thread.
    ws.install(|parallel| {
        if parallel {
            use rayon::slice::ParallelSliceMut;
            runs.par_sort_by(|a, b| a.0.cmp(&b.0));
        } else {
            runs.sort_by(|a, b| a.0.cmp(&b.0));
        }
    });
    let mut all: Vec<(Option<String>, Acc)> = Vec::with_capacity(runs.len());
    for (k, a) in runs {
        match all.last_mut() {
            Some((last, acc)) if *last == k => acc.merge(&a),
            _ => all.push((k, a)),
        }
    }
    let (mut named, nulls): (Vec<_>, Vec<_>) = all.into_iter().partition(|(k, _)| k.is_some());
    named.extend(nulls);
    named
}

/// The groups of merged accumulators, `best` by `dir`.
fn to_groups(all: Vec<(Option<String>, Acc)>, only: bool, dir: Option<Direction>) -> Vec<Group> {
    all.into_iter()
        .map(|(key, a)| Group {
            key,
            count: a.count,
            mean: (a.n > 0).then(|| a.sum / a.n as f64),
            min: (!only && a.n > 0).then_some(a.min),
            max: (!only && a.n > 0).then_some(a.max),
            best: if only { None } else { a.best(dir) },
        })
        .collect()
}

/// [`group`] within each (metric, partition) of the rows, in one pass over
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
) -> Scanned<Vec<(SplitKey, Vec<Group>)>> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|a, b| cands[*a].dataset.cmp(&cands[*b].dataset));
    let parts = ws.par_map(&order, |&fi| {
        file_split_groups(&cands[fi], q, by_metric, by_partition)
    });
    let mut splits: std::collections::BTreeMap<SplitKey, Vec<(Option<String>, Acc)>> =
        std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    for (p, fi) in parts.into_iter().zip(&order) {
        match p {
            Ok(p) => {
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
    Scanned { value, errors }
}

/// Count, mean, min, max and best per group; groups in key order, null
/// last. Files are folded in dataset order, so `best` among equals is the
/// first row's.
pub(crate) fn group(
    ws: &Workspace,
    cands: &[Candidate],
    q: &GroupQuery,
    dir: Option<Direction>,
) -> Scanned<Vec<Group>> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|a, b| cands[*a].dataset.cmp(&cands[*b].dataset));
    let parts = ws.par_map(&order, |&fi| file_groups(&cands[fi], q, dir));
    // Each file's groups come sorted: concatenated in dataset order, a
    // stable sort merges the runs (O(groups x log files)) and keeps equal
    // keys in file order, then equal neighbours fold.
    let mut runs: Vec<(Option<String>, Acc)> = Vec::new();
    let mut errors = Vec::new();
    for (p, fi) in parts.into_iter().zip(&order) {
        match p {
            Ok(p) => runs.extend(p.iter().cloned()),
            Err(e) => errors.push(file_error(&cands[*fi], &e)),
        }
    }
    let value = to_groups(merge_runs(ws, runs), q.count_and_mean_only, dir);
    Scanned { value, errors }
}
