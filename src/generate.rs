//! A seeded synthetic workspace with realistic nirs4all predictions.
//!
//! Regression and classification datasets, several pipeline configs and
//! models each, k folds plus the `avg` and `w_avg` aggregates, and three
//! partitions (train/val/test) per fold entry carrying the same three
//! scores, as nirs4all writes them. The same seed gives the same files.
//! Used by `n4a gen`, the demo, the benches and the tests.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::Result;
use crate::files::dataset_paths;
use crate::schema::{ArrayData, Prediction, PredictionArrays};
use crate::summary::Summary;
use crate::writer::{PredictionWriter, WriterOptions};

/// What to generate.
#[derive(Debug, Clone)]
#[must_use]
pub struct GenOptions {
    /// Number of datasets (files); default 4.
    pub datasets: usize,
    /// Rows per dataset; default 2,000.
    pub rows: usize,
    /// Seed; default 42.
    pub seed: u64,
    /// Attach y_true/y_pred/indices arrays (default true). Off for
    /// multi-million-row benchmarks, where arrays would dominate.
    pub arrays: bool,
    /// Writer options (row-group size, ...).
    pub writer: WriterOptions,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            datasets: 4,
            rows: 2_000,
            seed: 42,
            arrays: true,
            writer: WriterOptions::default(),
        }
    }
}

/// One generated dataset.
#[derive(Debug, Clone)]
pub struct GeneratedDataset {
    /// Dataset name.
    pub name: String,
    /// Its `.meta.parquet`.
    pub meta_path: PathBuf,
    /// The summary written.
    pub summary: Summary,
}

/// SplitMix64: tiny, seedable, good enough for synthetic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform index below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

struct Kind {
    prefix: &'static str,
    task: &'static str,
    metric: &'static str,
    models: &'static [&'static str],
}

const KINDS: [Kind; 4] = [
    Kind {
        prefix: "corn",
        task: "regression",
        metric: "mse",
        models: &["PLSRegression", "Ridge", "SVR", "RandomForestRegressor"],
    },
    Kind {
        prefix: "grain",
        task: "multiclass_classification",
        metric: "balanced_accuracy",
        models: &["RandomForestClassifier", "LogisticRegression", "SVC"],
    },
    Kind {
        prefix: "wheat",
        task: "regression",
        metric: "r2",
        models: &["PLSRegression", "ElasticNet", "KernelRidge"],
    },
    Kind {
        prefix: "soil",
        task: "binary_classification",
        metric: "accuracy",
        models: &["LogisticRegression", "GradientBoostingClassifier"],
    },
];

const PREPROCESSINGS: [&str; 5] = [
    "SNV",
    "SNV>MinMax",
    "MSC>SG(11,2)",
    "Detrend>SNV",
    "FirstDerivative",
];
const FOLDS: usize = 5;

/// The rows of dataset number `index`: exactly `rows` of them.
pub fn dataset_rows(
    index: usize,
    rows: usize,
    seed: u64,
    arrays: bool,
) -> (String, Vec<Prediction>) {
    let mut out = Vec::with_capacity(rows);
    let name = dataset_name(index);
    let mut it = DatasetRows::new(index, seed, arrays);
    while out.len() < rows {
        out.push(it.next_row());
    }
    (name, out)
}

/// Dataset name of index `i`: `corn_000`, `grain_001`, ...
pub fn dataset_name(i: usize) -> String {
    format!("{}_{i:03}", KINDS[i % KINDS.len()].prefix)
}

/// An endless, seeded stream of one dataset's rows, config by config.
pub struct DatasetRows {
    index: usize,
    name: String,
    rng: Rng,
    arrays: bool,
    config: usize,
    pending: Vec<Prediction>,
}

