//! Batch summary refresh (issue 5): backfilled summaries equal what the
//! rows give, every column is kept, a second run changes nothing, bad files
//! are reported while the others are refreshed, and concurrent writers and
//! killed refreshes lose nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use n4a::generate::dataset_rows;
use n4a::refresh::{refresh_workspace, Mode, RefreshOptions, RefreshReport, Status};
use n4a::rows;
use n4a::writer::{PredictionWriter, WriterOptions};

use crate::util::{fixture, rewrite_with_summary, workspace_with};

fn run(root: &Path, opts: &RefreshOptions) -> RefreshReport {
    refresh_workspace(root, opts, &|_, _| {}).unwrap()
}

fn verify(fix: bool) -> RefreshOptions {
    RefreshOptions {
        mode: Mode::Verify,
        write: fix,
        ..RefreshOptions::default()
    }
}

fn status_of(r: &RefreshReport, name: &str) -> Status {
    r.files
        .iter()
        .find(|f| f.path.file_name().unwrap().to_str().unwrap() == name)
        .unwrap_or_else(|| panic!("{name} not in the report"))
        .status
}

/// Every file's bytes, by name (hidden files included).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// All record batches of a file, decoded as stored (every column, its own
/// types), without schema metadata (which holds the summary).
fn batches(path: &Path) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    // Values compared as utf8, whichever string type a file declares.
    rows::for_each_batch(path, None, 1 << 20, |b| {
        let cols: Vec<arrow_array::ArrayRef> = b
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                arrow_schema::DataType::LargeUtf8 => {
                    use arrow_array::cast::AsArray;
                    let s: arrow_array::StringArray = c.as_string::<i64>().iter().collect();
                    Arc::new(s) as arrow_array::ArrayRef
                }
                _ => c.clone(),
            })
            .collect();
        let fields: Vec<arrow_schema::Field> = b
            .schema()
            .fields()
            .iter()
            .zip(&cols)
            .map(|(f, c)| {
                arrow_schema::Field::new(f.name(), c.data_type().clone(), f.is_nullable())
            })
            .collect();
        let schema = Arc::new(arrow_schema::Schema::new(fields));
        out.push(RecordBatch::try_new(schema, cols).unwrap());
        Ok(())
    })
    .unwrap();
    out
}

/// The bytes before the footer (row groups, page indexes).
fn data_prefix(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    let meta_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    bytes[..n - 8 - meta_len].to_vec()
}

/// A workspace of `n` generated datasets written by n4a in several
/// appends, then rewritten without summaries (as nirs4all wrote them
/// before summaries existed).
fn generated_without_summaries(n: usize, rows_each: usize) -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    for i in 0..n {
        let (name, rows) = dataset_rows(i, rows_each, 7 + i as u64, false);
        let mut w = PredictionWriter::create(ws.path(), &name, WriterOptions::default()).unwrap();
        rows.into_iter().for_each(|p| w.write_owned(p).unwrap());
        w.finish().unwrap();
        let meta = ws.path().join(format!("{name}.meta.parquet"));
        rewrite_with_summary(&meta, &meta, None, false);
    }
    ws
}

