//! The runs list of the web app's Results, Runs and Settings pages:
//! nirs4all's run folders (`discover::manifest_runs`) and one run per
//! config of each prediction file, derived from its rows.
//!
//! Where the app's backend was wrong by its own rules, this is not:
//!
//! - **Best scores by the metric's direction.** The app gave the plain
//!   maximum of `val_score` and of `test_score` over a config's rows, the
//!   worst model for `mse` or `rmse`; here each is the best by the
//!   metric's direction (the maximum for `r2` or accuracy, as before),
//!   with `metric` beside it, and `null` when the config's rows mix
//!   metrics (two scales are never compared).
//! - **Each pipeline once.** The app matched a config to its run folder by
//!   the folder manifest's `uid` with its `NNNN_` prefix stripped, which
//!   never equals a config name: every nirs4all pipeline was listed twice
//!   (the manifest with no scores, the config with no date), while two
//!   files' configs of the same name hid one another. Here a config and
//!   the manifest of the same dataset and pipeline id are one item (the
//!   manifest's fields, the rows' counts, models and scores); a config of
//!   another dataset is its own item.
//! - **Files and configs in name order**, not the directory's.
//!
//! Cost: a file's configs are read from its rows (six columns, strings as
//! dictionaries) once per file version and kept, with their JSON made once
//! (a few hundred bytes per config), until the file changes: on `big` (100
//! files x 100,000 rows, 189,000 configs) the first list reads 10M rows;
//! later ones cost one `stat` per file and copying the kept JSON (97 MB).
//! Building that JSON as `serde_json::Value`s on every request took 4.5 s
//! there (allocation and serialisation, perf), hence the typed, kept form.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde_json::{json, Value};

use crate::footer::FileKey;
use crate::metric::{Direction, Directions};
use crate::rows::configs::{read_config_rows, ConfigRows};
use crate::workspace::Workspace;

/// Run items' JSON: one buffer and each item's byte range in it.
type ItemsJson = (Vec<u8>, Vec<(usize, usize)>);

/// One file version's configs and, made on first use, their run items'
/// JSON (each item's byte range in one buffer).
pub struct FileDerived {
    /// The configs, in name order.
    pub configs: Vec<ConfigRows>,
    json: OnceLock<ItemsJson>,
}

impl FileDerived {
    /// The items' JSON: one buffer and each config's range in it.
    fn json(&self, dataset: &str, directions: &Directions) -> &ItemsJson {
        self.json.get_or_init(|| {
            let mut buf = Vec::new();
            let mut spans = Vec::with_capacity(self.configs.len());
            for c in &self.configs {
                let start = buf.len();
                serde_json::to_writer(&mut buf, &DerivedRun::of(dataset, c, directions))
                    .expect("writing to memory does not fail");
                spans.push((start, buf.len()));
            }
            (buf, spans)
        })
    }
}

/// Each file's configs, by path, for the file version (key) they were
/// read from.
#[derive(Default)]
pub struct ConfigCache {
    files: Mutex<HashMap<PathBuf, (FileKey, Arc<FileDerived>)>>,
}

/// One prediction file's configs, or why they could not be read.
pub struct FileConfigs {
    /// The dataset (the file's name without `.meta.parquet`).
    pub dataset: String,
    /// The file.
    pub path: PathBuf,
    /// Its configs, or the error naming the file.
    pub configs: std::result::Result<Arc<FileDerived>, String>,
}

