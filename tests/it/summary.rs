//! Workspace summaries over every kind of file (issue 10): nirs4all's 1.0
//! footers, n4a's 1.1, 1.2 and 1.3, files without a summary, bad files;
//! and the 1.3 footer layout as pyarrow, polars and DuckDB read it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::round4;
use n4a::metric::Direction;
use n4a::schema::Prediction;
use n4a::workspace::merge::{Accuracy, Form, WorkspaceSummary};
use n4a::writer::{PredictionWriter, WriterOptions};
use n4a::Workspace;

use crate::util::{all_rows, as_nirs4all_1_0, close, fixture, row};

const GENERATED: [&str; 4] = [
    "wheat_protein_00000",
    "forage_digestibility_00001",
    "soil_nitrogen_00002",
    "diesel_cetane_00003",
];

/// The 1.0 workspace: the bench generator's files (`gen_workspace.py`,
/// nirs4all's layout) and the two real nirs4all files.
fn nirs4all_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for ds in GENERATED {
        let name = format!("{ds}.meta.parquet");
        std::fs::copy(
            fixture("nirs4all-1.0-generated").join(&name),
            dir.path().join(&name),
        )
        .unwrap();
    }
    for name in ["corn_moisture.meta.parquet", "grain_class.meta.parquet"] {
        std::fs::copy(fixture(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn json_of(s: &WorkspaceSummary, form: Form) -> serde_json::Value {
    serde_json::from_slice(&s.to_json(form)).expect("the answer is valid JSON")
}

/// The best `k` rows of `metric` over every row, by direction, ties by
/// (dataset, row): the oracle of `top_by_metric`.
fn oracle_top(
    rows: &[(String, u64, Prediction)],
    metric: &str,
    dir: Direction,
    k: usize,
) -> Vec<(String, u64, f64)> {
    // A best list (issue 29): the metric's val rows (every partition's
    // when it has none), best first, ties by dataset then row, one entry
    // per model instance (dataset, config, model, fold).
    let scored: Vec<&(String, u64, Prediction)> = rows
        .iter()
        .filter(|(_, _, p)| p.metric.as_deref() == Some(metric))
        .filter(|(_, _, p)| p.val_score.is_some_and(f64::is_finite))
        .collect();
    let has_val = scored
        .iter()
        .any(|(_, _, p)| p.partition.as_deref() == Some("val"));
    let mut v: Vec<&(String, u64, Prediction)> = scored
        .into_iter()
        .filter(|(_, _, p)| !has_val || p.partition.as_deref() == Some("val"))
        .collect();
    v.sort_by(|a, b| {
        dir.compare(a.2.val_score.unwrap(), b.2.val_score.unwrap())
            .then_with(|| a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|(d, _, p)| {
        let key = (d, &p.config_name, &p.model_name, &p.fold_id);
        (key.1.is_none() && key.2.is_none() && key.3.is_none()) || seen.insert(key)
    });
    v.into_iter()
        .take(k)
        .map(|(d, i, p)| (d.clone(), *i, p.val_score.unwrap()))
        .collect()
}

fn tops(s: &WorkspaceSummary, metric: &str) -> Vec<(String, u64, f64)> {
    s.top_by_metric[metric]
        .predictions
        .iter()
        .map(|e| (e.dataset.clone().unwrap(), e.row, e.val_score.unwrap()))
        .collect()
}

#[test]
fn nirs4all_1_0_workspace_gets_every_section() {
    let ws = nirs4all_workspace();
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    let rows = all_rows(ws.path());
    assert_eq!(s.total_datasets, 6);
    assert_eq!(s.total_predictions, rows.len() as u64);
    assert_eq!(s.merged_files, 0);
    assert_eq!(s.files_without_state.len(), 6);

    // Models: the webapp's merge of the stored facets (counts summed,
    // averages weighted by count), from the footers as nirs4all wrote them.
    // The files mix mse and balanced_accuracy (issue 29): no pooled model
    // averages or statistics, each metric's under `metrics`. A 1.0 file
    // holds one metric, so its stored facets are that metric's.
    assert!(s.models.iter().all(|m| m.avg_val_score.is_none()));
    assert!(s.stats.is_none());
    let mut oracle: BTreeMap<(String, String), (u64, f64, u64)> = BTreeMap::new();
    for d in &s.datasets {
        let stored = n4a::footer::Footer::read(&d.path)
            .unwrap()
            .summary()
            .unwrap()
            .unwrap();
        let metric = rows
            .iter()
            .find(|(ds, _, _)| *ds == d.dataset)
            .and_then(|(_, _, p)| p.metric.clone())
            .unwrap();
        for m in &stored.facets.models {
            let e = oracle
                .entry((metric.clone(), m.name.clone().unwrap()))
                .or_default();
            e.0 += m.count;
            if let Some(a) = m.avg_val_score {
                e.1 += a * m.count as f64;
                e.2 += m.count;
            }
        }
    }
    let per_metric: usize = s.metrics.iter().map(|m| m.models.len()).sum();
    assert_eq!(per_metric, oracle.len());
    for ms in &s.metrics {
        for m in &ms.models {
            let (count, sum, n) = oracle[&(ms.name.clone(), m.name.clone().unwrap())];
            assert_eq!(m.count, count);
            assert_eq!(m.avg_val_score, Some(round4(sum / n as f64)));
        }
    }
    // Counts are exact from the rows too.
    for m in &s.models {
        let n = rows
            .iter()
            .filter(|(_, _, p)| p.model_name == m.name)
            .count() as u64;
        assert_eq!(m.count, n);
    }
    // Stats per metric: min and max exact, mean and std combined from each
    // file's count (column statistics): equal to the rows'.
    for ms in &s.metrics {
        let vals: Vec<f64> = rows
            .iter()
            .filter(|(_, _, p)| p.metric.as_deref() == Some(&ms.name))
            .filter_map(|(_, _, p)| p.val_score)
            .collect();
        let st = ms.stats.as_ref().unwrap().val_score.as_ref().unwrap();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (vals.len() - 1) as f64;
        assert_eq!(st.min, vals.iter().copied().reduce(f64::min), "{}", ms.name);
        assert_eq!(st.max, vals.iter().copied().reduce(f64::max));
        assert!(close(st.mean.unwrap(), mean), "{:?} vs {mean}", st.mean);
        assert!(close(st.std.unwrap(), var.sqrt()));
        assert_eq!(st.count, Some(vals.len() as u64));
    }

    // Best rows by direction, from the rows: the lowest mse, the highest
    // balanced accuracy; never nirs4all's maxima for mse.
    for (metric, dir) in [
        ("mse", Direction::Minimize),
        ("balanced_accuracy", Direction::Maximize),
    ] {
        assert_eq!(s.top_by_metric[metric].direction, dir);
        assert_eq!(
            tops(&s, metric),
            oracle_top(&rows, metric, dir, 10),
            "{metric}"
        );
    }
    let best = &s.top_by_metric["mse"].predictions[0];
    let (_, i, _) = &oracle_top(&rows, "mse", Direction::Minimize, 1)[0];
    let truth = rows
        .iter()
        .find(|(d, r, _)| Some(d) == best.dataset.as_ref() && r == i)
        .unwrap();
    assert_eq!(best.id, truth.2.id);
    assert_eq!(best.model_name, truth.2.model_name);
    assert_eq!(best.partition, truth.2.partition);
    assert_eq!(s.ranking.as_ref().unwrap().metric, "mse");

    // Runs: every file's runs, concatenated; the maxima nirs4all stored for
    // lower-is-better metrics are not presented as bests.
    let runs = s.runs();
    let n_runs: u64 = s
        .datasets
        .iter()
        .map(|d| d.summary().unwrap().facets.n_configs)
        .sum();
    assert_eq!(runs.len() as u64, n_runs);
    let v = json_of(&s, Form::Full);
    // Listed once (issue 29), each with its metric.
    assert_eq!(v["runs"].as_array().unwrap().len(), s.runs_once().len());
    for r in v["runs"].as_array().unwrap() {
        if r["metric"] == "mse" {
            assert!(r["best_val_score"].is_null(), "{r}");
        }
    }
    for d in v["datasets"].as_array().unwrap() {
        let minimize = d["ranking"]["direction"] == "minimize";
        if minimize {
            assert_eq!(
                d["top_predictions"],
                serde_json::json!([]),
                "{}",
                d["dataset"]
            );
            assert!(d["n4a_note"].as_str().unwrap().contains("worst"));
        } else {
            assert_eq!(d["ranking"]["direction"], "maximize");
            assert!(!d["top_predictions"].as_array().unwrap().is_empty());
        }
    }

    // Marked as exact or approximate where nirs4all's rounding limits it.
    let e = &s.exactness;
    assert_eq!(e.counts, Accuracy::Exact);
    assert_eq!(e.models_avg_val_score, Accuracy::Approximate);
    assert_eq!(e.stats_min_max, Accuracy::Exact);
    assert_eq!(e.stats_mean_std, Accuracy::Exact);
    assert_eq!(e.stats_quartiles, Accuracy::Unavailable);
    assert_eq!(e.runs_best, Accuracy::Unavailable);
    assert_eq!(e.top_predictions, Accuracy::Exact);
    assert_eq!(v["exactness"]["models_avg_val_score"], "approximate");
}

#[test]
fn the_best_search_reads_only_files_that_can_hold_the_best() {
    // Twelve mse files rewritten the nirs4all way: the workspace's ten best
    // rows sit in few files; the others' column statistics prove they
    // cannot beat them, so their score columns are not read.
    let src = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    for i in 0..12u32 {
        let name = format!("ds_{i:02}");
        let mut w = PredictionWriter::create(src.path(), &name, WriterOptions::default()).unwrap();
        for r in 0..60u32 {
            let v = f64::from(i) + f64::from(r) / 100.0 + 0.5;
            // Each row its own model instance (a fold of its own).
            w.write(&row(
                &format!("cfg_{}", r % 7),
                "PLS",
                &r.to_string(),
                "val",
                v,
            ))
            .unwrap();
        }
        w.finish().unwrap();
        let file = format!("{name}.meta.parquet");
        as_nirs4all_1_0(&src.path().join(&file), &ws.path().join(&file));
    }
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    let rows = all_rows(ws.path());
    assert_eq!(
        tops(&s, "mse"),
        oracle_top(&rows, "mse", Direction::Minimize, 10)
    );
    assert!(s.top_by_metric["mse"]
        .predictions
        .iter()
        .all(|e| e.dataset.as_deref() == Some("ds_00")));
    let note = s
        .exactness
        .notes
        .iter()
        .find(|n| n.contains("score columns read"))
        .unwrap();
    assert!(note.contains("(1 score columns read"), "{note}");
}

#[test]
fn mixed_workspace_gives_one_coherent_answer() {
    let ws = tempfile::tempdir().unwrap();
    let p = ws.path();
    // n4a state (1.3), written here.
    let mut w = PredictionWriter::create(p, "ours", WriterOptions::default()).unwrap();
    for i in 0..40 {
        w.write(&row(
            &format!("c{}", i % 4),
            "PLS",
            "0",
            "val",
            0.05 + f64::from(i) * 0.01,
        ))
        .unwrap();
    }
    w.finish().unwrap();
    // nirs4all 1.0, no summary, n4a 1.1 and 1.2, and a truncated file.
    std::fs::copy(
        fixture("corn_moisture.meta.parquet"),
        p.join("corn_moisture.meta.parquet"),
    )
    .unwrap();
    std::fs::copy(
        fixture("no_summary.meta.parquet"),
        p.join("no_summary.meta.parquet"),
    )
    .unwrap();
    std::fs::copy(
        fixture("n4a_1_1.meta.parquet"),
        p.join("n4a_1_1.meta.parquet"),
    )
    .unwrap();
    std::fs::copy(
        fixture("n4a_1_2.meta.parquet"),
        p.join("n4a_1_2.meta.parquet"),
    )
    .unwrap();
    std::fs::copy(
        fixture("truncated.meta.parquet"),
        p.join("truncated.meta.parquet"),
    )
    .unwrap();
    let s = Workspace::open(p).unwrap().summary().unwrap();
    let rows = all_rows(p);
    assert_eq!(s.total_datasets, 5);
    assert_eq!(s.total_predictions, rows.len() as u64);
    assert_eq!(s.merged_files, 3, "the 1.3, 1.2 and 1.1 files");
    assert_eq!(s.errors.len(), 1);
    assert!(s.errors[0].error.contains("truncated.meta.parquet"));
    assert_eq!(s.errors[0].kind, "parquet");
    for (metric, dir) in [
        ("mse", Direction::Minimize),
        ("balanced_accuracy", Direction::Maximize),
    ] {
        assert_eq!(
            tops(&s, metric),
            oracle_top(&rows, metric, dir, 10),
            "{metric}"
        );
    }
    // Files without a summary count in totals and bests, not in models.
    let modelled: u64 = s.models.iter().map(|m| m.count).sum();
    let bare = rows.iter().filter(|(d, _, _)| d == "no_summary").count() as u64;
    assert_eq!(modelled, rows.len() as u64 - bare);
    assert_eq!(s.exactness.stats_mean_std, Accuracy::Approximate);
    assert!(s
        .exactness
        .notes
        .iter()
        .any(|n| n.contains("without a summary")));
    let v = json_of(&s, Form::Full);
    assert_eq!(v["errors"][0]["kind"], "parquet");
    let entries = v["datasets"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    let bare = entries
        .iter()
        .find(|d| d["dataset"] == "no_summary")
        .unwrap();
    assert_eq!(bare["has_summary"], false);
    assert_eq!(bare["total_predictions"], 15);
    let ours = entries.iter().find(|d| d["dataset"] == "ours").unwrap();
    assert_eq!(ours["n4a_version"], "1.5");
    assert_eq!(ours["ranking"]["direction"], "minimize");
    assert!(ours.get("state").is_none());
}

#[test]
fn brief_form_has_no_runs() {
    let ws = nirs4all_workspace();
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    let full = json_of(&s, Form::Full);
    let brief = json_of(&s, Form::Brief);
    assert!(brief.get("runs").is_none());
    for (f, b) in full["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .zip(brief["datasets"].as_array().unwrap())
    {
        assert!(b.get("runs").is_none());
        let mut f = f.clone();
        f.as_object_mut().unwrap().remove("runs");
        assert_eq!(&f, b);
    }
    assert_eq!(full["models"], brief["models"]);
    assert!(s.to_json(Form::Brief).len() < s.to_json(Form::Full).len());
}

/// Key/values of a file's footer, as the parquet crate reads them.
fn key_values(path: &Path) -> Vec<(String, String)> {
    let meta = crate::util::metadata(path).unwrap();
    meta.file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect()
}

/// What pyarrow's `ParquetFile(path).schema_arrow.metadata` holds: the
/// metadata inside `ARROW:schema` when the footer has one (and only it),
/// else the file's key/values. (arrow-rs merges both; pyarrow does not.)
pub fn pyarrow_metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let kv = key_values(path);
    match kv.iter().find(|(k, _)| k == "ARROW:schema") {
        Some((_, encoded)) => {
            let bytes = base64_simd::STANDARD.decode_to_vec(encoded).unwrap();
            let msg = arrow_ipc::root_as_message(&bytes[8..]).unwrap();
            arrow_ipc::convert::try_fb_to_schema(msg.header_as_schema().unwrap())
                .unwrap()
                .metadata()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }
        None => kv.into_iter().collect(),
    }
}

#[test]
fn format_1_3_carries_the_summary_in_arrow_schema_and_as_a_key_value() {
    let ws = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(ws.path(), "corn", WriterOptions::default()).unwrap();
    for i in 1..=50 {
        w.write(&row(
            &format!("c{}", i % 5),
            "PLS",
            "0",
            "val",
            f64::from(i),
        ))
        .unwrap();
    }
    let written = w.finish().unwrap();
    let meta = ws.path().join("corn.meta.parquet");
    let kv = key_values(&meta);
    let keys: Vec<&str> = kv.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["ARROW:schema", "n4a_summary", "n4a_state"],
        "ARROW:schema first, the state's head last"
    );
    let seen = pyarrow_metadata(&meta);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["n4a_summary"],
        "pyarrow shows the summary and nothing of n4a's state"
    );
    assert_eq!(&seen["n4a_summary"], &kv[1].1, "the same text twice");
    let summary: serde_json::Value = serde_json::from_str(&seen["n4a_summary"]).unwrap();
    assert_eq!(summary["n4a_version"], "1.5");
    assert!(summary.get("state").is_none());
    assert_eq!(summary["total_predictions"], 50);
    // Read back whole: the state from its own key.
    let back = n4a::footer::Footer::read(&meta)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(back.state, written.state);
    // The contract's Arrow types, in nirs4all's form (large_string).
    let m = crate::util::metadata(&meta).unwrap();
    let arrow = parquet::arrow::parquet_to_arrow_schema(
        m.file_metadata().schema_descr(),
        m.file_metadata().key_value_metadata(),
    )
    .unwrap();
    assert_eq!(arrow.fields().len(), 35);
    assert_eq!(
        arrow.field_with_name("val_score").unwrap().data_type(),
        &arrow_schema::DataType::Float64
    );
    assert_eq!(
        arrow.field_with_name("id").unwrap().data_type(),
        &arrow_schema::DataType::LargeUtf8
    );

    // Appended to: the state continues; refreshed: nothing to do.
    let mut w = PredictionWriter::append(ws.path(), "corn", WriterOptions::default()).unwrap();
    w.write(&row("c9", "PLS", "0", "val", 0.01)).unwrap();
    let appended = w.finish().unwrap();
    assert_eq!(appended.state.as_ref().unwrap().rows, 51);
    assert_eq!(appended.top_predictions[0].val_score, Some(0.01));
    let r = n4a::refresh::refresh_workspace(ws.path(), &Default::default(), &|_, _| {}).unwrap();
    assert_eq!((r.refreshed, r.unchanged), (0, 1));
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    assert_eq!(s.merged_files, 1);
    assert_eq!(s.top_by_metric["mse"].predictions[0].val_score, Some(0.01));
    python_sees_the_summary(&meta, "1.5");
}

/// With Python and pyarrow on the machine, the real pyarrow reads the
/// summary; without them the Rust check above stands for it (it decodes the
/// footer by pyarrow's rule) and this says so.
fn python_sees_the_summary(path: &Path, version: &str) {
    let script = format!(
        "import json, pyarrow.parquet as pq\n\
         md = pq.ParquetFile({:?}).schema_arrow.metadata\n\
         print(json.loads(md[b'n4a_summary'])['n4a_version'])",
        path.display().to_string()
    );
    // The bench harness's venv has pyarrow (benches/vs_duckdb.sh makes it).
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peer-bench/venv/bin/python");
    let python = if venv.exists() {
        venv.display().to_string()
    } else {
        "python3".to_string()
    };
    match std::process::Command::new(python)
        .args(["-c", &script])
        .output()
    {
        Ok(o) if o.status.success() => {
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), version);
        }
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            eprintln!("pyarrow not installed: checked by pyarrow's rule only");
        }
        Ok(o) => panic!("python3 failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => eprintln!("no python3: checked by pyarrow's rule only"),
    }
}

#[test]
fn refresh_brings_1_0_and_1_1_to_1_3_no_larger_than_before_but_for_arrow_schema() {
    let ws = nirs4all_workspace();
    for f in ["n4a_1_1.meta.parquet", "n4a_1_2.meta.parquet"] {
        std::fs::copy(fixture(f), ws.path().join(f)).unwrap();
    }
    let footer_len = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        u32::from_le_bytes(b[b.len() - 8..b.len() - 4].try_into().unwrap())
    };
    let before: BTreeMap<String, u32> = std::fs::read_dir(ws.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
        .map(|p| (p.display().to_string(), footer_len(&p)))
        .collect();
    let r = n4a::refresh::refresh_workspace(ws.path(), &Default::default(), &|_, _| {}).unwrap();
    assert_eq!((r.refreshed, r.failed), (8, 0));
    let v12 = r
        .files
        .iter()
        .find(|f| f.path.ends_with("n4a_1_2.meta.parquet"))
        .unwrap();
    assert!(
        v12.reason
            .as_deref()
            .unwrap()
            .contains("summary version 1.2"),
        "{v12:?}"
    );
    for (p, old) in &before {
        let p = Path::new(p);
        // The footer grows by at most the restored ARROW:schema entry
        // (its key, value and Thrift framing): issue 28's bound.
        let kv = key_values(p);
        let arrow = kv
            .iter()
            .find(|(k, _)| k == "ARROW:schema")
            .map(|(k, v)| (k.len() + v.len() + 8) as u32)
            .expect("an ARROW:schema entry");
        assert!(
            footer_len(p) - arrow <= *old,
            "{}: {} - {arrow} > {old}",
            p.display(),
            footer_len(p)
        );
        let seen = pyarrow_metadata(p);
        assert!(seen["n4a_summary"].contains("\"n4a_version\":\"1.5\""));
    }
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    assert_eq!(s.merged_files, 8);
    assert_eq!(s.exactness.models_avg_val_score, Accuracy::Exact);
    let rows = all_rows(ws.path());
    assert_eq!(
        tops(&s, "mse"),
        oracle_top(&rows, "mse", Direction::Minimize, 10)
    );
}

#[test]
fn large_footers_are_relayed_from_the_file_and_checked() {
    // 3,000 configs: a footer far over the 32 KiB first read, so the
    // summary text stays in the file and is read when relayed.
    let ws = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(ws.path(), "many", WriterOptions::default()).unwrap();
    for i in 0..3000 {
        w.write(&row(
            &format!("config_{i:05}"),
            "PLS",
            "0",
            "val",
            f64::from(i),
        ))
        .unwrap();
    }
    let written = w.finish().unwrap();
    let wsp = Workspace::open(ws.path()).unwrap();
    let s = wsp.summary().unwrap();
    let v = json_of(&s, Form::Full);
    // Runs listed once, at the top (issue 29), each with its dataset.
    assert!(v["datasets"][0].get("runs").is_none());
    assert_eq!(v["runs"].as_array().unwrap().len(), 3000);
    assert_eq!(v["runs"][0]["datasets"], serde_json::json!(["many"]));
    assert_eq!(s.datasets[0].summary().unwrap().runs, written.runs);
    // Replaced after its footer was read: the answer says so for that
    // entry, and stays valid JSON.
    let mut w = PredictionWriter::append(ws.path(), "many", WriterOptions::default()).unwrap();
    w.write(&row("config_x", "PLS", "0", "val", 1.0)).unwrap();
    w.finish().unwrap();
    let v = json_of(&s, Form::Full);
    let err = v["datasets"][0]["summary_error"].as_str().unwrap();
    assert!(err.contains("many.meta.parquet"), "{err}");
    assert_eq!(v["runs"], serde_json::json!([]));
    // Asked again, the workspace reads the new footer.
    let s = wsp.summary().unwrap();
    assert_eq!(s.total_predictions, 3001);
    assert_eq!(
        json_of(&s, Form::Full)["runs"].as_array().unwrap().len(),
        3001
    );
}

#[test]
fn summary_table_shows_models_and_best_rows_of_a_1_0_workspace() {
    let ws = nirs4all_workspace();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_n4a"))
        .args(["summary", ws.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("PLSRegression"), "{text}");
    // Plain words (issue 29): which way is better, and why a best is
    // missing.
    assert!(
        text.contains("Best model instances by balanced_accuracy (higher is better)"),
        "{text}"
    );
    assert!(
        text.contains("Best model instances by mse (lower is better)"),
        "{text}"
    );
    assert!(text.contains("nirs4all kept its worst"), "{text}");
    assert!(!text.contains("(1.0: max only)"), "{text}");
}

/// The frozen 1.2 file (written by n4a before issue 28: run-by-run
/// `n4a_runs`, no `ARROW:schema`, the parquet crate's column orders) is
/// still read whole, and an append continues its state into a 1.3 footer.
#[test]
fn format_1_2_files_are_read_and_appended_to() {
    let ws = tempfile::tempdir().unwrap();
    let p = ws.path().join("corn_000.meta.parquet");
    std::fs::copy(fixture("n4a_1_2.meta.parquet"), &p).unwrap();
    let old = n4a::footer::Footer::read(&p)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(old.n4a_version, "1.2");
    let st = old.state.as_ref().expect("a 1.2 state");
    assert_eq!(st.rows, 120);
    assert!(!st.runs.is_empty() && !st.pipelines.is_empty(), "N4R1 runs");
    assert!(!key_values(&p).iter().any(|(k, _)| k == "ARROW:schema"));
    let mut w = PredictionWriter::append(ws.path(), "corn_000", WriterOptions::default()).unwrap();
    w.write(&row("fresh", "PLS", "0", "val", 0.001)).unwrap();
    let new = w.finish().unwrap();
    assert_eq!(new.n4a_version, "1.5");
    let nst = new.state.as_ref().unwrap();
    assert_eq!(nst.rows, 121);
    for (name, r) in &st.runs {
        assert_eq!(nst.runs.get(name).map(|x| x.n), Some(r.n), "{name}");
    }
    assert_eq!(nst.runs.len(), st.runs.len() + 1);
    let back = n4a::footer::Footer::read(&p)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(back.state, new.state, "the N4R3 runs read back");
}

/// The frozen 1.3 file (written by n4a at issue 28, before issue 29: head
/// `N4S2` without per-metric statistics, runs `N4R2` without an index),
/// holding two metrics: its metrics and counts are read as they are, every
/// answer from it equals the rows', refresh brings it to 1.4 (per-metric
/// statistics), and an append continues its state.
#[test]
fn issue_29_format_1_3_files_stay_readable() {
    let ws = tempfile::tempdir().unwrap();
    let p = ws.path().join("two_metrics.meta.parquet");
    std::fs::copy(fixture("n4a_1_3.meta.parquet"), &p).unwrap();
    let rows = all_rows(ws.path());
    let old = n4a::footer::Footer::read(&p)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(old.n4a_version, "1.3");
    let st = old.state.as_ref().expect("a 1.3 state");
    assert_eq!(st.rows, rows.len() as u64);
    assert!(!st.runs.is_empty(), "N4R2 runs");
    let counts = |ms: Vec<(String, u64)>| -> BTreeMap<String, u64> { ms.into_iter().collect() };
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (_, _, r) in &rows {
        *want.entry(r.metric.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(
        counts(
            st.metrics
                .iter()
                .map(|(k, m)| (k.clone(), m.count))
                .collect()
        ),
        want
    );
    // The workspace summary from the 1.3 head: metrics and their best
    // instances as the rows say; no per-metric statistics (1.3 kept none).
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    assert_eq!(s.merged_files, 1);
    assert_eq!(
        counts(
            s.metrics
                .iter()
                .map(|m| (m.name.clone(), m.count))
                .collect()
        ),
        want
    );
    for m in ["mse", "r2", "balanced_accuracy"] {
        let dir = n4a::metric::builtin_direction(m).unwrap();
        assert_eq!(tops(&s, m), oracle_top(&rows, m, dir, 10), "{m}");
    }
    assert_eq!(s.runs_once().len(), 3);
    // Refresh: stale, then 1.4 with each metric's statistics.
    let r = n4a::refresh::refresh_workspace(
        ws.path(),
        &n4a::refresh::RefreshOptions::default(),
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(r.refreshed, 1, "{r:#?}");
    assert!(
        r.files[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("version 1.3"),
        "{r:#?}"
    );
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    for m in &s.metrics {
        let vals: Vec<f64> = rows
            .iter()
            .filter(|(_, _, r)| r.metric.as_deref() == Some(&m.name))
            .filter_map(|(_, _, r)| r.val_score)
            .collect();
        let st = m
            .stats
            .as_ref()
            .expect("per-metric statistics after refresh");
        assert_eq!(
            st.val_score.as_ref().unwrap().count,
            Some(vals.len() as u64),
            "{}",
            m.name
        );
    }
    // An append to a fresh copy continues the 1.3 state.
    std::fs::copy(fixture("n4a_1_3.meta.parquet"), &p).unwrap();
    let mut w =
        PredictionWriter::append(ws.path(), "two_metrics", WriterOptions::default()).unwrap();
    w.write(&row("fresh", "PLS", "0", "val", 0.001)).unwrap();
    let new = w.finish().unwrap();
    assert_eq!(new.n4a_version, "1.5");
    assert_eq!(new.state.as_ref().unwrap().rows, rows.len() as u64 + 1);
}

/// Issue 33: a file n4a 1.4 wrote (no group aggregates) stays readable:
/// its group-bys are read from its rows and equal the ones from the
/// aggregates refresh then stores (1.5); an append continues its state
/// without aggregates (its old rows are not in them), and a refresh of
/// that file brings them.
#[test]
fn issue_33_format_1_4_files_stay_readable_and_refresh_adds_group_aggregates() {
    use n4a::query::{Filters, GroupKey, GroupQuery, QueryEngine, ServedBy};
    let ws = tempfile::tempdir().unwrap();
    let p = ws.path().join("two_metrics.meta.parquet");
    std::fs::copy(fixture("n4a_1_4.meta.parquet"), &p).unwrap();
    let old = n4a::footer::Footer::read(&p)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(old.n4a_version, "1.4");
    let groups = |ws: &std::path::Path| {
        let w = Workspace::open(ws).unwrap();
        let e = QueryEngine::new(&w);
        [GroupKey::Model, GroupKey::Fold, GroupKey::Partition]
            .into_iter()
            .map(|key| {
                let q = GroupQuery {
                    filters: Filters::default().with("metric", ["mse"]).unwrap(),
                    key,
                    score: "val_score".into(),
                    count_and_mean_only: false,
                    direction: None,
                };
                let g = e.group_by_metric(&q).unwrap();
                let served: Vec<ServedBy> = g.groupings.iter().map(|(_, a)| a.served_by).collect();
                let json: serde_json::Value = serde_json::from_slice(&g.to_json(&w)).unwrap();
                (served, json)
            })
            .collect::<Vec<_>>()
    };
    let before = groups(ws.path());
    assert!(before
        .iter()
        .all(|(s, _)| s.iter().all(|s| *s == ServedBy::Scan)));
    let r = n4a::refresh::refresh_workspace(
        ws.path(),
        &n4a::refresh::RefreshOptions::default(),
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(r.refreshed, 1, "{r:#?}");
    assert!(
        r.files[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("version 1.4"),
        "{r:#?}"
    );
    let after = groups(ws.path());
    assert!(after
        .iter()
        .all(|(s, _)| s.iter().all(|s| *s == ServedBy::Footers)));
    for ((_, a), (_, b)) in before.iter().zip(&after) {
        let strip = |v: &serde_json::Value| {
            let mut v = v.clone();
            let mut all: Vec<&mut serde_json::Value> = vec![];
            let split = v["by_metric"].is_array();
            if split {
                all.extend(v["by_metric"].as_array_mut().unwrap().iter_mut());
            } else {
                all.push(&mut v);
            }
            for g in all {
                assert!(g["groups"].as_array().is_some_and(|a| !a.is_empty()), "{g}");
                g.as_object_mut().unwrap().remove("provenance");
                g.as_object_mut().unwrap().remove("served_by");
            }
            v
        };
        let (a, b) = (strip(a), strip(b));
        assert_eq!(crate::util::rounded(&a), crate::util::rounded(&b));
    }
    // An append to a fresh 1.4 copy: the state continues, without
    // aggregates; its group-bys read the rows and see the new row.
    std::fs::copy(fixture("n4a_1_4.meta.parquet"), &p).unwrap();
    let mut w =
        PredictionWriter::append(ws.path(), "two_metrics", WriterOptions::default()).unwrap();
    w.write(&row("fresh", "PLS", "0", "val", 0.001)).unwrap();
    let new = w.finish().unwrap();
    assert_eq!(new.n4a_version, "1.5");
    assert!(new.state.as_ref().unwrap().groups.is_none());
    let appended = groups(ws.path());
    assert!(appended
        .iter()
        .all(|(s, _)| s.iter().all(|s| *s == ServedBy::Scan)));
}

/// Sets `files` to have been modified `secs` ago: quiet files, which the
/// footer cache on disk keeps (the racy-clean rule).
fn age(files: &[std::path::PathBuf], secs: u64) {
    let then = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    for p in files {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(then).unwrap();
    }
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// The answer without the time it was made.
fn answer(s: &WorkspaceSummary) -> serde_json::Value {
    let mut v = json_of(s, Form::Full);
    v.as_object_mut().unwrap().remove("generated_at");
    v
}

#[test]
fn issue_33_the_footer_cache_on_disk_answers_as_the_files_do() {
    // 70 files of every kind: n4a's (one with a space in its name),
    // nirs4all's 1.0 footers (never cached: read each time), a truncated
    // file (an error each time, never cached).
    let dir = nirs4all_workspace();
    let gen = tempfile::tempdir().unwrap();
    n4a::generate::generate(
        gen.path(),
        &n4a::generate::GenOptions {
            datasets: 64,
            rows: 30,
            arrays: false,
            ..Default::default()
        },
    )
    .unwrap();
    let mut generated: Vec<std::path::PathBuf> = std::fs::read_dir(gen.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
        .collect();
    generated.sort();
    for p in &generated {
        std::fs::copy(p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::copy(&generated[0], dir.path().join("with space.meta.parquet")).unwrap();
    let bytes = std::fs::read(&generated[1]).unwrap();
    std::fs::write(
        dir.path().join("cut.meta.parquet"),
        &bytes[..bytes.len() - 100],
    )
    .unwrap();
    age(&files_in(dir.path()), 10);
    let files = files_in(dir.path()).len() as u64;
    let uncached = (GENERATED.len() + 2 + 1) as u64;
    let cache = tempfile::tempdir().unwrap();
    let plain = || {
        let w = Workspace::open(dir.path()).unwrap().with_cache(false);
        answer(&w.summary().unwrap())
    };
    let cached = |reads: u64| {
        let w = Workspace::open(dir.path())
            .unwrap()
            .with_cache(false)
            .with_disk_cache(Some(cache.path().to_path_buf()));
        let s = answer(&w.summary().unwrap());
        assert_eq!(w.footer_reads(), reads, "footers read from their files");
        s
    };
    // A query (footers read without decoding 1.0 summaries) with the
    // cache, and without: the same groups.
    let grouped = |disk: bool| {
        use n4a::query::{Filters, GroupKey, GroupQuery, QueryEngine};
        let w = Workspace::open(dir.path())
            .unwrap()
            .with_cache(false)
            .with_summaries(false)
            .with_disk_cache(disk.then(|| cache.path().to_path_buf()));
        let q = GroupQuery {
            filters: Filters::default(),
            key: GroupKey::Model,
            score: "val_score".into(),
            count_and_mean_only: false,
            direction: None,
        };
        let g = QueryEngine::new(&w).group_by_metric(&q).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&g.to_json(&w)).unwrap();
        (json, w.footer_reads())
    };
    let truth = plain();
    assert_eq!(
        truth["errors"].as_array().unwrap().len(),
        1,
        "{}",
        truth["errors"]
    );
    let groups = grouped(false).0;
    assert_eq!(
        grouped(true),
        (groups.clone(), files),
        "first: every footer read"
    );
    // What the query kept is what a summary needs too, and the 1.0 files
    // it read as having no summary were not kept as such.
    assert_eq!(cached(uncached), truth, "the query's footers served");
    assert_eq!(grouped(true), (groups, uncached), "and to the next query");
    assert_eq!(cached(uncached), truth, "then: only the uncached ones read");

    // A file replaced (new content, new inode), one gone, one new, one
    // just written (racy: read, not kept), all at once.
    let replaced = dir.path().join(generated[2].file_name().unwrap());
    let tmp = dir.path().join(".tmp");
    std::fs::copy(&generated[3], &tmp).unwrap();
    std::fs::rename(&tmp, &replaced).unwrap();
    std::fs::remove_file(dir.path().join(generated[4].file_name().unwrap())).unwrap();
    let new = dir.path().join("new one.meta.parquet");
    std::fs::copy(&generated[5], &new).unwrap();
    age(&[replaced.clone(), new], 10);
    std::fs::copy(&generated[6], dir.path().join("fresh.meta.parquet")).unwrap();
    let truth = plain();
    assert_eq!(
        cached(uncached + 3),
        truth,
        "the replaced, new and fresh files read"
    );
    assert_eq!(
        cached(uncached + 1),
        truth,
        "the fresh one read until it is quiet"
    );

    // A damaged cache is read around, never an error, and rebuilt.
    let store = cache.path().join("footers");
    let file = std::fs::read_dir(&store)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut b = std::fs::read(&file).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x55;
    std::fs::write(&file, &b).unwrap();
    let after_damage = cached(uncached + 1 + 1);
    assert_eq!(after_damage, truth, "the damaged record's file read");
    std::fs::write(&file, &b[..b.len() / 3]).unwrap();
    assert_eq!(cached(files + 1), truth, "a cut cache: every footer read");
    assert_eq!(cached(uncached + 1), truth);

    // The CLI: on by default (under N4A_CACHE_DIR), `--no-cache` reads
    // every file; the same answer either way.
    let cli = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_n4a"))
            .env("N4A_CACHE_DIR", cache.path())
            .args(["summary", "--format", "json"])
            .args(extra)
            .arg(dir.path())
            .output()
            .unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_object_mut().unwrap().remove("generated_at");
        v
    };
    assert_eq!(cli(&[]), cli(&["--no-cache"]));
    assert_eq!(cli(&[])["total_datasets"], truth["total_datasets"]);
}
