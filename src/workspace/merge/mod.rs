//! The workspace summary: per-file summaries merged into one, in the shape
//! of the nirs4all dashboard's summary endpoint plus n4a's additions.
//!
//! Three kinds of file meet here, and the answer says how exact each part
//! is ([`Exactness`]):
//!
//! * **n4a state** (1.1, 1.2): merged exactly. Totals, per-model counts and
//!   average val scores (sums and counts add), min/max/mean/std (Welford
//!   merge), facets, and the top predictions of each metric (the top-k of a
//!   union is the top-k of the per-file top-ks). Quartiles come from the
//!   merged sketches, within their stated relative error.
//! * **nirs4all 1.0** (no state): what its summary holds, merged by the
//!   webapp's rules where they are right. Counts are exact; min/max are
//!   exact; mean and std are combined from each file's count (the parquet
//!   column statistics' non-null count), mean and std, exact up to float
//!   rounding; per-model averages are count-weighted from 4-decimal values,
//!   approximate. Its bests are maxima, so they are never taken as bests:
//!   the true best rows come from the rows, visiting only the files whose
//!   column statistics can still beat the k-th best (`crate::rows::best`).
//! * **no summary**: counted in the totals and searched for best rows like
//!   1.0 files; left out of models and stats (said so).
//!
//! The workspace `runs` are the files' runs concatenated (the webapp's
//! rule), relayed from each file's summary text without being parsed, as
//! is each file's summary in `datasets`. Reads nothing but the few score
//! columns of the best search; merging is O(total head size).

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;

use super::listing::{FileError, FileFooter};
use crate::footer::info::{Content, FileMetrics, MetricFact, StateSource};
use crate::metric::{builtin_direction, Direction};
use crate::rows::best::{self, Candidate};
use crate::summary::legacy::welford_of;
use crate::summary::{utc_now, MetricState, StateMerger, Summary, SummaryState, DEFAULT_TOP_K};

mod answer;
mod relay;
mod runs;

pub use answer::{Accuracy, DatasetBest, DatasetEntry, Exactness, Form, WorkspaceSummary};

pub use runs::WorkspaceRun;

pub use relay::Sink;

/// One chunk's merged state (and whether its sketches merged) with the
/// metrics of each of its files, by dataset index.
type MergedChunk = ((SummaryState, bool), Vec<(usize, Option<FileMetrics>)>);
/// Files merged per task: chunks are merged in parallel, then folded in
/// order, so the answer (floating-point sums included) is the same whatever
/// the number of threads.
const MERGE_CHUNK: usize = 64;

