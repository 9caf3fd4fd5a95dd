//! What an export derives from a dataset's rows: repeated rows left out
//! (`dedupe`), and per pipeline and per chain the aggregates their
//! `pipelines` and `chains` rows are made of (`observe_pipeline`,
//! `observe_chain`), as `docs/STORE.md` and [`super::DERIVATIONS`] state.

use std::collections::HashSet;
use std::path::Path;

use super::ExportOptions;
use crate::schema::Prediction;

/// A pipeline's rows as they are read, for its `pipelines` row.
#[derive(Default)]
pub(super) struct PipelineAgg {
    pub(super) name: String,
    pub(super) metric: Option<String>,
    pub(super) best: Option<(f64, Option<f64>)>,
    pub(super) unknown_metric: bool,
}

/// A chain's rows, for its `chains` row.
#[derive(Default)]
pub(super) struct ChainAgg {
    pub(super) pipeline_id: String,
    pub(super) step_idx: i64,
    pub(super) model_name: String,
    pub(super) model_class: String,
    pub(super) preprocessings: Option<String>,
    pub(super) metric: Option<String>,
    pub(super) task_type: Option<String>,
    pub(super) best_params: Option<String>,
    /// (rank: 0 avg/val, 1 avg, 2 w_avg/val, 3 w_avg; the row).
    pub(super) cv_row: Option<(u8, [Option<f64>; 3], Option<String>)>,
    pub(super) folds: HashSet<String>,
    pub(super) fold_sums: [(f64, u64); 3],
}

/// Drops the earlier of two rows with the same id or the same natural key
/// of nirs4all's unique index (pipeline, chain, fold, partition, model,
/// branch: a repeated row, as an append of the same run leaves); the later
/// row wins, as in nirs4all's own migration. Each drop is noted.
pub(super) fn dedupe(
    rows: Vec<Prediction>,
    meta: &Path,
    notes: &mut Vec<String>,
) -> Vec<Prediction> {
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    let mut keep = vec![false; rows.len()];
    let mut dropped = Vec::new();
    for (i, r) in rows.iter().enumerate().rev() {
        let id = r.id.clone().unwrap_or_else(|| r.computed_id());
        // SQLite's unique index treats NULLs as distinct: rows without a
        // branch id never collide on it.
        let key = r.branch_id.map(|b| {
            (
                r.pipeline_uid.clone(),
                r.step_idx,
                r.model_name.clone(),
                r.model_classname.clone(),
                r.fold_id.clone(),
                r.partition.clone(),
                b,
            )
        });
        let fresh_key = key.as_ref().is_none_or(|k| !keys.contains(k));
        if ids.contains(&id) || !fresh_key {
            dropped.push(id);
            continue;
        }
        ids.insert(id);
        if let Some(k) = key {
            keys.insert(k);
        }
        keep[i] = true;
    }
    if !dropped.is_empty() {
        dropped.reverse();
        let shown: Vec<&str> = dropped.iter().take(5).map(String::as_str).collect();
        notes.push(format!(
            "{}: {} repeated row(s) (same id, or same pipeline, chain, fold, partition, model and branch) left out, the later row kept: {}{}",
            meta.display(),
            dropped.len(),
            shown.join(", "),
            if dropped.len() > 5 { ", ..." } else { "" }
        ));
    }
    rows.into_iter()
        .zip(keep)
        .filter_map(|(r, k)| k.then_some(r))
        .collect()
}

pub(super) fn observe_pipeline(p: &mut PipelineAgg, r: &Prediction, opts: &ExportOptions) {
    if p.name.is_empty() {
        p.name = r.config_name.clone().unwrap_or_default();
    }
    if p.metric.is_none() {
        p.metric = r.metric.clone();
    }
    if r.partition.as_deref() != Some("val") {
        return;
    }
    let (Some(metric), Some(v)) = (r.metric.as_deref(), r.val_score) else {
        return;
    };
    if v.is_nan() {
        return;
    }
    match opts.directions.get(metric) {
        Ok(dir) => {
            if p.best.is_none_or(|(b, _)| dir.is_better(v, b)) {
                p.best = Some((v, r.test_score));
            }
        }
        Err(_) => p.unknown_metric = true,
    }
}

