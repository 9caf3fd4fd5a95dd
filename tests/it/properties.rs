//! Property tests: the incremental summary, however the rows arrive (any
//! order, any split into appends, written to disk and read back), equals a
//! from-scratch computation by a plain oracle over the same rows.

use std::collections::{BTreeMap, BTreeSet};

use crate::util::{quantile_index, round4};
use n4a::files::dataset_paths;
use n4a::metric::{builtin_direction, Direction};
use n4a::schema::Prediction;
use n4a::summary::{RowView, Summary, SummaryBuilder, SummaryOptions};
use n4a::writer::{PredictionWriter, WriterOptions};
use proptest::prelude::*;

use crate::util::close_opt;

/// min, max, quartiles, NaN count, inf count of one score column.
type StatView = (Option<f64>, Option<f64>, Vec<Option<f64>>, u64, u64);
/// name, rows, best val, best test of one run.
/// (name, predictions, best val, best test, metric named when the rows
/// hold several).
type RunView = (
    Option<String>,
    u64,
    Option<f64>,
    Option<f64>,
    Option<String>,
);
/// id and val score of each top entry, per metric.
type TopView = BTreeMap<String, Vec<(Option<String>, Option<f64>)>>;

/// Everything of the summary the oracle recomputes, in comparable form.
#[derive(Debug, PartialEq)]
struct View {
    total: u64,
    dataset: Option<String>,
    stats: Vec<Option<StatView>>,
    means: Vec<(Option<f64>, Option<f64>)>,
    models: Vec<(Option<String>, u64, Option<f64>)>,
    partitions: Vec<(Option<String>, u64)>,
    folds: Vec<Option<String>>,
    task_types: Vec<(Option<String>, u64)>,
    n_configs: u64,
    n_pipelines: u64,
    runs: Vec<RunView>,
    top: Vec<(Option<String>, Option<f64>, Option<f64>)>,
    top_by_metric: TopView,
}

fn view(s: &Summary) -> View {
    let stats = [
        &s.stats.val_score,
        &s.stats.test_score,
        &s.stats.train_score,
    ];
    View {
        total: s.total_predictions,
        dataset: s.dataset_name.clone(),
        stats: stats
            .iter()
            .map(|st| {
                st.as_ref().map(|x| {
                    (
                        x.min,
                        x.max,
                        x.quartiles.clone(),
                        x.nan_count.unwrap_or(0),
                        x.inf_count.unwrap_or(0),
                    )
                })
            })
            .collect(),
        means: stats
            .iter()
            .map(|st| st.as_ref().map_or((None, None), |x| (x.mean, x.std)))
            .collect(),
        models: s
            .facets
            .models
            .iter()
            .map(|m| (m.name.clone(), m.count, m.avg_val_score))
            .collect(),
        partitions: s
            .facets
            .partitions
            .iter()
            .map(|m| (m.name.clone(), m.count))
            .collect(),
        folds: s.facets.folds.clone(),
        task_types: s
            .facets
            .task_types
            .iter()
            .map(|m| (m.name.clone(), m.count))
            .collect(),
        n_configs: s.facets.n_configs,
        n_pipelines: s.facets.n_pipelines,
        runs: s
            .runs
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.n_predictions,
                    r.best_val_score,
                    r.best_test_score,
                    r.metric.clone(),
                )
            })
            .collect(),
        top: s
            .top_predictions
            .iter()
            .map(|t| (t.id.clone(), t.val_score, t.test_score))
            .collect(),
        top_by_metric: s
            .top_by_metric
            .iter()
            .map(|(m, t)| {
                (
                    m.clone(),
                    t.predictions
                        .iter()
                        .map(|e| (e.id.clone(), e.val_score))
                        .collect(),
                )
            })
            .collect(),
    }
}

fn assert_same(a: &View, b: &View) {
    for ((ma, sa), (mb, sb)) in a.means.iter().zip(&b.means) {
        assert!(
            close_opt(*ma, *mb) && close_opt(*sa, *sb),
            "mean/std {a:?} vs {b:?}"
        );
    }
    let strip = |v: &View| View {
        means: Vec::new(),
        ..clone_view(v)
    };
    assert_eq!(strip(a), strip(b));
}