/// Merges file footers into a workspace summary (see the module docs).
/// Reads the score columns of the few files the best search visits;
/// `pool` folds the states in parallel when given.
pub(crate) fn merge_with(
    root: &Path,
    footers: &[FileFooter],
    mut errors: Vec<FileError>,
    pool: Option<&rayon::ThreadPool>,
) -> WorkspaceSummary {
    let mut datasets = Vec::new();
    let mut without_state = Vec::new();
    let mut mergeable: Vec<(&StateSource, &str, usize)> = Vec::new();
    let (mut n_configs, mut n_pipelines) = (0u64, 0u64);
    for f in footers {
        let info = match &f.footer {
            Ok(info) => info,
            Err(e) => {
                errors.push((**e).clone());
                continue;
            }
        };
        match info.summary.as_ref().map(|s| &s.content) {
            Some(Content::State(s)) => {
                mergeable.push((s, f.file.dataset.as_str(), datasets.len()));
                n_configs += s.n_runs;
                n_pipelines += s.n_pipelines;
            }
            Some(Content::Legacy { parts, .. }) => {
                without_state.push(f.file.path.clone());
                n_configs += parts.facets.n_configs;
                n_pipelines += parts.facets.n_pipelines;
            }
            None => without_state.push(f.file.path.clone()),
        }
        datasets.push(DatasetEntry {
            dataset: f.file.dataset.clone(),
            path: f.file.path.clone(),
            info: info.clone(),
            metrics: None,
        });
    }
    let merged_files = mergeable.len();
    // Heads are decoded here and dropped after merging, never all held;
    // each file's metrics are kept (a few names).
    let fold_chunk = |chunk: &[(&StateSource, &str, usize)]| {
        let mut m = StateMerger::new(SummaryState::default());
        let metrics: Vec<(usize, Option<FileMetrics>)> = chunk
            .iter()
            .map(|(src, ds, at)| (*at, src.merge_into(&mut m, ds)))
            .collect();
        (m.finish(), metrics)
    };
    let parts: Vec<MergedChunk> = match pool {
        Some(pool) => pool.install(|| mergeable.par_chunks(MERGE_CHUNK).map(fold_chunk).collect()),
        None => mergeable.chunks(MERGE_CHUNK).map(fold_chunk).collect(),
    };
    let mut sketches_ok = true;
    let mut chunks: Vec<SummaryState> = Vec::with_capacity(parts.len());
    for ((part, ok), metrics) in parts {
        sketches_ok &= ok;
        chunks.push(part);
        for (at, m) in metrics {
            datasets[at].metrics = m;
        }
    }
    let mut state = if chunks.len() == 1 {
        // One chunk (up to 64 files) is the merged state as it is: folding
        // it into an empty one copied every config and pipeline again
        // (a third of the merge for 19,000 configs).
        let mut st = chunks.pop().expect("one chunk");
        st.fill_by_metric();
        st.top_k = st.top_k.max(DEFAULT_TOP_K);
        st
    } else {
        let mut merger = StateMerger::new(SummaryState {
            top_k: DEFAULT_TOP_K,
            ..SummaryState::default()
        });
        for part in &chunks {
            merger.add(part, 0, None);
        }
        let (st, ok) = merger.finish();
        sketches_ok &= ok;
        st
    };
    let mut ex = Exactness {
        counts: Accuracy::Exact,
        models_avg_val_score: Accuracy::Exact,
        stats_min_max: Accuracy::Exact,
        stats_mean_std: Accuracy::Exact,
        stats_quartiles: if sketches_ok {
            Accuracy::Approximate
        } else {
            Accuracy::Unavailable
        },
        runs_best: Accuracy::Exact,
        top_predictions: Accuracy::Exact,
        notes: Vec::new(),
    };
    if merged_files > 0 && sketches_ok {
        ex.notes.push(format!(
            "stats quartiles come from merged sketches, within a relative error of {}",
            crate::summary::sketch::DEFAULT_ALPHA
        ));
    } else if !sketches_ok {
        ex.notes
            .push("stats quartiles left out: files with different sketch accuracy".to_string());
    }
    add_legacy(&mut state, &datasets, &mut ex);
    search_bests(&mut state, &datasets, &mut ex);
    let mut rendered = Summary::render(state, None, None);
    rendered.facets.n_configs = n_configs;
    rendered.facets.n_pipelines = n_pipelines;
    if !sketches_ok {
        for s in [
            &mut rendered.stats.val_score,
            &mut rendered.stats.test_score,
            &mut rendered.stats.train_score,
        ]
        .into_iter()
        .flatten()
        {
            s.quartiles.clear();
            s.quartiles_method =
                Some("unavailable: files with different sketch accuracy".to_string());
            s.quartiles_rel_error = None;
        }
    }
    // Where metrics mix, the pooled statistics and model averages would
    // mix units: null, with a note; per metric under `metrics`.
    let mixed = rendered.metrics.len() > 1;
    if mixed {
        for m in &mut rendered.facets.models {
            m.avg_val_score = None;
        }
        let names: Vec<&str> = rendered.metrics.iter().map(|m| m.name.as_str()).collect();
        ex.notes.push(format!(
            "the workspace mixes metrics ({}): `stats` and `models[].avg_val_score` are null, \
             statistics and model averages are per metric in `metrics[].stats` and `metrics[].models`; \
             `top_predictions` ranks the most frequent metric, `top_by_metric` every one",
            names.join(", ")
        ));
    }
    WorkspaceSummary {
        total_predictions: datasets.iter().map(|d| d.info.num_rows).sum(),
        total_datasets: datasets.len(),
        datasets,
        models: rendered.facets.models.clone(),
        top_predictions: rendered.top_predictions,
        stats: (!mixed).then_some(rendered.stats),
        generated_at: utc_now(),
        workspace: root.to_path_buf(),
        ranking: rendered.ranking,
        metrics: rendered.metrics,
        top_by_metric: rendered.top_by_metric,
        facets: rendered.facets,
        merged_files,
        files_without_state: without_state,
        exactness: ex,
        errors,
    }
}

