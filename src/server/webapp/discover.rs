//! What a nirs4all workspace folder holds besides its prediction files:
//! the run folders nirs4all wrote under `runs/` (one `manifest.yaml` per
//! pipeline, v1; or a `run_manifest.yaml` per run, v2), `exports/` and
//! `library/`, listed as the nirs4all web app's backend lists them (its
//! `WorkspaceScanner`, GBeurier/nirs4all-webapp `8ee91f4`).
//!
//! Read-only, and only inside the folder: entries are listed with
//! `read_dir` (symbolic links are not followed out of it: an entry whose
//! real path leaves the folder is skipped), manifests larger than
//! [`MAX_MANIFEST_BYTES`] are skipped, and every list is sorted by name
//! (the app's backend used the directory's order, which changes when a
//! file is replaced and is not the same on two machines). Cost: one
//! `read_dir` per folder and one read per manifest; nothing is cached
//! (a scan of a workspace of 2,000 run folders reads 2,000 small files).

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// Manifests larger than this are skipped (nirs4all's are a few KB; an
/// execution trace can make one a few hundred KB).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Where `runs/`, `exports/` and `library/` are for a linked folder: its
/// `workspace/` sub-folder when it has one, else the folder itself when it
/// has `runs/` or `exports/`, else `workspace/` (absent), as the app does.
pub fn workspace_dir(folder: &Path) -> PathBuf {
    let sub = folder.join("workspace");
    if sub.is_dir() {
        sub
    } else if folder.join("runs").exists() || folder.join("exports").exists() {
        folder.to_path_buf()
    } else {
        sub
    }
}

/// Why a folder is not a nirs4all workspace (`None`: it is one): it must
/// hold `runs/`, `exports/` or `.meta.parquet` files (or be a store).
pub fn invalid_reason(folder: &Path) -> Option<String> {
    if !folder.exists() {
        return Some("Path does not exist".into());
    }
    if !folder.is_dir() {
        return Some("Path is not a directory".into());
    }
    let wd = workspace_dir(folder);
    let has_runs = wd.join("runs").exists();
    let has_exports = wd.join("exports").exists();
    let has_predictions = entries(folder)
        .iter()
        .any(|(n, p)| n.ends_with(".meta.parquet") && p.is_file());
    let has_store = folder.join("store.sqlite").is_file();
    if has_runs || has_exports || has_predictions || has_store {
        None
    } else {
        Some("No runs/, exports/, or prediction files found".into())
    }
}

/// The entries of `dir` that stay inside it (by real path), sorted by
/// name, hidden ones included; empty when it cannot be listed.
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let real = dir.canonicalize().ok();
    let mut out: Vec<(String, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                // A link is followed only when it stays inside the folder.
                let (Some(r), Ok(t)) = (&real, p.canonicalize()) else {
                    return None;
                };
                if !t.starts_with(r) {
                    return None;
                }
            }
            Some((e.file_name().to_string_lossy().into_owned(), p))
        })
        .collect();
    out.sort();
    out
}

/// A YAML or JSON file as a JSON value (`None` when unreadable, too large
/// or not a mapping).
fn read_doc(path: &Path, yaml: bool) -> Option<Map<String, Value>> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_MANIFEST_BYTES {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = if yaml {
        serde_saphyr::from_str(&text).ok()?
    } else {
        serde_json::from_str(&text).ok()?
    };
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn s(m: &Map<String, Value>, k: &str, default: &str) -> Value {
    match m.get(k) {
        Some(Value::Null) | None => Value::String(default.into()),
        Some(v) => v.clone(),
    }
}

fn or(m: &Map<String, Value>, k: &str, default: Value) -> Value {
    match m.get(k) {
        Some(Value::Null) | None => default,
        Some(v) => v.clone(),
    }
}

fn len_of(v: Option<&Value>) -> usize {
    match v {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(o)) => o.get("items").map_or(o.len(), |i| len_of(Some(i))),
        _ => 0,
    }
}