#[test]
fn backfilled_summary_is_what_nirs4all_computes_and_every_column_is_kept() {
    let ws = workspace_with(&["no_summary.meta.parquet", "old_layout.meta.parquet"]);
    let files = ["no_summary.meta.parquet", "old_layout.meta.parquet"];
    let before: Vec<_> = files
        .iter()
        .map(|f| {
            let p = ws.path().join(f);
            (
                batches(&p),
                data_prefix(&p),
                n4a::footer::Footer::read(&p).unwrap(),
            )
        })
        .collect();
    for (_, _, old) in &before {
        assert!(old.summary().unwrap().is_none());
    }
    let r = run(ws.path(), &RefreshOptions::default());
    assert_eq!((r.refreshed, r.failed), (2, 0), "{r:#?}");
    assert_eq!(r.files[0].reason.as_deref(), Some("no summary"));
    for (f, (b, prefix, old)) in files.iter().zip(before) {
        let p = ws.path().join(f);
        assert_eq!(batches(&p), b, "{f}: every column, every value");
        // The body copied byte for byte, then the new state's group
        // aggregates (1.5) and runs (1.3).
        let now = data_prefix(&p);
        assert!(
            now.starts_with(&prefix),
            "{f}: row groups copied byte for byte"
        );
        assert_eq!(&now[prefix.len()..prefix.len() + 4], b"N4G1", "{f}");
        assert!(now[prefix.len()..].windows(4).any(|w| w == b"N4R3"), "{f}");
        let new = n4a::footer::Footer::read(&p).unwrap();
        assert_eq!(new.num_rows(), old.num_rows());
        // A footer read before the rewrite keeps what it read.
        assert!(old.summary().unwrap().is_none());
        let s = new.summary().unwrap().expect("a summary now");
        assert_eq!(s.n4a_version, "1.5");
        assert!(s.state.is_some());
    }
    // no_summary holds grain_class's rows: the backfilled summary gives
    // every value nirs4all computed for them (balanced_accuracy: higher is
    // better, so even nirs4all's "top" is right here).
    let nirs4all = n4a::footer::Footer::read(&fixture("grain_class.meta.parquet"))
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    let ours = n4a::footer::Footer::read(&ws.path().join("no_summary.meta.parquet"))
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    crate::compat::assert_common(&nirs4all, &ours);
    // One entry per model instance (issue 29): nirs4all's list less the
    // train and test rows it repeats each instance with.
    let ids = |s: &n4a::summary::Summary, val_only: bool| -> Vec<Option<String>> {
        s.top_predictions
            .iter()
            .filter(|t| !val_only || t.partition.as_deref() == Some("val"))
            .map(|t| t.id.clone())
            .collect()
    };
    let theirs = ids(&nirs4all, true);
    assert_eq!(
        ids(&ours, false)[..theirs.len()],
        theirs[..],
        "top_predictions"
    );
    // The old layout keeps its 26 columns: nothing is re-encoded.
    let md = crate::util::metadata(&ws.path().join("old_layout.meta.parquet")).unwrap();
    assert_eq!(md.file_metadata().schema_descr().num_columns(), 26);
}

#[test]
fn refreshed_footer_keeps_created_by_and_the_original_arrow_types_with_the_summary_where_pyarrow_sees_it(
) {
    let ws = workspace_with(&["corn_moisture.meta.parquet", "corn_moisture.arrays.parquet"]);
    let p = ws.path().join("corn_moisture.meta.parquet");
    let old = crate::util::metadata(&p).unwrap();
    let r = run(ws.path(), &RefreshOptions::default());
    assert_eq!(r.refreshed, 1);
    assert!(r.files[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("version 1.0"));
    assert!(r.files[0].warnings.is_empty(), "its arrays file is there");
    let new = crate::util::metadata(&p).unwrap();
    assert_eq!(
        new.file_metadata().created_by(),
        old.file_metadata().created_by()
    );
    assert_eq!(new.file_metadata().schema_descr().num_columns(), 35);
    // ARROW:schema with nirs4all's types and the new summary inside:
    // pyarrow (and arrow-rs) show it as the schema metadata, the same
    // text as the plain key/value; nirs4all's large_utf8 strings stay
    // large_utf8 (issue 28), so old and refreshed tables concatenate.
    let keys: Vec<String> = crate::util::key_values_of(&p)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["ARROW:schema", "n4a_summary", "n4a_state"]);
    let text = n4a::footer::Footer::read(&p)
        .unwrap()
        .summary_text()
        .unwrap()
        .unwrap()
        .to_string();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&p).unwrap(),
    )
    .unwrap();
    assert_eq!(
        b.schema().metadata().get("n4a_summary").map(String::as_str),
        Some(text.as_str())
    );
    let before = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(fixture("corn_moisture.meta.parquet")).unwrap(),
    )
    .unwrap();
    let types = |s: &arrow_schema::Schema| -> Vec<(String, arrow_schema::DataType)> {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    };
    assert_eq!(types(b.schema()), types(before.schema()));
    assert_eq!(
        b.schema()
            .field_with_name("config_name")
            .unwrap()
            .data_type(),
        &arrow_schema::DataType::LargeUtf8
    );
    // nirs4all's fault corrected: its "top" mse predictions were the worst.
    let s = n4a::footer::Footer::read(&p)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    let top = s.top_predictions[0].val_score.unwrap();
    assert!(s
        .top_predictions
        .iter()
        .all(|t| t.val_score.unwrap() >= top));
    assert_eq!(
        s.ranking.unwrap().direction,
        n4a::metric::Direction::Minimize
    );
}