/// Adds what the files without state give: counts, folds, metrics, the
/// models' weighted averages and the score statistics.
fn add_legacy(state: &mut SummaryState, datasets: &[DatasetEntry], ex: &mut Exactness) {
    let (mut legacy, mut bare) = (0usize, 0usize);
    let (mut counted_by_rows, mut no_mean, mut unknown_metric) = (0usize, 0usize, 0usize);
    let mut mixed_without_state = 0usize;
    let mut metric_columns_read = 0usize;
    for d in datasets {
        let info = &d.info;
        let parts = match info.summary.as_ref().map(|s| &s.content) {
            Some(Content::State(_)) => continue,
            Some(Content::Legacy { parts, .. }) => Some(parts),
            None => None,
        };
        state.rows += info.num_rows;
        // The file's one metric, when its column statistics prove one:
        // its pooled statistics are that metric's too.
        let mut one_metric: Option<String> = None;
        // Counts `rows` of `name` under its metric; false for a metric of
        // unknown direction.
        let mut count = |name: &str, rows: u64| match builtin_direction(name) {
            Some(direction) => {
                state
                    .metrics
                    .entry(name.to_string())
                    .or_insert_with(|| MetricState::new(direction))
                    .count += rows;
                true
            }
            None => {
                unknown_metric += 1;
                false
            }
        };
        match &info.columns.metric {
            MetricFact::One { name, rows } => {
                if count(name, *rows) {
                    one_metric = Some(name.clone());
                }
            }
            MetricFact::None => {}
            // Several metrics, or no statistics to tell: the metric column
            // says (one dictionary column; such files are few: nirs4all
            // writes one metric per dataset).
            MetricFact::Unknown => match crate::rows::scores::read_metric_counts(&d.path) {
                Ok(counts) => {
                    metric_columns_read += 1;
                    let known: Vec<bool> = counts.iter().map(|(n, r)| count(n, *r)).collect();
                    if let ([(name, _)], [true]) =
                        (counts.iter().collect::<Vec<_>>().as_slice(), known.as_slice())
                    {
                        one_metric = Some(name.to_string());
                    }
                }
                // A footer that reads but rows that do not: said once,
                // with the file; its other parts are still merged.
                Err(e) => ex.notes.push(format!(
                    "{}: its metric column could not be read ({e}); its rows are not counted by metric",
                    d.path.display()
                )),
            },
        }
        let Some(parts) = parts else {
            bare += 1;
            continue;
        };
        legacy += 1;
        if one_metric.is_none() {
            mixed_without_state += 1;
        }
        let f = &parts.facets;
        for m in &f.models {
            let Some(name) = &m.name else { continue };
            let avg = m.avg_val_score.filter(|v| v.is_finite());
            let add = |e: &mut crate::summary::ModelState| {
                e.count += m.count;
                if let Some(avg) = avg {
                    e.val_sum += avg * m.count as f64;
                    e.val_count += m.count;
                }
            };
            add(state.models.entry(name.clone()).or_default());
            if let Some(metric) = &one_metric {
                let ms = state.metrics.get_mut(metric).expect("inserted above");
                add(ms.models.entry(name.clone()).or_default());
            }
        }
        for p in &f.partitions {
            if let Some(n) = &p.name {
                *state.partitions.entry(n.clone()).or_default() += p.count;
            }
        }
        for t in &f.task_types {
            if let Some(n) = &t.name {
                *state.task_types.entry(n.clone()).or_default() += t.count;
            }
        }
        for fold in f.folds.iter().flatten() {
            state.folds.insert(fold.clone());
        }
        let stats = [
            &parts.stats.val_score,
            &parts.stats.test_score,
            &parts.stats.train_score,
        ];
        for (i, s) in stats.into_iter().enumerate() {
            let Some(s) = s else { continue };
            let count = match &info.columns.scores[i] {
                Some(fact) => fact.non_null,
                None => {
                    counted_by_rows += 1;
                    info.num_rows
                }
            };
            match welford_of(s, count) {
                Some(w) => {
                    let target = match i {
                        0 => &mut state.val_score,
                        1 => &mut state.test_score,
                        _ => &mut state.train_score,
                    };
                    target.welford.merge(&w);
                    if let Some(ms) = one_metric.as_ref().and_then(|m| state.metrics.get_mut(m)) {
                        ms.scores[i].welford.merge(&w);
                    }
                }
                None => no_mean += 1,
            }
        }
    }
    if legacy > 0 {
        ex.models_avg_val_score = Accuracy::Approximate;
        ex.notes.push(format!(
            "models avg_val_score: {legacy} files without n4a state store per-model averages rounded to 4 decimals, \
             weighted here by their row counts (webapp rule); error below 5e-5"
        ));
        if ex.stats_quartiles != Accuracy::Unavailable {
            ex.stats_quartiles = Accuracy::Unavailable;
        }
        ex.notes.push(format!(
            "stats quartiles left out: {legacy} files without n4a state have no mergeable sketch"
        ));
    }
    if bare > 0 {
        ex.models_avg_val_score = Accuracy::Approximate;
        ex.stats_mean_std = Accuracy::Approximate;
        ex.stats_min_max = Accuracy::Approximate;
        ex.stats_quartiles = Accuracy::Unavailable;
        ex.notes.push(format!(
            "{bare} files without a summary count in the totals and the best predictions, \
             not in models, stats or runs (`n4a refresh` gives them a summary)"
        ));
    }
    if counted_by_rows > 0 || no_mean > 0 {
        ex.stats_mean_std = Accuracy::Approximate;
        ex.notes.push(format!(
            "stats mean/std: {counted_by_rows} score columns without parquet statistics were counted \
             by rows, {no_mean} had no finite mean (NaN in nirs4all's summary) and were left out"
        ));
    }
    if mixed_without_state > 0 {
        state.by_metric = false;
        ex.notes.push(format!(
            "per-metric statistics and model averages left out: {mixed_without_state} files without n4a \
             state hold several metrics (or none their column statistics prove); `n4a refresh` computes them"
        ));
    }
    if metric_columns_read > 0 {
        ex.notes.push(format!(
            "metrics of {metric_columns_read} files without n4a state read from their metric column \
             (their column statistics did not prove one metric)"
        ));
    }
    if unknown_metric > 0 {
        ex.notes.push(format!(
            "metrics: {unknown_metric} metrics of files without n4a state are of unknown direction, \
             or their metric column could not be read; their rows are not in the metric counts"
        ));
    }
}

