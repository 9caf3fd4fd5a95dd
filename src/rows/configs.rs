//! A prediction file's configs (pipelines) as its rows give them: counts,
//! distinct pipelines, the first models, metrics and score ranges, what
//! the nirs4all web app's runs list derives from a `.meta.parquet` file
//! (the server's `webapp::runs`).

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;

use super::{check_columns, for_each_batch_as, StrCol};
use crate::error::Result;

/// One config (pipeline) of a file as its rows give it: what the nirs4all
/// web app's runs list derives from a `.meta.parquet` file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRows {
    /// The `config_name`.
    pub config: String,
    /// Its rows (every partition and fold).
    pub rows: u64,
    /// Distinct non-null `pipeline_uid`s.
    pub pipelines: u64,
    /// The first five distinct `model_name`s, in row order.
    pub models: Vec<String>,
    /// Distinct metrics of its rows, in row order.
    pub metrics: Vec<String>,
    /// Smallest and largest finite `val_score` (NaN and null skipped).
    pub val: Option<(f64, f64)>,
    /// Smallest and largest finite `test_score`.
    pub test: Option<(f64, f64)>,
}

/// Each config of a file (rows with a null `config_name` left out), in
/// `config_name` order. Reads six columns (strings as dictionaries).
/// Memory: one batch and one entry per config (its pipeline ids held
/// until the end).
///
/// # Errors
/// As [`super::for_each_batch`]; [`crate::error::Error::Schema`] for a
/// mistyped column.
pub fn read_config_rows(path: &Path) -> Result<Vec<ConfigRows>> {
    use std::collections::{BTreeMap, HashSet};
    let ctx = path.display().to_string();
    let cols = [
        "config_name",
        "pipeline_uid",
        "model_name",
        "metric",
        "val_score",
        "test_score",
    ];
    let mut by: BTreeMap<String, (ConfigRows, HashSet<String>)> = BTreeMap::new();
    let widen = |r: &mut Option<(f64, f64)>, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            *r = Some(r.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
        }
    };
    for_each_batch_as(path, Some(&cols), 65536, true, |b| {
        check_columns(b.schema().as_ref(), &ctx, false)?;
        let (config, pipe, model, metric) = (
            StrCol::of(&b, "config_name"),
            StrCol::of(&b, "pipeline_uid"),
            StrCol::of(&b, "model_name"),
            StrCol::of(&b, "metric"),
        );
        let score = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned())
        };
        let (val, test) = (score("val_score"), score("test_score"));
        let at = |a: &Option<arrow_array::Float64Array>, i: usize| {
            a.as_ref().and_then(|a| a.is_valid(i).then(|| a.value(i)))
        };
        for i in 0..b.num_rows() {
            let Some(c) = config.get(i) else { continue };
            let (e, pipes) = match by.get_mut(c) {
                Some(e) => e,
                None => by.entry(c.to_string()).or_insert_with(|| {
                    let empty = ConfigRows {
                        config: c.to_string(),
                        rows: 0,
                        pipelines: 0,
                        models: Vec::new(),
                        metrics: Vec::new(),
                        val: None,
                        test: None,
                    };
                    (empty, HashSet::new())
                }),
            };
            e.rows += 1;
            if let Some(p) = pipe.get(i) {
                if !pipes.contains(p) {
                    pipes.insert(p.to_string());
                }
            }
            if let Some(m) = model.get(i) {
                if e.models.len() < 5 && !e.models.iter().any(|x| x == m) {
                    e.models.push(m.to_string());
                }
            }
            if let Some(m) = metric.get(i) {
                if !e.metrics.iter().any(|x| x == m) {
                    e.metrics.push(m.to_string());
                }
            }
            widen(&mut e.val, at(&val, i));
            widen(&mut e.test, at(&test, i));
        }
        Ok(())
    })?;
    Ok(by
        .into_values()
        .map(|(mut e, pipes)| {
            e.pipelines = pipes.len() as u64;
            e
        })
        .collect())
}