pub(super) fn observe_chain(c: &mut ChainAgg, r: &Prediction) {
    let fill = |slot: &mut Option<String>, v: &Option<String>| {
        if slot.is_none() {
            slot.clone_from(v);
        }
    };
    fill(&mut c.preprocessings, &r.preprocessings);
    fill(&mut c.metric, &r.metric);
    fill(&mut c.task_type, &r.task_type);
    if c.best_params.is_none() && r.best_params.as_deref().is_some_and(|b| b != "{}") {
        c.best_params.clone_from(&r.best_params);
    }
    let fold = r.fold_id.as_deref().unwrap_or("");
    let val = r.partition.as_deref() == Some("val");
    let rank = match fold {
        "avg" => Some(if val { 0 } else { 1 }),
        "w_avg" => Some(if val { 2 } else { 3 }),
        _ => None,
    };
    match rank {
        Some(rank) => {
            if c.cv_row.as_ref().is_none_or(|(best, _, _)| rank < *best) {
                c.cv_row = Some((rank, r.score_values(), r.scores.clone()));
            }
        }
        None if fold.ends_with("_agg") => {}
        None => {
            if !fold.is_empty() {
                c.folds.insert(fold.to_string());
            }
            for (sum, v) in c.fold_sums.iter_mut().zip(r.score_values()) {
                if let Some(v) = v {
                    sum.0 += v;
                    sum.1 += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, fold: &str, partition: &str, val: f64, test: f64) -> Prediction {
        Prediction {
            id: Some(id.into()),
            config_name: Some("0001_pls_abc".into()),
            pipeline_uid: Some("0001_pls_abc".into()),
            metric: Some("rmse".into()),
            fold_id: Some(fold.into()),
            partition: Some(partition.into()),
            val_score: Some(val),
            test_score: Some(test),
            train_score: Some(val / 2.0),
            ..Default::default()
        }
    }

    #[test]
    fn dedupe_keeps_the_later_of_repeated_ids_and_says_so() {
        let rows = vec![
            row("a", "0", "val", 1.0, 2.0),
            row("b", "0", "test", 1.0, 2.0),
            row("a", "1", "val", 3.0, 4.0),
        ];
        let mut notes = Vec::new();
        let kept = dedupe(rows, Path::new("x.meta.parquet"), &mut notes);
        let ids: Vec<(&str, Option<f64>)> = kept
            .iter()
            .map(|r| (r.id.as_deref().unwrap(), r.val_score))
            .collect();
        assert_eq!(ids, [("b", Some(1.0)), ("a", Some(3.0))]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("1 repeated row(s)") && notes[0].contains("x.meta.parquet"));
        let mut none = Vec::new();
        dedupe(
            vec![row("c", "0", "val", 1.0, 2.0)],
            Path::new("y"),
            &mut none,
        );
        assert!(none.is_empty());
    }

    #[test]
    fn a_pipelines_best_is_its_best_val_row_by_the_metrics_direction() {
        let opts = ExportOptions::default();
        let mut p = PipelineAgg::default();
        for r in [
            row("a", "0", "val", 0.9, 1.0),
            row("b", "1", "val", 0.4, 0.6),
            // Not a val row: never the best, however small.
            row("c", "1", "train", 0.1, 0.2),
            row("d", "2", "val", f64::NAN, 0.0),
        ] {
            observe_pipeline(&mut p, &r, &opts);
        }
        assert_eq!(
            p.best,
            Some((0.4, Some(0.6))),
            "rmse: the smallest val score, with its test"
        );
        assert_eq!(
            (p.name.as_str(), p.metric.as_deref()),
            ("0001_pls_abc", Some("rmse"))
        );
        let mut q = PipelineAgg::default();
        let mut r = row("e", "0", "val", 0.9, 1.0);
        r.metric = Some("not_a_metric".into());
        observe_pipeline(&mut q, &r, &opts);
        assert!(q.unknown_metric && q.best.is_none());
    }

    #[test]
    fn a_chains_cv_scores_prefer_the_avg_val_row_and_count_numbered_folds() {
        let mut c = ChainAgg::default();
        for r in [
            row("a", "0", "val", 1.0, 2.0),
            row("b", "1", "val", 3.0, 4.0),
            row("c", "w_avg", "val", 5.0, 6.0),
            row("d", "avg", "test", 7.0, 8.0),
            row("e", "avg", "val", 9.0, 10.0),
            row("f", "fold_agg", "val", 11.0, 12.0),
        ] {
            observe_chain(&mut c, &r);
        }
        let (rank, scores, _) = c.cv_row.clone().unwrap();
        assert_eq!((rank, scores[0], scores[1]), (0, Some(9.0), Some(10.0)));
        assert_eq!(
            c.folds.len(),
            2,
            "folds 0 and 1; avg, w_avg and *_agg are not folds"
        );
        assert_eq!(c.fold_sums[0], (4.0, 2));
    }
}