fn artifact_count(m: &Map<String, Value>) -> usize {
    match m.get("artifacts") {
        Some(Value::Object(o)) => len_of(o.get("items")),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// The runs nirs4all (and the web app's job runner) wrote under `runs/`:
/// v2 runs (folders with `run_manifest.yaml`) first, then v1 pipelines
/// (`runs/<dataset>/<pipeline>/manifest.yaml`); folders starting with `_`
/// skipped. Items carry the fields of the app's `discover_runs`.
pub fn manifest_runs(folder: &Path) -> Vec<Value> {
    let runs = workspace_dir(folder).join("runs");
    let mut v2 = Vec::new();
    let mut v1 = Vec::new();
    for (name, dir) in entries(&runs) {
        if name.starts_with('_') || !dir.is_dir() {
            continue;
        }
        let rm = dir.join("run_manifest.yaml");
        if rm.is_file() {
            if let Some(m) = read_doc(&rm, true) {
                v2.push(v2_run(&name, &dir, &rm, &m));
            }
            continue;
        }
        for (pname, pdir) in entries(&dir) {
            let mf = pdir.join("manifest.yaml");
            if pname.starts_with('_') || !pdir.is_dir() || !mf.is_file() {
                continue;
            }
            let Some(m) = read_doc(&mf, true) else {
                continue;
            };
            v1.push(json!({
                "id": s(&m, "uid", &pname),
                "pipeline_id": pname,
                "name": s(&m, "name", &pname),
                "dataset": name,
                "created_at": s(&m, "created_at", ""),
                "schema_version": s(&m, "schema_version", "1.0"),
                "artifact_count": artifact_count(&m),
                "predictions_count": len_of(m.get("predictions")),
                "dataset_info": or(&m, "dataset_info", json!({})),
                "manifest_path": mf,
                "format": "v1",
            }));
        }
    }
    v2.extend(v1);
    v2
}

fn v2_run(name: &str, dir: &Path, path: &Path, m: &Map<String, Value>) -> Value {
    let summary = or(m, "summary", json!({}));
    let results_count = summary.get("total_results").cloned().unwrap_or_else(|| {
        // Result folders: results/<dataset>/<config>/.
        let n: usize = entries(&dir.join("results"))
            .iter()
            .filter(|(_, p)| p.is_dir())
            .map(|(_, p)| entries(p).iter().filter(|(_, c)| c.is_dir()).count())
            .sum();
        json!(n)
    });
    let templates: Vec<Value> = match m.get("templates") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_object)
            .map(|t| {
                json!({"id": s(t, "id", ""), "name": s(t, "name", ""), "file": s(t, "file", ""),
                       "expansion_count": or(t, "expansion_count", json!(1))})
            })
            .collect(),
        _ => Vec::new(),
    };
    let datasets: Vec<Value> = match m.get("datasets") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_object)
            .map(|d| {
                json!({"name": s(d, "name", ""), "path": s(d, "path", ""), "hash": s(d, "hash", ""),
                       "task_type": s(d, "task_type", ""), "n_samples": or(d, "n_samples", json!(0)),
                       "n_features": or(d, "n_features", json!(0)), "y_columns": or(d, "y_columns", json!([])),
                       "y_stats": or(d, "y_stats", json!({})), "wavelength_range": or(d, "wavelength_range", json!([])),
                       "wavelength_unit": s(d, "wavelength_unit", ""), "version": or(d, "version", json!(0))})
            })
            .collect(),
        _ => Vec::new(),
    };
    let sm = summary.as_object().cloned().unwrap_or_default();
    json!({
        "id": s(m, "uid", name),
        "name": s(m, "name", name),
        "description": s(m, "description", ""),
        "status": s(m, "status", "unknown"),
        "created_at": s(m, "created_at", ""),
        "started_at": s(m, "started_at", ""),
        "completed_at": s(m, "completed_at", ""),
        "schema_version": s(m, "schema_version", "2.0"),
        "manifest_path": path,
        "run_dir": dir,
        "format": "v2",
        "templates": templates,
        "total_pipeline_configs": or(m, "total_pipeline_configs", json!(0)),
        "datasets": datasets,
        "config": or(m, "config", json!({})),
        "summary": summary,
        "results_count": results_count,
        "completed_results": or(&sm, "completed_results", json!(0)),
        "failed_results": or(&sm, "failed_results", json!(0)),
        "best_result": or(&sm, "best_result", json!({})),
        "checkpoints": or(m, "checkpoints", json!([])),
        "resume_from": or(m, "resume_from", Value::Null),
    })
}

