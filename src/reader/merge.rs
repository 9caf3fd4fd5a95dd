//! The workspace summary: per-file summaries merged into one, from footers
//! alone, in the shape of the nirs4all dashboard's summary endpoint plus
//! n4a's additions.
//!
//! Exact where the per-file state allows it: totals, per-dataset entries,
//! per-model counts and average val scores (sums and counts add, so the
//! average is weighted exactly), runs, min/max/mean/std from merged Welford
//! state, and the top predictions of each metric merged from the per-file
//! heaps (the top-k of a union is the top-k of the per-file top-ks).
//! Quartiles come from the merged sketches, with their relative error bound
//! stated (`quartiles_method: "sketch"`). Files whose summary has no n4a
//! state (nirs4all's own 1.0, or no summary at all) count in the totals and
//! the dataset list but cannot be merged exactly; they are listed in
//! `files_without_state` rather than
//! approximated. Any n4a append to such a dataset (even of zero rows) adds
//! the state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::workspace::{FileError, FileFooter};
use crate::summary::json::RawSummary;
use crate::summary::topk::TopEntry;
use crate::summary::StateMerger;
use crate::summary::{
    utc_now, Facets, MetricSummary, MetricTop, ModelFacet, Ranking, RunSummary, Stats, Summary,
    SummaryState,
};

/// One dataset of the workspace summary: its file's summary (without the
/// mergeable state) plus where it is and whether it had one. Serialises as
/// one JSON object: the fields below, then the file summary's own keys
/// verbatim (for a file without a summary, `total_predictions` from the
/// metadata and `dataset_name`).
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEntry {
    /// The dataset name (file name less `.meta.parquet`).
    pub dataset: String,
    /// The file.
    pub path: PathBuf,
    /// False for files written before summaries existed.
    pub has_summary: bool,
    /// Rows, from the parquet metadata.
    pub num_rows: u64,
    /// Row groups.
    pub num_row_groups: usize,
    /// The file's summary, kept raw (shared with the footer cache).
    pub raw: Option<Arc<RawSummary>>,
}

impl DatasetEntry {
    /// The file's summary, typed (decoded now from the raw keys; state
    /// left out). For a file without one, only `total_predictions` and
    /// `dataset_name` are set.
    pub fn summary(&self) -> Summary {
        let fallback = || Summary {
            total_predictions: self.num_rows,
            dataset_name: Some(self.dataset.clone()),
            ..Summary::default()
        };
        match &self.raw {
            Some(r) => r.to_summary().unwrap_or_else(|_| fallback()),
            None => fallback(),
        }
    }
}