fn clone_view(v: &View) -> View {
    View {
        total: v.total,
        dataset: v.dataset.clone(),
        stats: v.stats.clone(),
        means: v.means.clone(),
        models: v.models.clone(),
        partitions: v.partitions.clone(),
        folds: v.folds.clone(),
        task_types: v.task_types.clone(),
        n_configs: v.n_configs,
        n_pipelines: v.n_pipelines,
        runs: v.runs.clone(),
        top: v.top.clone(),
        top_by_metric: v.top_by_metric.clone(),
    }
}

/// The oracle: the contract's rules applied to all rows at once, with
/// sorting and two-pass arithmetic, sharing no code with the summary.
fn oracle(rows: &[Prediction]) -> View {
    let dir = |m: &str| builtin_direction(m).unwrap();
    let finite = |x: Option<f64>| x.filter(|v| v.is_finite());
    let names: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.dataset_name.as_deref())
        .collect();
    let mut stats = Vec::new();
    let mut means = Vec::new();
    for i in 0..3 {
        let all: Vec<Option<f64>> = rows.iter().map(|r| r.score_values()[i]).collect();
        let mut v: Vec<f64> = all.iter().filter_map(|x| finite(*x)).collect();
        let nan = all.iter().flatten().filter(|x| x.is_nan()).count() as u64;
        let inf = all.iter().flatten().filter(|x| x.is_infinite()).count() as u64;
        if v.is_empty() {
            stats.push(None);
            means.push((None, None));
            continue;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = if v.len() == 1 {
            0.0
        } else {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        let q = |q: f64| Some(v[quantile_index(q, v.len() as u64) as usize]);
        stats.push(Some((
            Some(v[0]),
            Some(v[v.len() - 1]),
            vec![q(0.25), q(0.5), q(0.75)],
            nan,
            inf,
        )));
        means.push((Some(mean), Some(std)));
    }
    let group = |key: fn(&Prediction) -> Option<&String>| {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        rows.iter()
            .filter_map(key)
            .for_each(|k| *m.entry(k.clone()).or_default() += 1);
        m
    };
    let desc = |m: BTreeMap<String, u64>| {
        let mut v: Vec<(Option<String>, u64)> = m.into_iter().map(|(k, c)| (Some(k), c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    };
    let mut models: Vec<(Option<String>, u64, Option<f64>)> = group(|r| r.model_name.as_ref())
        .into_iter()
        .map(|(name, c)| {
            let vals: Vec<f64> = rows
                .iter()
                .filter(|r| r.model_name.as_ref() == Some(&name))
                .filter_map(|r| finite(r.val_score))
                .collect();
            let avg =
                (!vals.is_empty()).then(|| round4(vals.iter().sum::<f64>() / vals.len() as f64));
            (Some(name), c, avg)
        })
        .collect();
    models.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let metric_counts = group(|r| r.metric.as_ref());
    let primary = metric_counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(m, _)| m.clone());
    // A best list: the metric's val rows (every partition's when it has
    // none), best first, ties by row, one entry per model instance
    // (dataset, config, model, fold; unknown when the last three are null),
    // ten.
    let ranked = |metric: &str| -> Vec<(usize, &Prediction)> {
        let d = dir(metric);
        let scored: Vec<(usize, &Prediction)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.metric.as_deref() == Some(metric) && finite(r.val_score).is_some())
            .collect();
        let has_val = scored
            .iter()
            .any(|(_, r)| r.partition.as_deref() == Some("val"));
        let mut v: Vec<(usize, &Prediction)> = scored
            .into_iter()
            .filter(|(_, r)| !has_val || r.partition.as_deref() == Some("val"))
            .collect();
        v.sort_by(|a, b| {
            d.rank_key(a.1.val_score.unwrap())
                .total_cmp(&d.rank_key(b.1.val_score.unwrap()))
                .then(a.0.cmp(&b.0))
        });
        let mut seen = BTreeSet::new();
        v.retain(|(_, r)| {
            let key = (&r.config_name, &r.model_name, &r.fold_id, &r.dataset_name);
            (key.0.is_none() && key.1.is_none() && key.2.is_none()) || seen.insert(key)
        });
        v.truncate(10);
        v
    };
    let top = primary
        .as_deref()
        .map(|m| {
            ranked(m)
                .iter()
                .map(|(_, r)| {
                    (
                        r.id.clone(),
                        r.val_score.map(round4),
                        finite(r.test_score).map(round4),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let top_by_metric = metric_counts
        .keys()
        .map(|m| {
            (
                m.clone(),
                ranked(m)
                    .iter()
                    .map(|(_, r)| (r.id.clone(), r.val_score))
                    .collect(),
            )
        })
        .collect();
    let mut runs: Vec<(Option<Direction>, bool, RunView)> = group(|r| r.config_name.as_ref())
        .into_iter()
        .map(|(name, n)| {
            let of: Vec<&Prediction> = rows
                .iter()
                .filter(|r| r.config_name.as_ref() == Some(&name))
                .collect();
            let metrics: BTreeSet<&str> = of.iter().filter_map(|r| r.metric.as_deref()).collect();
            let chosen = primary
                .as_deref()
                .filter(|p| metrics.contains(p))
                .or_else(|| metrics.iter().next().copied());
            let best = |f: fn(&Prediction) -> Option<f64>| {
                let m = chosen?;
                of.iter()
                    .filter(|r| r.metric.as_deref() == Some(m))
                    .filter_map(|r| finite(f(r)))
                    .min_by(|a, b| dir(m).rank_key(*a).total_cmp(&dir(m).rank_key(*b)))
                    .map(round4)
            };
            (
                chosen.map(dir),
                chosen.is_some() && chosen == primary.as_deref(),
                (
                    Some(name),
                    n,
                    best(|r| r.val_score),
                    best(|r| r.test_score),
                    chosen
                        .filter(|_| metric_counts.len() > 1)
                        .map(str::to_string),
                ),
            )
        })
        .collect();
    // The primary metric's runs first, then each other metric's (name
    // order), each best first: scores of different metrics never ordered
    // against each other (issue 29).
    runs.sort_by(|(da, pa, a), (db, pb, b)| {
        let k = |d: &Option<Direction>, v: Option<f64>| {
            v.map(|x| d.unwrap().rank_key(x)).unwrap_or(f64::INFINITY)
        };
        pb.cmp(pa)
            .then_with(|| a.4.cmp(&b.4))
            .then_with(|| k(da, a.2).total_cmp(&k(db, b.2)))
            .then(a.0.cmp(&b.0))
    });
    let distinct = |key: fn(&Prediction) -> Option<&String>| {
        rows.iter().filter_map(key).collect::<BTreeSet<_>>().len() as u64
    };
    View {
        total: rows.len() as u64,
        dataset: (names.len() == 1).then(|| names.iter().next().unwrap().to_string()),
        stats,
        means,
        models,
        partitions: group(|r| r.partition.as_ref())
            .into_iter()
            .map(|(k, c)| (Some(k), c))
            .collect(),
        folds: rows
            .iter()
            .filter_map(|r| r.fold_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(Some)
            .collect(),
        task_types: desc(group(|r| r.task_type.as_ref())),
        n_configs: distinct(|r| r.config_name.as_ref()),
        n_pipelines: distinct(|r| r.pipeline_uid.as_ref()),
        runs: runs.into_iter().map(|(_, _, r)| r).collect(),
        top,
        top_by_metric,
    }
}

fn score() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        6 => (-40i32..80).prop_map(|k| Some(k as f64 / 8.0)),
        1 => Just(None),
        1 => Just(Some(f64::NAN)),
        1 => prop_oneof![Just(Some(f64::INFINITY)), Just(Some(f64::NEG_INFINITY))],
    ]
}

fn opt_name(names: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    prop_oneof![8 => prop::sample::select(names).prop_map(|s| Some(s.to_string())), 1 => Just(None)]
}

fn prediction() -> impl Strategy<Value = Prediction> {
    (
        (
            opt_name(&["c1", "c2", "c3"]),
            opt_name(&["PLS", "Ridge", "RF"]),
            opt_name(&["0", "1", "avg", "w_avg"]),
        ),
        (
            opt_name(&["train", "val", "test"]),
            prop::sample::select(vec!["mse", "r2", "bias"]),
            opt_name(&["regression", "binary_classification"]),
        ),
        (score(), score(), score(), 0u8..4),
    )
        .prop_map(
            |((config, model, fold), (partition, metric, task), (val, test, train, nulls))| {
                let all_null = nulls == 0;
                Prediction {
                    dataset_name: Some("ds".into()),
                    pipeline_uid: config.clone().map(|c| format!("p-{c}")),
                    config_name: config,
                    model_name: model,
                    fold_id: fold,
                    partition,
                    metric: Some(metric.to_string()),
                    task_type: task,
                    val_score: if all_null { None } else { val },
                    test_score: if all_null { None } else { test },
                    train_score: if all_null { None } else { train },
                    ..Default::default()
                }
                .with_id()
            },
        )
}

trait WithId {
    fn with_id(self) -> Self;
}

impl WithId for Prediction {
    fn with_id(mut self) -> Self {
        // Distinct ids even for identical rows, so the top lists are comparable.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        self.id = Some(format!(
            "{:016x}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        self
    }
}

fn in_memory(rows: &[Prediction]) -> Summary {
    let mut b = SummaryBuilder::new(SummaryOptions::default());
    for (i, r) in rows.iter().enumerate() {
        b.observe(i, &RowView::of(r)).unwrap();
    }
    b.finish(None)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn incremental_summary_equals_oracle_in_any_order(
        rows in prop::collection::vec(prediction(), 0..120),
        seed in any::<u64>(),
    ) {
        assert_same(&view(&in_memory(&rows)), &oracle(&rows));
        // Another order of the same rows: the oracle follows it.
        let mut shuffled = rows.clone();
        let n = shuffled.len();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        assert_same(&view(&in_memory(&shuffled)), &oracle(&shuffled));
    }

    #[test]
    fn merged_states_equal_one_pass(
        rows in prop::collection::vec(prediction(), 0..80),
        cuts in prop::collection::vec(0usize..80, 0..4),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(rows.len())).collect();
        cuts.push(rows.len());
        cuts.sort();
        let mut merged = n4a::summary::SummaryState { top_k: 10, ..Default::default() };
        let mut start = 0;
        for end in cuts {
            let mut b = SummaryBuilder::new(SummaryOptions::default());
            for (i, r) in rows[start..end].iter().enumerate() {
                b.observe(i, &RowView::of(r)).unwrap();
            }
            prop_assert!(merged.merge(&b.state()));
            start = end;
        }
        // Merged sketches give quartiles within α; all else exact.
        let mut exact: [Vec<f64>; 3] = Default::default();
        for (i, e) in exact.iter_mut().enumerate() {
            *e = rows.iter().filter_map(|r| r.score_values()[i]).filter(|v| v.is_finite()).collect();
            e.sort_by(f64::total_cmp);
        }
        let s = Summary::render(merged, Some(&exact), None);
        assert_same(&view(&s), &oracle(&rows));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Rows written through the writer in several appends, read back from
    /// the footer, equal the oracle over all rows.
    #[test]
    fn appends_on_disk_equal_oracle(
        rows in prop::collection::vec(prediction(), 0..60),
        cuts in prop::collection::vec(0usize..60, 0..4),
        row_group in 1usize..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(rows.len())).collect();
        cuts.push(rows.len());
        cuts.sort();
        let mut start = 0;
        for end in cuts {
            let opts = WriterOptions::default().with_row_group_rows(row_group);
            let mut w = PredictionWriter::append(dir.path(), "ds", opts).unwrap();
            for r in &rows[start..end] {
                w.write(r).unwrap();
            }
            w.finish().unwrap();
            start = end;
        }
        let meta = dataset_paths(dir.path(), "ds").meta;
        let f = n4a::footer::Footer::read(&meta).unwrap();
        prop_assert_eq!(f.num_rows(), rows.len() as u64);
        assert_same(&view(&f.summary().unwrap().unwrap()), &oracle(&rows));
    }

    /// `refresh --verify` finds no difference in a file built by any split
    /// into appends (its Welford states were merged, not one pass), and a
    /// backfill of the same rows without a summary equals the oracle.
    #[test]
    fn verify_has_no_false_alarms_and_backfill_equals_oracle(
        rows in prop::collection::vec(prediction(), 1..50),
        cuts in prop::collection::vec(0usize..50, 0..4),
    ) {
        use n4a::refresh::{refresh_workspace, Mode, RefreshOptions};
        let dir = tempfile::tempdir().unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(rows.len())).collect();
        cuts.push(rows.len());
        cuts.sort();
        let mut start = 0;
        for end in cuts {
            let mut w = PredictionWriter::append(dir.path(), "ds", WriterOptions::default()).unwrap();
            for r in &rows[start..end] {
                w.write(r).unwrap();
            }
            w.finish().unwrap();
            start = end;
        }
        let check = RefreshOptions { mode: Mode::Verify, write: false, ..RefreshOptions::default() };
        let r = refresh_workspace(dir.path(), &check, &|_, _| {}).unwrap();
        prop_assert_eq!(r.unchanged, 1, "{:#?}", r.files);
        let meta = dataset_paths(dir.path(), "ds").meta;
        crate::util::rewrite_with_summary(&meta, &meta, None, false);
        let r = refresh_workspace(dir.path(), &RefreshOptions::default(), &|_, _| {}).unwrap();
        prop_assert_eq!(r.refreshed, 1);
        let f = n4a::footer::Footer::read(&meta).unwrap();
        assert_same(&view(&f.summary().unwrap().unwrap()), &oracle(&rows));
    }

    /// Past the exact limit, quartiles come from the sketch, within the
    /// relative error the summary states.
    #[test]
    fn sketched_quartiles_stay_within_stated_error(
        vals in prop::collection::vec(-1000i32..1000, 6..200),
    ) {
        let rows: Vec<Prediction> = vals.iter().map(|v| Prediction {
            val_score: Some(*v as f64 / 7.0),
            metric: Some("r2".into()),
            ..Default::default()
        }).collect();
        let mut b = SummaryBuilder::new(SummaryOptions { exact_limit: 5, ..Default::default() });
        for (i, r) in rows.iter().enumerate() {
            b.observe(i, &RowView::of(r)).unwrap();
        }
        let s = b.finish(None).stats.val_score.unwrap();
        prop_assert_eq!(s.quartiles_method.as_deref(), Some("sketch"));
        let alpha = s.quartiles_rel_error.unwrap();
        let mut sorted: Vec<f64> = rows.iter().map(|r| r.val_score.unwrap()).collect();
        sorted.sort_by(f64::total_cmp);
        for (q, got) in [0.25, 0.5, 0.75].iter().zip(&s.quartiles) {
            let truth = sorted[quantile_index(*q, sorted.len() as u64) as usize];
            prop_assert!((got.unwrap() - truth).abs() <= alpha * truth.abs() + 1e-12, "q{} {:?} vs {}", q, got, truth);
        }
    }
}

#[test]
fn empty_file_and_single_row_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let s = PredictionWriter::create(dir.path(), "empty", WriterOptions::default())
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(s.total_predictions, 0);
    assert!(s.stats.val_score.is_none() && s.top_predictions.is_empty());
    let f = n4a::footer::Footer::read(&dataset_paths(dir.path(), "empty").meta).unwrap();
    assert_eq!(f.num_rows(), 0);
    assert_eq!(f.summary().unwrap().unwrap().total_predictions, 0);
    let one = vec![crate::util::row("c", "m", "0", "val", 0.25)];
    let s = in_memory(&one);
    let v = s.stats.val_score.unwrap();
    assert_eq!(
        (v.std, v.quartiles.clone()),
        (Some(0.0), vec![Some(0.25); 3])
    );
}

/// The workspace summary as a [`Summary`], so the same view compares it.
fn as_summary(w: &n4a::WorkspaceSummary) -> Summary {
    Summary {
        total_predictions: w.total_predictions,
        dataset_name: None,
        stats: w.stats.clone().unwrap_or_default(),
        facets: w.facets.clone(),
        runs: w.runs(),
        top_predictions: w.top_predictions.clone(),
        top_by_metric: w.top_by_metric.clone(),
        ..Summary::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A random workspace of random files: the summary merged from footers
    /// equals the oracle over all rows of all files (quartiles within the
    /// sketch's stated error), sequential and parallel alike.
    #[test]
    fn merged_workspace_summary_equals_oracle_over_all_rows(
        files in prop::collection::vec(prop::collection::vec(prediction(), 0..40), 1..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut all = Vec::new();
        for (i, rows) in files.iter().enumerate() {
            let ds = format!("d{i}");
            let mut w = PredictionWriter::create(dir.path(), &ds, WriterOptions::default()).unwrap();
            for r in rows {
                let mut r = r.clone();
                r.dataset_name = Some(ds.clone());
                w.write(&r).unwrap();
                all.push(r);
            }
            w.finish().unwrap();
        }
        let seq = n4a::Workspace::open(dir.path()).unwrap().with_threads(1).summary().unwrap();
        let par = n4a::Workspace::open(dir.path()).unwrap().with_threads(3).summary().unwrap();
        let without_time = |s: &n4a::WorkspaceSummary| {
            let mut v: serde_json::Value =
                serde_json::from_slice(&s.to_json(n4a::workspace::merge::Form::Full)).unwrap();
            v.as_object_mut().unwrap().remove("generated_at");
            v
        };
        prop_assert_eq!(without_time(&seq), without_time(&par));
        prop_assert_eq!(seq.merged_files, files.len());
        let mut got = view(&as_summary(&seq));
        let mut want = oracle(&all);
        want.dataset = None;
        // The workspace's runs are the files' runs concatenated (the
        // webapp's rule), and its config and pipeline counts are per file
        // summed: each checked against the per-file oracles.
        let per_file: Vec<View> = files
            .iter()
            .enumerate()
            .map(|(i, rows)| {
                let rows: Vec<Prediction> = rows
                    .iter()
                    .map(|r| Prediction { dataset_name: Some(format!("d{i}")), ..r.clone() })
                    .collect();
                oracle(&rows)
            })
            .collect();
        let concat: Vec<RunView> = per_file.iter().flat_map(|v| v.runs.clone()).collect();
        prop_assert_eq!(&got.runs, &concat);
        prop_assert_eq!(got.n_configs, per_file.iter().map(|v| v.n_configs).sum::<u64>());
        prop_assert_eq!(got.n_pipelines, per_file.iter().map(|v| v.n_pipelines).sum::<u64>());
        got.runs.clear();
        want.runs.clear();
        got.n_configs = 0;
        want.n_configs = 0;
        got.n_pipelines = 0;
        want.n_pipelines = 0;
        // Runs listed once (issue 29): each config once, in the order
        // first met, with its predictions summed and the datasets it
        // touched.
        let mut once: Vec<(Option<String>, u64, Vec<String>)> = Vec::new();
        for (i, v) in per_file.iter().enumerate() {
            for r in &v.runs {
                match once.iter_mut().find(|o| o.0 == r.0) {
                    Some(o) => {
                        o.1 += r.1;
                        o.2.push(format!("d{i}"));
                    }
                    None => once.push((r.0.clone(), r.1, vec![format!("d{i}")])),
                }
            }
        }
        let got_once: Vec<(Option<String>, u64, Vec<String>)> = seq
            .runs_once()
            .into_iter()
            .map(|r| (r.name, r.n_predictions, r.datasets))
            .collect();
        prop_assert_eq!(&got_once, &once);
        // Metrics never pooled (issue 29): with several metrics the pooled
        // statistics and model averages are null, and each metric's are
        // its rows' alone.
        let metrics: BTreeSet<String> = all.iter().filter_map(|r| r.metric.clone()).collect();
        if metrics.len() > 1 {
            prop_assert!(seq.stats.is_none());
            prop_assert!(seq.models.iter().all(|m| m.avg_val_score.is_none()));
            for m in &metrics {
                let rows: Vec<Prediction> = all.iter().filter(|r| r.metric.as_ref() == Some(m)).cloned().collect();
                let one = oracle(&rows);
                let ms = seq.metrics.iter().find(|x| &x.name == m).unwrap();
                let st = ms.stats.as_ref().unwrap();
                for (i, (o, (om, ostd))) in one.stats.iter().zip(&one.means).enumerate() {
                    let g = [&st.val_score, &st.test_score, &st.train_score][i];
                    match (o, g) {
                        (Some(o), Some(g)) => {
                            prop_assert_eq!((o.0, o.1), (g.min, g.max), "{} {}", m, i);
                            prop_assert!(close_opt(*om, g.mean) && close_opt(*ostd, g.std), "{} {}", m, i);
                        }
                        (None, None) => {}
                        (o, g) => prop_assert!(false, "{} {}: {:?} vs {:?}", m, i, o, g),
                    }
                }
                let models: Vec<(Option<String>, u64, Option<f64>)> = ms
                    .models
                    .iter()
                    .map(|x| (x.name.clone(), x.count, x.avg_val_score))
                    .collect();
                prop_assert_eq!(&models, &one.models, "{}", m);
            }
            got.stats = want.stats.clone();
            got.means = want.means.clone();
            for x in &mut want.models {
                x.2 = None;
            }
        }
        // Quartiles: sketched, within the stated relative error.
        for (g, w) in got.stats.iter_mut().zip(want.stats.iter_mut()) {
            if let (Some(g), Some(w)) = (g, w) {
                for (a, b) in g.2.iter().zip(&w.2) {
                    let (a, b) = (a.unwrap(), b.unwrap());
                    prop_assert!((a - b).abs() <= 0.01 * b.abs() + 1e-12, "{} vs {}", a, b);
                }
                g.2.clear();
                w.2.clear();
            }
        }
        // Ties across files break by (dataset, row): the oracle's row order
        // is dataset order then row order, so its top lists agree.
        assert_same(&got, &want);
    }
}