/// The results (one per pipeline manifest): v2 runs' `results/<dataset>/
/// <config>/manifest.yaml` (only run `run_id`'s when given) and, without a
/// `run_id`, v1 pipelines; the fields of the app's `discover_results`.
pub fn results(folder: &Path, run_id: Option<&str>) -> Vec<Value> {
    let runs = workspace_dir(folder).join("runs");
    let mut out = Vec::new();
    let item = |run: &str, dataset: &str, config: &str, path: &Path, m: &Map<String, Value>| {
        json!({
            "id": s(m, "uid", config),
            "run_id": if run.is_empty() { s(m, "run_id", "") } else { json!(run) },
            "template_id": s(m, "template_id", ""),
            "dataset": dataset,
            "pipeline_config": s(m, "pipeline_config", config),
            "pipeline_config_id": config,
            "created_at": s(m, "created_at", ""),
            "schema_version": s(m, "schema_version", "1.0"),
            "generator_choices": or(m, "generator_choices", json!([])),
            "best_score": or(m, "best_score", Value::Null),
            "best_model": s(m, "best_model", ""),
            "metric": s(m, "metric", ""),
            "task_type": s(m, "task_type", ""),
            "n_samples": or(m, "n_samples", json!(0)),
            "n_features": or(m, "n_features", json!(0)),
            "predictions_count": len_of(m.get("predictions")),
            "artifact_count": artifact_count(m),
            "manifest_path": path,
        })
    };
    for (name, dir) in entries(&runs) {
        if name.starts_with('_') || !dir.is_dir() {
            continue;
        }
        if dir.join("run_manifest.yaml").is_file() {
            if run_id.is_some_and(|r| r != name) {
                continue;
            }
            for (ds, ddir) in entries(&dir.join("results")) {
                for (cfg, cdir) in entries(&ddir) {
                    let mf = cdir.join("manifest.yaml");
                    if let Some(m) = read_doc(&mf, true) {
                        out.push(item(&name, &ds, &cfg, &mf, &m));
                    }
                }
            }
        } else if run_id.is_none() {
            for (cfg, cdir) in entries(&dir) {
                let mf = cdir.join("manifest.yaml");
                if cfg.starts_with('_') || !mf.is_file() {
                    continue;
                }
                if let Some(m) = read_doc(&mf, true) {
                    out.push(item("", &name, &cfg, &mf, &m));
                }
            }
        }
    }
    out
}

/// The datasets the manifest runs name (v2: each run's `datasets`, keyed
/// by hash or name; v1: the dataset folder, with its `dataset_info`).
/// `status` says whether the dataset's path is there: checked only inside
/// `folder` (`valid`, or `relocated` when a file of the same name is in
/// the folder); a path elsewhere is not looked at (`unknown`), so no
/// request learns what exists outside the served folders.
pub fn datasets(folder: &Path, runs: &[Value]) -> Vec<Value> {
    let mut order: Vec<String> = Vec::new();
    let mut by: std::collections::HashMap<String, Map<String, Value>> = Default::default();
    let mut add = |key: String, fields: Map<String, Value>, version: Value, hash: Value| {
        let e = by.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            let mut f = fields;
            f.insert("runs_count".into(), json!(0));
            f.insert("versions_seen".into(), json!([]));
            f.insert("hashes_seen".into(), json!([]));
            f
        });
        if let Some(Value::Number(n)) = e.get("runs_count").cloned() {
            e.insert("runs_count".into(), json!(n.as_u64().unwrap_or(0) + 1));
        }
        for (k, v) in [("versions_seen", version), ("hashes_seen", hash)] {
            if v.is_null() || v == json!("") || v == json!(0) {
                continue;
            }
            if let Some(Value::Array(a)) = e.get_mut(k) {
                if !a.contains(&v) {
                    a.push(v);
                }
            }
        }
    };
    for r in runs {
        let Some(r) = r.as_object() else { continue };
        if r.get("format") == Some(&json!("v2")) {
            for d in r
                .get("datasets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(d) = d.as_object() else { continue };
                let hash = d.get("hash").cloned().unwrap_or(Value::Null);
                let key = match hash.as_str() {
                    Some(h) if !h.is_empty() => h.to_string(),
                    _ => d
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                };
                let mut f = d.clone();
                f.remove("version");
                add(
                    key,
                    f,
                    d.get("version").cloned().unwrap_or(Value::Null),
                    hash,
                );
            }
        } else {
            let name = r.get("dataset").and_then(Value::as_str).unwrap_or("");
            let info = r
                .get("dataset_info")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut f = Map::new();
            f.insert("name".into(), json!(name));
            for (k, d) in [
                ("path", json!("")),
                ("hash", json!("")),
                ("task_type", json!("")),
                ("n_samples", json!(0)),
                ("n_features", json!(0)),
                ("y_columns", json!([])),
                ("y_stats", json!({})),
            ] {
                f.insert(k.into(), or(&info, k, d));
            }
            f.insert("wavelength_range".into(), json!([]));
            f.insert("wavelength_unit".into(), json!(""));
            let hash = info.get("hash").cloned().unwrap_or(Value::Null);
            add(
                format!("v1:{name}"),
                f,
                info.get("version_at_run").cloned().unwrap_or(Value::Null),
                hash,
            );
        }
    }
    let real = folder.canonicalize().ok();
    order
        .into_iter()
        .filter_map(|k| by.remove(&k))
        .map(|mut d| {
            let p = d
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let status = if p.is_empty() {
                "unknown".to_string()
            } else {
                let path = Path::new(&p);
                let inside = |q: &Path| {
                    real.as_ref()
                        .is_some_and(|r| q.canonicalize().is_ok_and(|c| c.starts_with(r)))
                };
                let moved = path.file_name().map(|n| folder.join(n));
                if inside(path) {
                    "valid".to_string()
                } else if let Some(m) = moved.filter(|m| inside(m)) {
                    d.insert("path".into(), json!(m));
                    "relocated".to_string()
                } else {
                    "unknown".to_string()
                }
            };
            d.insert("status".into(), json!(status));
            Value::Object(d)
        })
        .collect()
}