#[test]
fn second_refresh_changes_nothing_byte_for_byte() {
    let ws = generated_without_summaries(3, 400);
    for f in [
        "no_summary.meta.parquet",
        "nan_summary.meta.parquet",
        "bad_summary_json.meta.parquet",
    ] {
        std::fs::copy(fixture(f), ws.path().join(f)).unwrap();
    }
    let opts = RefreshOptions::default();
    let first = run(ws.path(), &opts);
    assert_eq!((first.refreshed, first.failed), (6, 0), "{first:#?}");
    let after_first = snapshot(ws.path());
    for again in [opts.clone(), verify(true), verify(false)] {
        let r = run(ws.path(), &again);
        assert_eq!(
            (r.unchanged, r.refreshed, r.stale, r.failed),
            (6, 0, 0, 0),
            "{r:#?}"
        );
        assert_eq!(snapshot(ws.path()), after_first, "no byte changed");
    }
}

#[test]
fn verify_reports_a_wrong_summary_and_fix_repairs_it() {
    let ws = tempfile::tempdir().unwrap();
    let (name, rows) = dataset_rows(0, 300, 3, false);
    let mut w = PredictionWriter::create(ws.path(), &name, WriterOptions::default()).unwrap();
    rows.into_iter().for_each(|p| w.write_owned(p).unwrap());
    let good = w.finish().unwrap();
    let meta = ws.path().join(format!("{name}.meta.parquet"));
    // A consistent-looking summary (right row count, its state and text
    // written together) with a wrong mean: what a bug in a writer would
    // leave, invisible to footer checks.
    let mut wrong = good.clone();
    wrong.stats.val_score.as_mut().unwrap().mean =
        Some(good.stats.val_score.as_ref().unwrap().mean.unwrap() + 1.0);
    wrong.state.as_mut().unwrap().val_score.welford.mean += 1.0;
    // Its group aggregates and runs are the good state's, already in the
    // body just before the footer, where the head says.
    let parts = wrong.footer_parts();
    let runs = parts.body.as_ref().unwrap();
    let runs_at = crate::util::footer_start(&meta) - runs.len() as u64;
    // The same bytes; only the runs' text index's check names the new
    // text (the same length): written in place.
    let mut body = std::fs::read(&meta).unwrap();
    body[runs_at as usize..runs_at as usize + runs.len()].copy_from_slice(runs);
    std::fs::write(&meta, body).unwrap();
    let entries = crate::util::with_arrow_schema(&meta, &parts.entries(runs_at));
    let pairs: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    crate::util::set_key_values(&meta, &pairs);
    let bytes = std::fs::read(&meta).unwrap();

    // The cheap default pass sees nothing wrong in the footer alone.
    assert_eq!(run(ws.path(), &RefreshOptions::default()).unchanged, 1);
    let r = run(ws.path(), &verify(false));
    assert_eq!(r.stale, 1);
    assert!(!r.is_clean());
    let d = &r.files[0].differences;
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d[0].starts_with("stats.val_score.mean: stored"), "{d:?}");
    assert!(
        d[1].starts_with("state.val_score.welford.mean: stored"),
        "{d:?}"
    );
    // The file's one metric: its own statistics are the pooled ones.
    assert!(
        d[2].starts_with("state.metrics.mse.scores[0].welford.mean: stored"),
        "{d:?}"
    );
    assert_eq!(
        std::fs::read(&meta).unwrap(),
        bytes,
        "verify alone writes nothing"
    );

    let r = run(ws.path(), &verify(true));
    assert_eq!(r.refreshed, 1);
    let fixed = n4a::footer::Footer::read(&meta)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(
        fixed.stats.val_score.as_ref().unwrap().mean,
        good.stats.val_score.as_ref().unwrap().mean
    );
    assert_eq!(run(ws.path(), &verify(false)).unchanged, 1);
}

