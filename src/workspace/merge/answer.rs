//! The workspace summary's types: each dataset's entry (its file, footer
//! and best as the footer tells it), how exact each part is, the merged
//! answer and the forms it is written in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::super::listing::FileError;
use crate::footer::info::{Content, FileMetrics, Footer};
use crate::metric::Direction;
use crate::summary::topk::TopEntry;
use crate::summary::{Facets, MetricSummary, MetricTop, ModelFacet, Ranking, Stats, Summary};

/// One dataset of the workspace summary: its file, and its footer (whose
/// summary text is relayed as it is).
#[derive(Debug, Clone)]
pub struct DatasetEntry {
    /// The dataset name (file name less `.meta.parquet`).
    pub dataset: String,
    /// The file.
    pub path: PathBuf,
    /// The file's footer, shared with the footer cache.
    pub(crate) info: Arc<Footer>,
    /// The file's metrics from its state, as the merge read them (`None`
    /// for a file without state).
    pub(crate) metrics: Option<FileMetrics>,
}

/// A file's ranking metric and best prediction as its footer tells them
/// (see [`DatasetEntry::best`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetBest {
    /// The metric the file ranks by, when its summary names one.
    pub metric: Option<String>,
    /// That metric's direction, when known.
    pub direction: Option<Direction>,
    /// The best prediction, when the footer can say it.
    pub best: Option<TopEntry>,
    /// Why `best` is missing although the file has rows: `"no summary"`,
    /// or `"nirs4all kept the maximum, its worst"` for a nirs4all 1.0
    /// summary whose stored "best" is the maximum of a metric where lower
    /// is better.
    pub missing: Option<&'static str>,
}

impl DatasetEntry {
    /// False for files written before summaries existed.
    pub fn has_summary(&self) -> bool {
        self.info.summary.is_some()
    }

    /// Rows, from the parquet metadata.
    pub fn num_rows(&self) -> u64 {
        self.info.num_rows
    }

    /// The file's summary, typed (decoded now from the relayed text, read
    /// from the file for a 1.2 footer; state left out). For a file without
    /// one, only `total_predictions` and `dataset_name` are set.
    ///
    /// # Errors
    /// As `crate::footer::info::FileSummary::to_summary`.
    pub fn summary(&self) -> crate::error::Result<Summary> {
        match &self.info.summary {
            Some(s) => s.to_summary(&self.path, &self.info.key),
            None => Ok(Summary {
                total_predictions: self.info.num_rows,
                dataset_name: Some(self.dataset.clone()),
                ..Summary::default()
            }),
        }
    }

    /// The file's ranking metric and its direction, and whether the file
    /// holds several metrics (or may: a state that does not decode),
    /// without decoding anything again: from the
    /// metrics the merge read off its state, else from a nirs4all 1.0
    /// summary's ranking (its `metric` column statistics). O(metrics).
    pub fn metric(&self) -> (Option<String>, Option<Direction>, bool) {
        if let Some(m) = &self.metrics {
            let p = m.primary();
            return (
                p.map(|(n, _)| n.to_string()),
                p.map(|(_, d)| d),
                m.0.len() > 1,
            );
        }
        match self.info.summary.as_ref().map(|s| &s.content) {
            Some(Content::Legacy { ranking, .. }) => {
                (ranking.metric.clone(), ranking.direction, false)
            }
            Some(Content::State(src)) => match src.head() {
                // A file the merge did not read (an entry made elsewhere).
                Ok(head) => {
                    let p = head.primary_metric();
                    (
                        p.map(|(n, _)| n.to_string()),
                        p.map(|(_, d)| d),
                        head.metrics.len() > 1,
                    )
                }
                // A state that does not decode: its entries may name
                // their metric; read each (the third value).
                Err(_) => (None, None, true),
            },
            None => (None, None, false),
        }
    }

    /// The summary's format version (`"1.0"` for nirs4all's, `"1.2"` for
    /// n4a's), if the file has one.
    pub fn version(&self) -> Option<&str> {
        self.info.summary.as_ref().map(|s| s.version.as_str())
    }