/// The prediction files of the folder (not recursive): `.meta.parquet`
/// files, then nirs4all's older `*_predictions.json` files.
pub fn prediction_files(folder: &Path) -> Vec<Value> {
    let all = entries(folder);
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut out: Vec<Value> = all
        .iter()
        .filter_map(|(n, p)| {
            let ds = n.strip_suffix(".meta.parquet")?;
            p.is_file().then(
                || json!({"dataset": ds, "path": p, "format": "parquet", "size_bytes": size(p)}),
            )
        })
        .collect();
    out.extend(all.iter().filter_map(|(n, p)| {
        let ds = n.strip_suffix("_predictions.json")?;
        p.is_file()
            .then(|| json!({"dataset": ds, "path": p, "format": "json", "size_bytes": size(p)}))
    }));
    out
}

/// The exports under `exports/`: `.n4a` bundles (top level and per
/// dataset), `*_pipeline.json`, `*_summary.json` and `*_predictions.csv`
/// per dataset folder.
pub fn exports(folder: &Path) -> Vec<Value> {
    let dir = workspace_dir(folder).join("exports");
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut out = Vec::new();
    let bundle = |p: &Path, name: &str, dataset: &str| json!({"type": "n4a_bundle", "name": name, "dataset": dataset, "path": p, "size_bytes": size(p)});
    for (name, p) in entries(&dir) {
        if p.is_file() {
            if let Some(stem) = name.strip_suffix(".n4a") {
                out.push(bundle(&p, stem, ""));
            }
            continue;
        }
        if !p.is_dir() {
            continue;
        }
        for (f, fp) in entries(&p) {
            if !fp.is_file() {
                continue;
            }
            if let Some(stem) = f.strip_suffix(".n4a") {
                out.push(bundle(&fp, stem, &name));
            } else if let Some(model) = f.strip_suffix("_pipeline.json") {
                let mut v = json!({"type": "pipeline_json", "model_name": model, "dataset": name,
                                   "path": fp, "size_bytes": size(&fp)});
                if let Ok(Value::Array(a)) = std::fs::read_to_string(&fp)
                    .map_err(|_| ())
                    .and_then(|t| serde_json::from_str(&t).map_err(|_| ()))
                {
                    v["steps_count"] = json!(a.len());
                }
                out.push(v);
            } else if let Some(model) = f.strip_suffix("_summary.json") {
                let mut v = json!({"type": "summary_json", "model_name": model, "dataset": name, "path": fp});
                if let Some(m) = read_doc(&fp, false) {
                    for k in ["test_score", "val_score", "export_date", "export_mode"] {
                        v[k] = m.get(k).cloned().unwrap_or(Value::Null);
                    }
                }
                out.push(v);
            } else if let Some(model) = f.strip_suffix("_predictions.csv") {
                out.push(
                    json!({"type": "predictions_csv", "dataset": name, "model_name": model,
                                "path": fp, "size_bytes": size(&fp)}),
                );
            }
        }
    }
    out
}

/// The library under `library/`: `templates/*.json`, then trained
/// pipelines (`trained/pipeline/<name>/pipeline.json`) and filtered ones
/// (`trained/filtered/<name>/pipeline.json`).
pub fn templates(folder: &Path) -> Vec<Value> {
    let lib = workspace_dir(folder).join("library");
    let mut out = Vec::new();
    for (name, p) in entries(&lib.join("templates")) {
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let m = read_doc(&p, false).unwrap_or_default();
        out.push(json!({"type": "template", "name": stem, "path": p,
                        "description": s(&m, "description", ""), "created_at": s(&m, "created_at", "")}));
    }
    for (kind, sub) in [("trained_pipeline", "pipeline"), ("filtered", "filtered")] {
        for (name, d) in entries(&lib.join("trained").join(sub)) {
            let pj = d.join("pipeline.json");
            if !pj.is_file() {
                continue;
            }
            let mut v = json!({"type": kind, "name": name, "path": pj});
            if let Ok(Value::Array(a)) = std::fs::read_to_string(&pj)
                .map_err(|_| ())
                .and_then(|t| serde_json::from_str(&t).map_err(|_| ()))
            {
                v["steps_count"] = json!(a.len());
            }
            out.push(v);
        }
    }
    out
}