impl Serialize for DatasetEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("dataset", &self.dataset)?;
        m.serialize_entry("path", &self.path)?;
        m.serialize_entry("has_summary", &self.has_summary)?;
        m.serialize_entry("num_rows", &self.num_rows)?;
        m.serialize_entry("num_row_groups", &self.num_row_groups)?;
        match &self.raw {
            Some(r) => {
                for (k, v) in &r.fields {
                    m.serialize_entry(k, v)?;
                }
            }
            None => {
                m.serialize_entry("total_predictions", &self.num_rows)?;
                m.serialize_entry("dataset_name", &self.dataset)?;
            }
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for DatasetEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        use serde_json::value::RawValue;
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DatasetEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a dataset entry object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<DatasetEntry, A::Error> {
                let (mut dataset, mut path, mut has_summary) = (None, None, None);
                let (mut num_rows, mut num_row_groups) = (None, None);
                let mut fields: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "dataset" => dataset = Some(map.next_value::<String>()?),
                        "path" => path = Some(map.next_value::<PathBuf>()?),
                        "has_summary" => has_summary = Some(map.next_value::<bool>()?),
                        "num_rows" => num_rows = Some(map.next_value::<u64>()?),
                        "num_row_groups" => num_row_groups = Some(map.next_value::<usize>()?),
                        _ => fields.push((k, map.next_value::<Box<RawValue>>()?)),
                    }
                }
                let missing = |f: &'static str| A::Error::missing_field(f);
                let has_summary = has_summary.ok_or_else(|| missing("has_summary"))?;
                let version = fields
                    .iter()
                    .find(|(k, _)| k == "n4a_version")
                    .and_then(|(_, v)| serde_json::from_str::<String>(v.get()).ok())
                    .unwrap_or_default();
                Ok(DatasetEntry {
                    dataset: dataset.ok_or_else(|| missing("dataset"))?,
                    path: path.ok_or_else(|| missing("path"))?,
                    has_summary,
                    num_rows: num_rows.ok_or_else(|| missing("num_rows"))?,
                    num_row_groups: num_row_groups.ok_or_else(|| missing("num_row_groups"))?,
                    raw: has_summary.then(|| {
                        Arc::new(RawSummary {
                            version,
                            fields,
                            state: None,
                        })
                    }),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// The merged summary of a workspace. Deserialises from its own JSON (the
/// workspace cache file); file summaries then come back raw, without state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceSummary {
    /// Rows over all readable files.
    pub total_predictions: u64,
    /// Readable files.
    pub total_datasets: usize,
    /// One entry per readable file, in path order.
    pub datasets: Vec<DatasetEntry>,
    /// Models merged across files, by count desc.
    pub models: Vec<ModelFacet>,
    /// Configs merged across files by name, best first.
    pub runs: Vec<RunSummary>,
    /// Top predictions of the primary metric over all files, each with its dataset.
    pub top_predictions: Vec<TopEntry>,
    /// Score statistics over all files.
    pub stats: Stats,
    /// When this answer was made.
    pub generated_at: String,
    /// (n4a) The workspace folder.
    pub workspace: PathBuf,
    /// (n4a) Metric and direction ranking `top_predictions` and `runs`.
    pub ranking: Option<Ranking>,
    /// (n4a) Metrics with directions and row counts.
    pub metrics: Vec<MetricSummary>,
    /// (n4a) Top predictions per metric over all files.
    pub top_by_metric: BTreeMap<String, MetricTop>,
    /// (n4a) Merged facets (partitions, folds, task types, distinct counts).
    pub facets: Facets,
    /// (n4a) Files merged exactly from their state.
    pub merged_files: usize,
    /// (n4a) Files counted in totals only: no n4a state to merge.
    pub files_without_state: Vec<PathBuf>,
    /// (n4a) Files that could not be read, each with its reason.
    pub errors: Vec<FileError>,
}

/// Merges file footers into a workspace summary. O(total state size); reads
/// nothing.
pub fn merge(root: &Path, footers: &[FileFooter], errors: Vec<FileError>) -> WorkspaceSummary {
    merge_with(root, footers, errors, None)
}

/// Files merged per task: chunks are merged in parallel, then folded in
/// order, so the answer (floating-point sums included) is the same whatever
/// the number of threads.
const MERGE_CHUNK: usize = 64;

/// [`merge`], with the per-file states folded on `pool` when given.
pub fn merge_with(
    root: &Path,
    footers: &[FileFooter],
    mut errors: Vec<FileError>,
    pool: Option<&rayon::ThreadPool>,
) -> WorkspaceSummary {
    let mut datasets = Vec::new();
    let mut without_state = Vec::new();
    let mut mergeable = Vec::new();
    for f in footers {
        let info = match &f.footer {
            Ok(info) => info,
            Err(e) => {
                errors.push((**e).clone());
                continue;
            }
        };
        match info.summary.as_ref().and_then(|r| r.state.as_ref()) {
            Some(st) if st.rows == info.num_rows => mergeable.push((st, f.file.dataset.as_str())),
            _ => without_state.push(f.file.path.clone()),
        }
        datasets.push(DatasetEntry {
            dataset: f.file.dataset.clone(),
            path: f.file.path.clone(),
            has_summary: info.summary.is_some(),
            num_rows: info.num_rows,
            num_row_groups: info.num_row_groups,
            raw: info.summary.clone(),
        });
    }
    let merged_files = mergeable.len();
    let fold_chunk = |chunk: &[(&SummaryState, &str)]| {
        let mut m = StateMerger::new(SummaryState::default());
        for (st, ds) in chunk {
            m.add(st, 0, Some(ds));
        }
        m.finish()
    };
    let parts: Vec<(SummaryState, bool)> = match pool {
        Some(pool) => pool.install(|| mergeable.par_chunks(MERGE_CHUNK).map(fold_chunk).collect()),
        None => mergeable.chunks(MERGE_CHUNK).map(fold_chunk).collect(),
    };
    let mut merger = StateMerger::new(SummaryState::default());
    let mut sketches_ok = true;
    for (part, ok) in &parts {
        sketches_ok &= ok;
        merger.add(part, 0, None);
    }
    let (state, ok) = merger.finish();
    let sketches_ok = sketches_ok && ok;
    let mut rendered = Summary::render(state, None, None);
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
    WorkspaceSummary {
        total_predictions: datasets.iter().map(|d| d.num_rows).sum(),
        total_datasets: datasets.len(),
        datasets,
        models: rendered.facets.models.clone(),
        runs: rendered.runs,
        top_predictions: rendered.top_predictions,
        stats: rendered.stats,
        generated_at: utc_now(),
        workspace: root.to_path_buf(),
        ranking: rendered.ranking,
        metrics: rendered.metrics,
        top_by_metric: rendered.top_by_metric,
        facets: rendered.facets,
        merged_files,
        files_without_state: without_state,
        errors,
    }
}
