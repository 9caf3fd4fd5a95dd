//! Top-k by each metric's direction: the page selection cut exactly at k,
//! ties by file order, with the winners' details read last.

use super::keys::Order;
use super::page::{ranked, without_late_failures};
use super::window::Ranking;
use super::{derive, file_error, float_at, float_col, Scanned};
use crate::error::Result;
use crate::metric::Direction;
use crate::query::{Candidate, TopQuery};
use crate::summary::topk::TopEntry;
use crate::workspace::FileError;
use crate::workspace::Workspace;
use std::collections::{BTreeMap, HashMap};

/// The best `k` rows by the score under `dir`; ties by dataset, then row.
/// Reads the filter and score columns of every file, then the top-list
/// fields of the `k` rows alone.
pub(crate) fn top(
    ws: &Workspace,
    cands: &[Candidate],
    q: &TopQuery,
    dir: Direction,
) -> Result<Scanned<Vec<TopEntry>>> {
    if cands.is_empty() || q.k == 0 {
        return Ok(Scanned {
            value: Vec::new(),
            errors: Vec::new(),
        });
    }
    let order = Order::Rank {
        score: q.score.as_str(),
        dir,
    };
    without_late_failures(cands, |cands, late| top_of(ws, cands, q, order, late))
}

/// One attempt of [`top`] on `cands`: files whose details cannot be read
/// go to `late`.
pub(super) fn top_of(
    ws: &Workspace,
    cands: &[Candidate],
    q: &TopQuery,
    order: Order<'_>,
    late: &mut Vec<FileError>,
) -> Result<Scanned<Vec<TopEntry>>> {
    let Scanned {
        value: (found, _),
        errors,
    } = ranked(
        Ranking {
            ws,
            cands,
            f: &q.filters,
            order,
            offset: 0,
            limit: q.k,
        },
        late,
    )?;
    let mut by_file: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (fi, r) in &found {
        by_file.entry(*fi).or_default().push(*r);
    }
    let jobs: Vec<(usize, Vec<u64>)> = by_file.into_iter().collect();
    let read = ws.par_map(&jobs, |(fi, rows)| {
        let c = &cands[*fi];
        derive(
            c,
            || format!("top details of rows {rows:?}"),
            || {
                let es = match &c.rows {
                    Some(src) => {
                        let mut sorted = rows.clone();
                        sorted.sort_unstable();
                        sorted.dedup();
                        let b = src.columns(&crate::rows::scores::TOP_DETAILS, Some(&sorted))?;
                        crate::rows::scores::top_details_of(
                            &b,
                            &sorted,
                            &c.path.display().to_string(),
                        )?
                    }
                    None => crate::rows::scores::read_top_details(&c.path, rows)?,
                };
                Ok((es, rows.len() * 512))
            },
        )
        .map(|es| (*fi, es.as_ref().clone()))
    });
    let mut got: HashMap<(usize, u64), TopEntry> = HashMap::new();
    for (r, (fi, _)) in read.into_iter().zip(&jobs) {
        let es = match r {
            Ok((_, es)) => es,
            Err(e) => {
                late.push(file_error(&cands[*fi], &e));
                continue;
            }
        };
        let fi = *fi;
        for mut e in es {
            e.dataset = Some(cands[fi].dataset.clone());
            if q.score != "val_score" {
                e.val_score = None;
            }
            got.insert((fi, e.row), e);
        }
    }
    // The ranked score, whichever column it is.
    let scores = if q.score == "val_score" {
        HashMap::new()
    } else {
        match score_values(cands, &found, &q.score) {
            Ok(s) => s,
            Err(e) => {
                late.push(e);
                HashMap::new()
            }
        }
    };
    let value = found
        .iter()
        .filter_map(|k| {
            let mut e = got.remove(k)?;
            if let Some(v) = scores.get(k) {
                e.val_score = Some(*v);
            }
            Some(e)
        })
        .collect();
    Ok(Scanned { value, errors })
}

/// The values of `score` at the given rows.
pub(super) fn score_values(
    cands: &[Candidate],
    found: &[(usize, u64)],
    score: &str,
) -> std::result::Result<HashMap<(usize, u64), f64>, FileError> {
    let mut by_file: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (fi, r) in found {
        by_file.entry(*fi).or_default().push(*r);
    }
    let mut out = HashMap::new();
    for (fi, mut rows) in by_file {
        rows.sort_unstable();
        rows.dedup();
        let mut it = rows.iter();
        let batches = super::read_batches(&cands[fi], &[score], Some(&rows), false, None)
            .map_err(|e| file_error(&cands[fi], &e))?;
        for b in batches {
            let a = float_col(&b, score);
            for i in 0..b.num_rows() {
                if let (Some(&row), Some(v)) = (it.next(), float_at(a, i)) {
                    out.insert((fi, row), v);
                }
            }
        }
    }
    Ok(out)
}
