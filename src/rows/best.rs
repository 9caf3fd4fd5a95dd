//! The true best predictions of files whose footers cannot give them:
//! nirs4all's 1.0 summaries rank by the maximum whatever the metric (for
//! `mse` their "top" rows are the worst), and files without a summary
//! rank nothing.
//!
//! Their footers still bound where the best rows can be: the parquet
//! statistics of `val_score` hold each file's minimum and maximum (and of
//! `metric`, the file's one metric). So the files are visited best bound
//! first, and only while a file's bound can still beat the current k-th
//! best; each visit reads one column (`val_score`, plus `metric` when the
//! footer does not prove a single metric). The winners' other fields are
//! then read for just their rows. On a workspace of thousands of files
//! this reads a handful of score columns.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::scores;
use crate::footer::info::{ColumnFacts, MetricFact};
use crate::metric::Direction;
use crate::summary::topk::{TopEntry, TopK};

/// A file whose rows may hold some of a metric's best predictions.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The file.
    pub path: &'a Path,
    /// Its dataset (ties break by dataset, then row).
    pub dataset: &'a str,
    /// Its column statistics.
    pub facts: &'a ColumnFacts,
}

impl Candidate<'_> {
    /// The best rank key (see [`Direction::rank_key`]) any row of the file
    /// can have; `-inf` when the statistics do not say.
    fn bound(&self, dir: Direction) -> f64 {
        let Some(s) = &self.facts.scores[0] else {
            return f64::NEG_INFINITY;
        };
        match (s.min, s.max) {
            (Some(lo), Some(hi)) => match dir {
                Direction::Maximize => -hi,
                Direction::Minimize => lo,
                Direction::TowardZero if lo <= 0.0 && hi >= 0.0 => 0.0,
                Direction::TowardZero => lo.abs().min(hi.abs()),
            },
            // No finite value: nothing to rank.
            _ => f64::INFINITY,
        }
    }

    fn needs_metric_column(&self) -> bool {
        !matches!(self.facts.metric, MetricFact::One { .. })
    }
}

/// What a search found: the top entries and the files that could not be
/// read (each with its error), so a caller can say the answer misses them.
#[derive(Debug)]
pub struct Found {
    /// Best first.
    pub top: Vec<TopEntry>,
    /// Files whose rows could not be read.
    pub failed: Vec<(std::path::PathBuf, crate::error::Error)>,
    /// Files whose score column was read.
    pub files_read: usize,
}

/// The best `k` predictions of `metric` under `dir`: `seed` (entries
/// already known, from n4a states, with their datasets) merged with the
/// rows of `cands`, visiting files by bound and stopping once no file left
/// can beat the k-th best. Cost: one or two columns of each visited file,
/// then the winners' rows.
pub fn search(
    cands: &[Candidate<'_>],
    metric: &str,
    dir: Direction,
    k: usize,
    seed: Vec<TopEntry>,
) -> Found {
    // A best list holds one entry per model instance. The rows searched
    // are `val` rows, one per instance in what nirs4all writes; a file with
    // several of one instance's (not nirs4all's) leaves fewer than k once
    // its repeats are dropped, and the search goes deeper until k
    // instances are found or the rows run out.
    let mut want = k;
    let mut files_read = 0;
    loop {
        let mut found = search_rows(cands, metric, dir, want, seed.clone());
        files_read += found.files_read;
        let rows = found.top.len();
        found.top = crate::summary::topk::one_per_instance(found.top);
        if found.top.len() >= k || rows < want || want >= k.saturating_mul(64) {
            found.top.truncate(k);
            found.files_read = files_read;
            return found;
        }
        want = want.saturating_mul(2);
    }
}

fn search_rows(
    cands: &[Candidate<'_>],
    metric: &str,
    dir: Direction,
    k: usize,
    seed: Vec<TopEntry>,
) -> Found {
    let mut heap = TopK::from_entries(k, dir, seed);
    let mut order: Vec<(f64, &Candidate<'_>)> = cands.iter().map(|c| (c.bound(dir), c)).collect();
    order.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| a.1.dataset.cmp(b.1.dataset))
    });
    let mut failed = Vec::new();
    let mut files_read = 0;
    // Files read, and the rows offered from them (placeholders whose
    // details are read after).
    let mut found: BTreeMap<&str, &Candidate<'_>> = BTreeMap::new();
    let mut offered: HashSet<(&str, u64)> = HashSet::new();
    for (bound, c) in order {
        if bound == f64::INFINITY || k == 0 {
            break;
        }
        if let Some(w) = heap.worst().filter(|_| heap.is_full()) {
            // Files come by (bound, dataset): once one cannot beat the
            // k-th best (ties break by dataset, then row), none after can.
            let worst = dir.rank_key(w.val_score.unwrap_or(f64::NAN));
            if bound > worst || (bound == worst && Some(c.dataset) > w.dataset.as_deref()) {
                break;
            }
        }
        files_read += 1;
        let want = c.needs_metric_column().then_some(metric);
        match scores::read_val_scores(c.path, want) {
            Ok(values) => {
                for (row, v) in values {
                    if heap.beats_worst(v, Some(c.dataset), row) {
                        offered.insert((c.dataset, row));
                        heap.offer(TopEntry {
                            id: None,
                            model_name: None,
                            config_name: None,
                            val_score: Some(v),
                            test_score: None,
                            train_score: None,
                            fold_id: None,
                            partition: None,
                            dataset: Some(c.dataset.to_string()),
                            row,
                        });
                    }
                }
                found.insert(c.dataset, c);
            }
            Err(e) => failed.push((c.path.to_path_buf(), e)),
        }
    }
    let mut top = heap.sorted();
    for (dataset, c) in found {
        let placeholder = |e: &TopEntry| {
            e.dataset.as_deref() == Some(dataset) && offered.contains(&(dataset, e.row))
        };
        let mine: Vec<usize> = top
            .iter()
            .enumerate()
            .filter(|(_, e)| placeholder(e))
            .map(|(i, _)| i)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let wanted: Vec<u64> = mine.iter().map(|&i| top[i].row).collect();
        match scores::read_top_details(c.path, &wanted) {
            Ok(details) => {
                for (i, d) in mine.into_iter().zip(details) {
                    let e = &mut top[i];
                    e.id = d.id;
                    e.model_name = d.model_name;
                    e.config_name = d.config_name;
                    e.test_score = d.test_score;
                    e.train_score = d.train_score;
                    e.fold_id = d.fold_id;
                    e.partition = d.partition;
                }
            }
            Err(e) => {
                top.retain(|t| !placeholder(t));
                failed.push((c.path.to_path_buf(), e));
            }
        }
    }
    Found {
        top,
        failed,
        files_read,
    }
}

/// Keeps the candidates that may hold rows of `metric`.
pub fn for_metric<'a>(cands: &[Candidate<'a>], metric: &str) -> Vec<Candidate<'a>> {
    cands
        .iter()
        .filter(|c| match &c.facts.metric {
            MetricFact::One { name, .. } => name == metric,
            MetricFact::None => false,
            MetricFact::Unknown => true,
        })
        .copied()
        .collect()
}

/// The error of a failed read, for reports.
pub fn describe(failed: &[(std::path::PathBuf, crate::error::Error)]) -> Vec<String> {
    failed.iter().map(|(_, e)| e.to_string()).collect()
}