impl ConfigCache {
    /// The configs of every prediction file of `ws`, in path order: from
    /// the cache while a file's key is unchanged, else read from its rows.
    ///
    /// # Errors
    /// The workspace folder cannot be listed.
    pub fn of(&self, ws: &Workspace) -> crate::error::Result<Vec<FileConfigs>> {
        let listing = ws.list()?;
        let mut out = Vec::with_capacity(listing.files.len());
        let mut live = Vec::with_capacity(listing.files.len());
        for f in listing.files {
            live.push(f.path.clone());
            let key = FileKey::of(&f.path);
            let hit = key.as_ref().ok().and_then(|k| {
                let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
                files
                    .get(&f.path)
                    .filter(|(had, _)| had == k)
                    .map(|(_, c)| c.clone())
            });
            let configs = match (hit, key) {
                (Some(c), _) => Ok(c),
                (None, Err(e)) => Err(format!("{}: {e}", f.path.display())),
                (None, Ok(k)) => match read_config_rows(&f.path) {
                    Ok(c) => {
                        let c = Arc::new(FileDerived {
                            configs: c,
                            json: OnceLock::new(),
                        });
                        // Kept only if the file did not change while read.
                        if FileKey::of(&f.path).is_ok_and(|now| now == k) {
                            let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
                            files.insert(f.path.clone(), (k, c.clone()));
                        }
                        Ok(c)
                    }
                    Err(e) => Err(e.to_string()),
                },
            };
            out.push(FileConfigs {
                dataset: f.dataset,
                path: f.path,
                configs,
            });
        }
        let live: std::collections::HashSet<PathBuf> = live.into_iter().collect();
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.retain(|p, _| live.contains(p));
        Ok(out)
    }
}

/// The best of `range` (smallest, largest) by `direction`: `None` for a
/// metric closer to zero whose range spans zero (the range alone does not
/// say which value is nearest).
fn best(range: Option<(f64, f64)>, direction: Option<Direction>) -> Option<f64> {
    let (lo, hi) = range?;
    match direction? {
        Direction::Maximize => Some(hi),
        Direction::Minimize => Some(lo),
        Direction::TowardZero if lo >= 0.0 => Some(lo),
        Direction::TowardZero if hi <= 0.0 => Some(hi),
        Direction::TowardZero => None,
    }
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Empty {}

/// A config's run item: the app's `parquet_derived` shape plus `metric`
/// and `direction`.
#[derive(Serialize)]
struct DerivedRun<'a> {
    id: &'a str,
    pipeline_id: &'a str,
    name: &'a str,
    dataset: &'a str,
    created_at: Option<&'a str>,
    schema_version: &'static str,
    format: &'static str,
    artifact_count: u8,
    predictions_count: u64,
    pipeline_count: u64,
    models: &'a [String],
    best_val_score: Option<f64>,
    best_test_score: Option<f64>,
    metric: Option<&'a str>,
    direction: Option<&'static str>,
    templates: [Empty; 0],
    datasets: [Named<'a>; 1],
    dataset_info: Empty,
    manifest_path: &'static str,
}

impl<'a> DerivedRun<'a> {
    fn of(dataset: &'a str, c: &'a ConfigRows, directions: &Directions) -> Self {
        let metric = (c.metrics.len() == 1).then(|| c.metrics[0].as_str());
        let direction = metric.and_then(|m| directions.get(m).ok());
        DerivedRun {
            id: &c.config,
            pipeline_id: &c.config,
            name: &c.config,
            dataset,
            created_at: None,
            schema_version: "derived",
            format: "parquet_derived",
            artifact_count: 0,
            predictions_count: c.rows,
            pipeline_count: c.pipelines,
            models: &c.models,
            best_val_score: best(c.val, direction),
            best_test_score: best(c.test, direction),
            metric,
            direction: direction.map(Direction::as_str),
            templates: [],
            datasets: [Named { name: dataset }],
            dataset_info: Empty {},
            manifest_path: "",
        }
    }
}

/// Which runs a `/runs` request wants (`source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Run folders and prediction files (the default).
    Unified,
    /// Run folders only.
    Manifests,
    /// Prediction files only.
    Parquet,
}