impl DatasetRows {
    /// The stream of dataset `index`.
    pub fn new(index: usize, seed: u64, arrays: bool) -> Self {
        DatasetRows {
            index,
            name: dataset_name(index),
            rng: Rng::new(seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407)),
            arrays,
            config: 0,
            pending: Vec::new(),
        }
    }

    /// The next row.
    pub fn next_row(&mut self) -> Prediction {
        if self.pending.is_empty() {
            self.pending = self.next_config();
            self.pending.reverse();
        }
        self.pending.pop().expect("a config has rows")
    }

    fn next_config(&mut self) -> Vec<Prediction> {
        let kind = &KINDS[self.index % KINDS.len()];
        self.config += 1;
        let rng = &mut self.rng;
        let config = format!(
            "{:04}_{}_{:06x}",
            self.config,
            if kind.task == "regression" {
                "RegSweep"
            } else {
                "ClfRun"
            },
            rng.next_u64() & 0xff_ffff
        );
        // A sweep: 2 to 12 model variants per config, 21 rows each.
        let n_models = 2 + rng.below(11);
        let pre = PREPROCESSINGS[rng.below(PREPROCESSINGS.len())];
        let n_samples = 60 + rng.below(60) as i64;
        let mut rows = Vec::new();
        for m in 0..n_models {
            let model = kind.models[rng.below(kind.models.len())];
            let step = 3 + m as i64;
            let quality = rng.unit();
            let mut fold_scores = Vec::new();
            for fold in 0..FOLDS + 2 {
                let (val, test, train) = if fold < FOLDS {
                    let s = scores(kind.metric, quality, rng);
                    fold_scores.push(s);
                    s
                } else {
                    let n = fold_scores.len() as f64;
                    let avg =
                        |f: fn(&(f64, f64, f64)) -> f64| fold_scores.iter().map(f).sum::<f64>() / n;
                    let jitter = if fold == FOLDS {
                        1.0
                    } else {
                        0.97 + 0.06 * rng.unit()
                    };
                    (avg(|s| s.0) * jitter, avg(|s| s.1), avg(|s| s.2))
                };
                let fold_id = match fold {
                    f if f < FOLDS => f.to_string(),
                    f if f == FOLDS => "avg".to_string(),
                    _ => "w_avg".to_string(),
                };
                let y_true = ArrayData::vector(
                    (0..12)
                        .map(|i| ((self.index * 31 + i * 7) % 17) as f64)
                        .collect(),
                );
                for part in ["train", "val", "test"] {
                    let mut p = Prediction {
                        dataset_name: Some(self.name.clone()),
                        dataset_path: Some(self.name.clone()),
                        config_name: Some(config.clone()),
                        config_path: Some(format!("{}/{config}", self.name)),
                        pipeline_uid: Some(config.clone()),
                        step_idx: Some(step),
                        op_counter: Some(fold as i64 + 1),
                        model_name: Some(model.to_string()),
                        model_classname: Some(model.to_string()),
                        model_path: Some(format!("{}/{config}/{step}_{model}_{}.pkl", self.name, fold + 1)),
                        model_artifact_id: Some(format!("{config}${:012x}:{fold}", rng.next_u64() & 0xffff_ffff_ffff)),
                        trace_id: Some(format!("{:08x}-{:03x}", rng.next_u64() as u32, rng.next_u64() & 0xfff)),
                        fold_id: Some(fold_id.clone()),
                        partition: Some(part.to_string()),
                        val_score: Some(val),
                        test_score: Some(test),
                        train_score: Some(train),
                        metric: Some(kind.metric.to_string()),
                        task_type: Some(kind.task.to_string()),
                        n_samples: Some(n_samples),
                        n_features: Some(1076),
                        preprocessings: Some(pre.to_string()),
                        best_params: Some(if model.contains("PLS") { format!("{{\"n_components\": {}}}", 4 + rng.below(12)) } else { "{}".to_string() }),
                        metadata: Some("{}".to_string()),
                        scores: Some(format!("{{\"val\": {{\"{m}\": {val}}}, \"test\": {{\"{m}\": {test}}}, \"train\": {{\"{m}\": {train}}}}}", m = kind.metric)),
                        branch_name: Some(String::new()),
                        ..Default::default()
                    };
                    if self.arrays {
                        let y_pred: Vec<f64> = y_true
                            .values
                            .iter()
                            .map(|v| v + rng.range(-0.5, 0.5))
                            .collect();
                        p.arrays = Some(PredictionArrays {
                            y_true: Some(y_true.clone()),
                            y_pred: Some(ArrayData::vector(y_pred)),
                            y_proba: Some(ArrayData {
                                values: Vec::new(),
                                shape: vec![0],
                            }),
                            sample_indices: Some(ArrayData::vector(
                                (0..12).map(|i| (i * (fold + 1)) as f64).collect(),
                            )),
                            weights: None,
                        });
                    }
                    rows.push(p);
                }
            }
        }
        rows
    }
}