    /// The file's metric and best prediction from its footer alone: from
    /// the state's top list, or from a nirs4all 1.0 summary only where its
    /// maximum is the best (its stored best is decoded then). Cost: the
    /// state head's decode, or one summary decode for a 1.0 file.
    pub fn best(&self) -> DatasetBest {
        let mut b = DatasetBest::default();
        let Some(fs) = &self.info.summary else {
            b.missing = Some("no summary");
            return b;
        };
        match &fs.content {
            Content::State(src) => {
                if let Ok(head) = src.head() {
                    if let Some((m, dir)) = head.primary_metric() {
                        b.best = head.top_of_metric(m).into_iter().next();
                        b.metric = Some(m.to_string());
                        b.direction = Some(dir);
                    }
                }
            }
            Content::Legacy { ranking, .. } => {
                b.metric = ranking.metric.clone();
                b.direction = ranking.direction;
                if ranking.stored_bests_hold() {
                    b.best = self
                        .summary()
                        .ok()
                        .and_then(|s| s.top_predictions.into_iter().next());
                } else {
                    b.missing = Some("nirs4all kept the maximum, its worst");
                }
            }
        }
        b
    }

    /// What kind of summary the file has: `n4a` (mergeable state),
    /// `no state` (nirs4all 1.0, or a state that disagrees with the file)
    /// or `none`.
    pub fn kind(&self) -> &'static str {
        match self.info.summary.as_ref().map(|s| &s.content) {
            None => "none",
            Some(Content::Legacy { .. }) => "no state",
            Some(Content::State(_)) => "n4a",
        }
    }
}

/// How exact a part of the workspace summary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Accuracy {
    /// Exact (floating-point sums up to rounding).
    Exact,
    /// Close: see the notes for the bound and why.
    Approximate,
    /// Left out: see the notes.
    Unavailable,
}

/// How exact each part of the workspace summary is, and why a part is not.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Exactness {
    /// `total_predictions`, `total_datasets` and every count.
    pub counts: Accuracy,
    /// `models[].avg_val_score`.
    pub models_avg_val_score: Accuracy,
    /// `stats.*.min` and `max`.
    pub stats_min_max: Accuracy,
    /// `stats.*.mean` and `std`.
    pub stats_mean_std: Accuracy,
    /// `stats.*.quartiles`.
    pub stats_quartiles: Accuracy,
    /// `runs[].best_*`.
    pub runs_best: Accuracy,
    /// `top_predictions` and `top_by_metric`.
    pub top_predictions: Accuracy,
    /// Why a part is approximate or unavailable.
    pub notes: Vec<String>,
}

/// The merged summary of a workspace.
#[derive(Debug, Clone)]
pub struct WorkspaceSummary {
    /// Rows over all readable files.
    pub total_predictions: u64,
    /// Readable files.
    pub total_datasets: usize,
    /// One entry per readable file, in path order.
    pub datasets: Vec<DatasetEntry>,
    /// Models merged across files, by count desc.
    pub models: Vec<ModelFacet>,
    /// Top predictions of the primary metric over all files, each with its
    /// dataset, scores rounded to 4 decimals as in the 1.0 keys.
    pub top_predictions: Vec<TopEntry>,
    /// Score statistics over all files; `None` when the workspace mixes
    /// metrics (then they are per metric, in `metrics[].stats`: scores of
    /// different metrics are never pooled).
    pub stats: Option<Stats>,
    /// When this answer was made.
    pub generated_at: String,
    /// (n4a) The workspace folder.
    pub workspace: PathBuf,
    /// (n4a) Metric and direction ranking `top_predictions`.
    pub ranking: Option<Ranking>,
    /// (n4a) Metrics with directions and row counts.
    pub metrics: Vec<MetricSummary>,
    /// (n4a) Top predictions per metric over all files, unrounded.
    pub top_by_metric: BTreeMap<String, MetricTop>,
    /// (n4a) Merged facets (partitions, folds, task types). `n_configs` and
    /// `n_pipelines` are summed over files: a config run on two datasets
    /// counts twice.
    pub facets: Facets,
    /// (n4a) Files merged exactly from their state.
    pub merged_files: usize,
    /// (n4a) Files without n4a state (nirs4all 1.0, or no summary).
    pub files_without_state: Vec<PathBuf>,
    /// (n4a) How exact each part is.
    pub exactness: Exactness,
    /// (n4a) Files that could not be read, each with its reason.
    pub errors: Vec<FileError>,
}

/// Which form of the answer to write ([`WorkspaceSummary::write_json`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Form {
    /// The dashboard's shape: every file's summary (its runs left out)
    /// and the workspace's runs, each config once with the datasets it
    /// touched.
    #[default]
    Full,
    /// Without runs (a fraction of the size when files have thousands of
    /// configs).
    Brief,
}