#[test]
fn footer_checks_catch_wrong_counts_a_foreign_text_and_a_hiding_arrow_schema() {
    let ws = tempfile::tempdir().unwrap();
    let (name, rows) = dataset_rows(0, 200, 4, false);
    let mut w = PredictionWriter::create(ws.path(), &name, WriterOptions::default()).unwrap();
    rows.into_iter().for_each(|p| w.write_owned(p).unwrap());
    let good = w.finish().unwrap().to_json();
    let meta = ws.path().join(format!("{name}.meta.parquet"));
    let kv = crate::util::key_values_of(&meta);
    let state = kv.iter().find(|(k, _)| k == "n4a_state").unwrap().1.clone();

    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["total_predictions"] = serde_json::json!(150);
    let wrong = v.to_string();
    crate::util::set_key_values(&meta, &[("n4a_summary", &wrong), ("n4a_state", &state)]);
    let r = run(ws.path(), &RefreshOptions::default());
    assert_eq!(r.refreshed, 1);
    assert_eq!(
        r.files[0].reason.as_deref(),
        Some("total_predictions is 150 but the file has 200 rows")
    );

    // Same numbers, but not the text written with the state (the state
    // the refresh just wrote, its runs in the body).
    let state = crate::util::key_values_of(&meta)
        .into_iter()
        .find(|(k, _)| k == "n4a_state")
        .unwrap()
        .1;
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["generated_at"] = serde_json::json!("2020-01-01T00:00:00.000000+00:00");
    let other = v.to_string();
    crate::util::set_key_values(&meta, &[("n4a_summary", &other), ("n4a_state", &state)]);
    let r = run(ws.path(), &RefreshOptions::default());
    assert_eq!(r.refreshed, 1);
    assert_eq!(
        r.files[0].reason.as_deref(),
        Some("the state was not written with this summary text")
    );

    // An ARROW:schema entry without the summary (a tool that keeps its
    // own) would show pyarrow no summary: refreshed, its own metadata kept
    // (as a plain key/value and inside the new ARROW:schema).
    let kv: Vec<_> = crate::util::key_values_of(&meta)
        .into_iter()
        .filter(|(k, _)| k != "ARROW:schema")
        .collect();
    let schema =
        n4a::schema::meta_schema()
            .as_ref()
            .clone()
            .with_metadata(std::collections::HashMap::from([(
                "origin".to_string(),
                "tool".to_string(),
            )]));
    let encoded = parquet::arrow::encode_arrow_schema(&schema);
    let mut with: Vec<(&str, &str)> = kv.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    with.push(("ARROW:schema", &encoded));
    crate::util::set_key_values(&meta, &with);
    let r = run(ws.path(), &RefreshOptions::default());
    assert_eq!(r.refreshed, 1);
    assert_eq!(
        r.files[0].reason.as_deref(),
        Some("ARROW:schema does not carry this summary, so pyarrow shows another"),
        "{r:#?}"
    );
    let keys: Vec<String> = crate::util::key_values_of(&meta)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["origin", "ARROW:schema", "n4a_summary", "n4a_state"]);
    let seen = crate::summary::pyarrow_metadata(&meta);
    assert_eq!(seen.get("origin").map(String::as_str), Some("tool"));
    assert!(seen.contains_key("n4a_summary"));
    assert_eq!(run(ws.path(), &RefreshOptions::default()).unchanged, 1);
}

