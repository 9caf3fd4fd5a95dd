//! Group-bys: each file's rows folded into per-dictionary-value
//! accumulators (count, mean, min, max, best by the metric's direction), the
//! files' sorted groups then merged.

pub(super) use super::acc::{Acc, Groups};
use super::{
    derive, file_error, filter_columns, float_at, float_col, read_cols, selection, Scanned,
};
use crate::error::Result;
use crate::metric::Direction;
use crate::query::{Candidate, Group, GroupQuery};
use crate::rows::StrCol;
use crate::workspace::Workspace;
use arrow_array::{Array, Float64Array, RecordBatch};
use std::collections::HashMap;
use std::sync::Arc;

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
pub(super) fn fold_rows(
    c: &Candidate,
    b: &RecordBatch,
    rows: &[u32],
    q: &GroupQuery,
    tz: bool,
) -> Groups {
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

/// Folds files' sorted groups, given in dataset order, into one list in
/// key order (null last), equal keys merged in file order.
pub(super) fn merge_runs(
    ws: &Workspace,
    mut runs: Vec<(Option<String>, Acc)>,
) -> Vec<(Option<String>, Acc)> {
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
pub(super) fn to_groups(
    all: Vec<(Option<String>, Acc)>,
    only: bool,
    dir: Option<Direction>,
) -> Vec<Group> {
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

/// Count, mean, min, max and best per group; groups in key order, null
/// last. Files are folded in dataset order, so `best` among equals is the
/// first row's. Files whose stored aggregates answer the query give their
/// groups without a row read ([`super::stored`]); the value's second part
/// counts them.
pub(crate) fn group(
    ws: &Workspace,
    cands: &[Candidate],
    q: &GroupQuery,
    dir: Option<Direction>,
) -> Scanned<(Vec<Group>, usize)> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|a, b| cands[*a].dataset.cmp(&cands[*b].dataset));
    let parts = ws.par_map(&order, |&fi| {
        let c = &cands[fi];
        match super::stored::stored_groups(c, q, false, false) {
            Some(splits) => Ok((
                Arc::new(splits.into_iter().flat_map(|(_, g)| g).collect()),
                true,
            )),
            None => file_groups(c, q, dir).map(|g| (g, false)),
        }
    });
    // Each file's groups come sorted: concatenated in dataset order, a
    // stable sort merges the runs (O(groups x log files)) and keeps equal
    // keys in file order, then equal neighbours fold.
    let mut runs: Vec<(Option<String>, Acc)> = Vec::new();
    let mut errors = Vec::new();
    let mut stored = 0;
    for (p, fi) in parts.into_iter().zip(&order) {
        match p {
            Ok((p, from_footer)) => {
                stored += usize::from(from_footer);
                runs.extend(p.iter().cloned());
            }
            Err(e) => errors.push(file_error(&cands[*fi], &e)),
        }
    }
    let value = to_groups(merge_runs(ws, runs), q.count_and_mean_only, dir);
    Scanned {
        value: (value, stored),
        errors,
    }
}