/// (val, test, train) for a model of `quality` in [0,1): realistic ranges
/// per metric, train better than val and test.
fn scores(metric: &str, quality: f64, rng: &mut Rng) -> (f64, f64, f64) {
    match metric {
        "mse" => {
            let base = 0.15 + 2.0 * (1.0 - quality);
            (
                base * rng.range(0.8, 1.3),
                base * rng.range(0.8, 1.4),
                base * rng.range(0.1, 0.5),
            )
        }
        "r2" => {
            let base = 0.55 + 0.43 * quality;
            (
                base - rng.range(0.0, 0.08),
                base - rng.range(0.0, 0.1),
                (base + 0.05).min(0.999),
            )
        }
        _ => {
            let base = 0.6 + 0.38 * quality;
            (
                (base - rng.range(0.0, 0.08)).max(0.0),
                (base - rng.range(0.0, 0.1)).max(0.0),
                1.0,
            )
        }
    }
}

/// Generates `opts.datasets` datasets into `out` (created if missing), one
/// rayon task per dataset. Each dataset is streamed through a
/// [`PredictionWriter`], so memory stays at one row group per task whatever
/// `opts.rows` is.
///
/// # Errors
/// I/O or parquet errors naming the file.
pub fn generate(out: &Path, opts: &GenOptions) -> Result<Vec<GeneratedDataset>> {
    generate_with_progress(out, opts, &|_| {})
}

/// [`generate`], calling `progress` with the rows written since its last
/// call (every 4,096 rows of a dataset, and at each dataset's end).
///
/// # Errors
/// As [`generate`].
pub fn generate_with_progress(
    out: &Path,
    opts: &GenOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<GeneratedDataset>> {
    std::fs::create_dir_all(out).map_err(|e| crate::error::Error::io(out, e))?;
    (0..opts.datasets)
        .into_par_iter()
        .map(|i| {
            let name = dataset_name(i);
            let mut w = PredictionWriter::create(out, &name, opts.writer.clone())?;
            let mut rows = DatasetRows::new(i, opts.seed, opts.arrays);
            for i in 0..opts.rows {
                w.write_owned(rows.next_row())?;
                if (i + 1) % 4096 == 0 {
                    progress(4096);
                }
            }
            progress((opts.rows % 4096) as u64);
            let summary = w.finish()?;
            Ok(GeneratedDataset {
                meta_path: dataset_paths(out, &name).meta,
                name,
                summary,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows_and_fold_entries_have_three_partitions() {
        let (_, a) = dataset_rows(0, 300, 7, false);
        let (_, b) = dataset_rows(0, 300, 7, false);
        assert_eq!(a, b);
        assert_eq!(a.len(), 300);
        let (_, c) = dataset_rows(0, 300, 8, false);
        assert_ne!(a, c);
        for chunk in a.chunks(3).take(20) {
            let parts: Vec<_> = chunk
                .iter()
                .map(|p| p.partition.as_deref().unwrap())
                .collect();
            assert_eq!(parts, ["train", "val", "test"]);
            assert!(chunk
                .iter()
                .all(|p| p.val_score == chunk[0].val_score && p.fold_id == chunk[0].fold_id));
        }
        let folds: std::collections::BTreeSet<_> =
            a.iter().filter_map(|p| p.fold_id.clone()).collect();
        assert!(folds.contains("avg") && folds.contains("w_avg") && folds.contains("4"));
    }
}