#[test]
fn bad_files_are_reported_and_left_alone_while_the_others_are_refreshed() {
    let names = [
        "no_summary.meta.parquet",
        "nan_summary.meta.parquet",
        "bad_summary_json.meta.parquet",
        "newer_version.meta.parquet",
        "truncated.meta.parquet",
        "not_parquet.meta.parquet",
        "mistyped.meta.parquet",
    ];
    let ws = workspace_with(&names);
    let before = snapshot(ws.path());
    let r = run(ws.path(), &RefreshOptions::default());
    let kind = |n: &str| r.files.iter().find(|f| f.path.ends_with(n)).unwrap().kind;
    assert_eq!(status_of(&r, "no_summary.meta.parquet"), Status::Refreshed);
    assert_eq!(status_of(&r, "nan_summary.meta.parquet"), Status::Refreshed);
    assert_eq!(
        status_of(&r, "bad_summary_json.meta.parquet"),
        Status::Refreshed
    );
    assert_eq!(
        kind("newer_version.meta.parquet"),
        Some("unsupported_version")
    );
    assert_eq!(kind("truncated.meta.parquet"), Some("parquet"));
    assert_eq!(kind("not_parquet.meta.parquet"), Some("parquet"));
    assert_eq!(kind("mistyped.meta.parquet"), Some("schema"));
    assert_eq!(r.failed, 4);
    for f in r.files.iter().filter(|f| f.status == Status::Failed) {
        assert!(
            f.reason
                .as_deref()
                .unwrap()
                .contains(f.path.to_str().unwrap()),
            "{f:?}"
        );
        assert_eq!(
            std::fs::read(&f.path).unwrap(),
            before[&f.path],
            "left alone"
        );
    }
    assert!(
        r.files.iter().all(|f| !f.warnings.is_empty()),
        "no arrays files: warned"
    );
}

#[test]
fn dry_run_writes_nothing_and_says_what_it_would_do() {
    let ws = workspace_with(&["no_summary.meta.parquet", "grain_class.meta.parquet"]);
    let before = snapshot(ws.path());
    let r = run(
        ws.path(),
        &RefreshOptions {
            write: false,
            ..RefreshOptions::default()
        },
    );
    assert_eq!(r.stale, 2);
    assert!(!r.is_clean());
    assert_eq!(snapshot(ws.path()), before);
}

#[test]
fn a_file_changed_by_someone_else_during_its_refresh_is_left_as_they_made_it() {
    let ws = workspace_with(&["no_summary.meta.parquet"]);
    let p = ws.path().join("no_summary.meta.parquet");
    let theirs = std::fs::read(fixture("grain_class.meta.parquet")).unwrap();
    let theirs2 = theirs.clone();
    let opts = RefreshOptions {
        // nirs4all rewrites the file in place, without n4a's lock.
        before_commit: Some(Arc::new(move |path: &Path| {
            std::fs::write(path, &theirs2).unwrap()
        })),
        ..RefreshOptions::default()
    };
    let r = run(ws.path(), &opts);
    assert_eq!(r.failed, 1);
    assert_eq!(r.files[0].kind, Some("changed_during_refresh"));
    assert_eq!(std::fs::read(&p).unwrap(), theirs);
    assert!(
        std::fs::read_dir(ws.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("n4a-tmp")),
        "the abandoned temporary file is removed"
    );
}