/// The runs list: run folders (v2, then v1 pipelines, each completed with
/// its config's rows when a prediction file of its dataset holds them),
/// newest first by `created_at`, then the configs no folder names (which
/// have no date) in file and name order. Files whose rows cannot be read
/// are in `errors`, never hiding the others.
pub struct RunsList {
    /// The run folders' runs, merged and sorted.
    pub manifests: Vec<Value>,
    /// Each readable file's configs and which of them a folder took.
    derived: Vec<(String, Arc<FileDerived>, Vec<bool>)>,
    /// The files whose rows could not be read.
    pub errors: Vec<Value>,
}

impl RunsList {
    /// Joins the run folders with the files' configs.
    pub fn new(
        mut manifests: Vec<Value>,
        files: &[FileConfigs],
        source: Source,
        directions: &Directions,
    ) -> Self {
        let mut errors = Vec::new();
        let mut derived = Vec::new();
        if source != Source::Manifests {
            for f in files {
                match &f.configs {
                    Ok(d) => {
                        derived.push((f.dataset.clone(), d.clone(), vec![false; d.configs.len()]))
                    }
                    Err(e) => {
                        errors.push(json!({"path": f.path, "dataset": f.dataset, "error": e}))
                    }
                }
            }
        }
        if source == Source::Parquet {
            manifests.clear();
        }
        for m in &mut manifests {
            let (Some(ds), Some(pid)) = (
                m.get("dataset").and_then(Value::as_str).map(str::to_string),
                m.get("pipeline_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            ) else {
                continue;
            };
            for (dataset, d, taken) in &mut derived {
                if *dataset != ds {
                    continue;
                }
                let Ok(at) = d.configs.binary_search_by(|c| c.config.as_str().cmp(&pid)) else {
                    continue;
                };
                if std::mem::replace(&mut taken[at], true) {
                    continue;
                }
                let c = &d.configs[at];
                let r = serde_json::to_value(DerivedRun::of(dataset, c, directions))
                    .unwrap_or_default();
                for k in [
                    "predictions_count",
                    "pipeline_count",
                    "models",
                    "best_val_score",
                    "best_test_score",
                    "metric",
                    "direction",
                ] {
                    m[k] = r[k].clone();
                }
            }
        }
        // Newest first; a folder without a date after the dated ones.
        manifests.sort_by_cached_key(|v| {
            std::cmp::Reverse(
                v.get("created_at")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        });
        RunsList {
            manifests,
            derived,
            errors,
        }
    }

    /// How many runs.
    pub fn len(&self) -> usize {
        self.manifests.len()
            + self
                .derived
                .iter()
                .map(|(_, _, t)| t.iter().filter(|x| !**x).count())
                .sum::<usize>()
    }

    /// Every config no run folder took: (its dataset, its rows).
    pub fn configs(&self) -> impl Iterator<Item = (&str, &ConfigRows)> {
        self.derived.iter().flat_map(|(ds, d, taken)| {
            d.configs
                .iter()
                .zip(taken)
                .filter(|(_, t)| !**t)
                .map(move |(c, _)| (ds.as_str(), c))
        })
    }

    /// The runs as a JSON array: the folders' items, then each file's
    /// kept JSON (whole when no folder took one of its configs).
    pub fn write_json(&self, out: &mut Vec<u8>, directions: &Directions) {
        out.push(b'[');
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        for m in &self.manifests {
            sep(out);
            serde_json::to_writer(&mut *out, m).expect("writing to memory does not fail");
        }
        for (ds, d, taken) in &self.derived {
            let (buf, spans) = d.json(ds, directions);
            if spans.is_empty() {
                continue;
            }
            if !taken.iter().any(|t| *t) {
                sep(out);
                let mut prev = None;
                for &(s, e) in spans {
                    if prev.is_some() {
                        out.push(b',');
                    }
                    out.extend_from_slice(&buf[s..e]);
                    prev = Some(e);
                }
                continue;
            }
            for (&(s, e), t) in spans.iter().zip(taken) {
                if !t {
                    sep(out);
                    out.extend_from_slice(&buf[s..e]);
                }
            }
        }
        out.push(b']');
    }
}