/// Replaces the top lists of every metric with the best of the states and
/// of the rows of the files without state (see [`crate::rows::best`]).
fn search_bests(state: &mut SummaryState, datasets: &[DatasetEntry], ex: &mut Exactness) {
    let cands: Vec<Candidate<'_>> = datasets
        .iter()
        .filter(|d| {
            !matches!(
                d.info.summary.as_ref().map(|s| &s.content),
                Some(Content::State(_))
            )
        })
        .map(|d| Candidate {
            path: &d.path,
            dataset: &d.dataset,
            facts: &d.info.columns,
        })
        .collect();
    let legacy_runs = datasets
        .iter()
        .filter(|d| match d.info.summary.as_ref().map(|s| &s.content) {
            Some(Content::Legacy { ranking, .. }) => !ranking.stored_bests_hold(),
            _ => false,
        })
        .count();
    let rounded_runs = datasets
        .iter()
        .filter(|d| match d.info.summary.as_ref().map(|s| &s.content) {
            Some(Content::Legacy { ranking, .. }) => ranking.stored_bests_hold(),
            _ => false,
        })
        .count();
    if legacy_runs > 0 {
        ex.runs_best = Accuracy::Unavailable;
        ex.notes.push(format!(
            "runs best_val_score/best_test_score are null for the runs of {legacy_runs} files written \
             without n4a state whose metric is not higher-is-better (nirs4all stored the maximum, the \
             worst); `n4a refresh` computes them"
        ));
    }
    if rounded_runs > 0 {
        if ex.runs_best == Accuracy::Exact {
            ex.runs_best = Accuracy::Approximate;
        }
        ex.notes.push(format!(
            "runs best scores of {rounded_runs} files written without n4a state are nirs4all's, rounded to 4 decimals"
        ));
    }
    if cands.is_empty() {
        return;
    }
    let k = state.top_k.max(DEFAULT_TOP_K);
    let metrics: Vec<(String, Direction)> = state
        .metrics
        .iter()
        .map(|(m, s)| (m.clone(), s.direction))
        .collect();
    let mut read = 0usize;
    for (metric, dir) in metrics {
        let seed = state.top_of_metric(&metric);
        let found = best::search(&best::for_metric(&cands, &metric), &metric, dir, k, seed);
        read += found.files_read;
        if !found.failed.is_empty() {
            ex.top_predictions = Accuracy::Approximate;
            for msg in best::describe(&found.failed) {
                ex.notes.push(format!(
                    "best {metric} predictions miss the rows of a file: {msg}"
                ));
            }
        }
        let mut parts = BTreeMap::new();
        parts.insert(String::new(), found.top);
        state.top.insert(metric, parts);
    }
    ex.notes.push(format!(
        "best predictions of {} files without n4a state found from their rows ({read} score columns read; \
         the others' column statistics could not beat them)",
        cands.len()
    ));
}