#[test]
fn a_writer_appending_during_refreshes_loses_no_row_and_leaves_no_stale_summary() {
    let ws = generated_without_summaries(1, 300);
    let name = "corn_000";
    let meta = ws.path().join(format!("{name}.meta.parquet"));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (dir, done, meta) = (ws.path().to_path_buf(), done.clone(), meta.clone());
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for round in 0..15u64 {
                let (_, rows) = dataset_rows(0, 40, 100 + round, false);
                let mut w = PredictionWriter::append(&dir, name, WriterOptions::default()).unwrap();
                for (i, mut p) in rows.into_iter().enumerate() {
                    let id = format!("r{round}-{i}");
                    p.id = Some(id.clone());
                    ids.push(id);
                    w.write_owned(p).unwrap();
                }
                w.finish().unwrap();
                // Another locked writer that leaves no summary, so the
                // refreshes below have real work racing the appends.
                {
                    let _lock = n4a::files::DatasetLock::acquire(&dir, name).unwrap();
                    rewrite_with_summary(&meta, &meta, None, false);
                }
                // Leave the refreshes a moment to find it without a summary.
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            ids
        })
    };
    let mut refreshed = 0;
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let r = run(ws.path(), &RefreshOptions::default());
        assert_eq!(r.failed, 0, "{r:#?}");
        refreshed += r.refreshed;
    }
    let ids = writer.join().unwrap();
    assert!(
        refreshed > 0,
        "the refreshes rewrote files while appends ran"
    );
    run(ws.path(), &RefreshOptions::default());
    let got = rows::read_predictions(&meta).unwrap();
    assert_eq!(got.len(), 300 + 15 * 40);
    let have: std::collections::HashSet<_> = got.iter().filter_map(|p| p.id.clone()).collect();
    assert!(
        ids.iter().all(|id| have.contains(id)),
        "every appended row is there"
    );
    let r = run(ws.path(), &verify(false));
    assert_eq!(r.unchanged, 1, "no stale summary left: {r:#?}");
    let s = n4a::footer::Footer::read(&meta)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(s.total_predictions, 900);
}

#[test]
fn killed_refresh_leaves_only_whole_files() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let ws = generated_without_summaries(12, 3000);
    let before = snapshot(ws.path());
    let values: BTreeMap<PathBuf, Vec<RecordBatch>> = before
        .keys()
        .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
        .map(|p| (p.clone(), batches(p)))
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_n4a"))
        .args(["refresh", ws.path().to_str().unwrap(), "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has replaced some files but not all (a replaced file
    // has a new inode).
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let inodes: BTreeMap<PathBuf, u64> = values.keys().map(|p| (p.clone(), inode(p))).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let changed = inodes.iter().filter(|(p, i)| inode(p) != **i).count();
        if changed >= 2 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "refresh finished before it could be killed"
        );
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut old, mut new) = (0, 0);
    for (p, b) in &values {
        let bytes = std::fs::read(p).unwrap();
        if bytes == before[p] {
            old += 1;
        } else {
            new += 1;
            let s = n4a::footer::Footer::read(p)
                .unwrap()
                .summary()
                .unwrap()
                .expect("whole new file");
            assert_eq!(s.total_predictions, 3000);
        }
        assert_eq!(&batches(p), b, "{}: every value kept", p.display());
    }
    assert!(new >= 2 && old >= 1, "killed mid-run: {new} new, {old} old");
    // The next refresh cleans up and completes.
    let r = run(ws.path(), &RefreshOptions::default());
    assert_eq!((r.refreshed, r.unchanged, r.failed), (old, new, 0));
    assert!(
        std::fs::read_dir(ws.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("n4a-tmp")),
        "temporary files of the killed run are removed"
    );
}

#[test]
fn current_files_are_not_locked_and_stale_temporaries_are_cleaned() {
    let ws = workspace_with(&["no_summary.meta.parquet", "grain_class.meta.parquet"]);
    run(ws.path(), &RefreshOptions::default());
    for e in std::fs::read_dir(ws.path()).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".n4a.lock") {
            std::fs::remove_file(p).unwrap();
        }
    }
    // A crashed writer's leftover beside a current dataset.
    let stale = ws.path().join(".grain_class.meta.parquet.n4a-tmp-1-2");
    std::fs::write(&stale, b"half a file").unwrap();
    let r = run(ws.path(), &RefreshOptions::default());
    assert_eq!(r.unchanged, 2);
    assert!(!stale.exists(), "removed under the dataset's lock");
    assert!(
        !ws.path().join(".no_summary.n4a.lock").exists(),
        "no lock file for a dataset that needed nothing"
    );
}
