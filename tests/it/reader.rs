//! The workspace reader: footer-only reads, bad files reported while good
//! ones are served, sequential and parallel twins, the cache.

use std::path::Path;
use std::time::{Duration, SystemTime};

use n4a::writer::{PredictionWriter, WriterOptions};
use n4a::Workspace;

use crate::util::{fixture, row, workspace_with};

const GOOD: [&str; 2] = ["corn_moisture.meta.parquet", "grain_class.meta.parquet"];

/// Sets a file's mtime into the past, so the cache's racy guard trusts it.
fn age(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

fn age_all(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            age(&p);
        }
    }
}

#[test]
fn each_bad_file_is_reported_by_kind_while_good_files_are_served() {
    let ws = workspace_with(&[
        GOOD[0],
        GOOD[1],
        "bad_summary_json.meta.parquet",
        "newer_version.meta.parquet",
        "truncated.meta.parquet",
        "not_parquet.meta.parquet",
        "nan_summary.meta.parquet",
        "no_summary.meta.parquet",
    ]);
    // Unreadable: a dangling symlink, and a folder under a file's name.
    std::os::unix::fs::symlink(
        ws.path().join("gone"),
        ws.path().join("dangling.meta.parquet"),
    )
    .unwrap();
    std::fs::create_dir(ws.path().join("folder.meta.parquet")).unwrap();
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    let kinds: Vec<(String, String)> = s
        .errors
        .iter()
        .map(|e| (e.dataset.clone().unwrap(), e.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (
                "bad_summary_json".to_string(),
                "invalid_summary".to_string()
            ),
            ("dangling".into(), "io".into()),
            ("folder".into(), "io".into()),
            ("newer_version".into(), "unsupported_version".into()),
            ("not_parquet".into(), "parquet".into()),
            ("truncated".into(), "parquet".into()),
        ]
    );
    let msg = |ds: &str| {
        s.errors
            .iter()
            .find(|e| e.dataset.as_deref() == Some(ds))
            .unwrap()
            .error
            .clone()
    };
    assert!(msg("bad_summary_json")
        .contains("bad_summary_json.meta.parquet: invalid n4a_summary: not JSON"));
    assert!(msg("newer_version")
        .ends_with("n4a_summary version 2.0 is not supported (this build reads 1.x)"));
    assert!(msg("truncated").contains("truncated.meta.parquet: parquet:"));
    // The good ones, the NaN one and the summary-less one are all served.
    let names: Vec<&str> = s.datasets.iter().map(|d| d.dataset.as_str()).collect();
    assert_eq!(
        names,
        ["corn_moisture", "grain_class", "nan_summary", "no_summary"]
    );
    assert_eq!(s.total_predictions, 129 + 15 + 15 + 15);
    let nan = &s.datasets[2];
    assert!(nan.has_summary());
    assert_eq!(
        nan.summary().unwrap().facets.models[0].avg_val_score,
        None,
        "bare NaN read as null"
    );
    let none = &s.datasets[3];
    assert!(!none.has_summary());
    assert_eq!(
        (none.num_rows(), none.summary().unwrap().total_predictions),
        (15, 15)
    );
    // nirs4all's files carry no n4a state: counted, not merged.
    assert_eq!(s.merged_files, 0);
    assert_eq!(s.files_without_state.len(), 4);
}

#[test]
fn nothing_is_read_beyond_the_footer_of_an_n4a_file() {
    // A file whose row-group bytes are garbage but whose footer is intact
    // still summarises: with n4a state the reader never touches row data.
    let ws = generated_workspace(1);
    let p = ws.path().join("corn_000.meta.parquet");
    let mut bytes = std::fs::read(&p).unwrap();
    for b in &mut bytes[4..2000] {
        *b = 0xAB;
    }
    std::fs::write(&p, &bytes).unwrap();
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.datasets[0].summary().unwrap().total_predictions, 150);
    assert_eq!(
        s.exactness.top_predictions,
        n4a::workspace::merge::Accuracy::Exact
    );
}

#[test]
fn damaged_rows_of_a_1_0_file_are_named_and_the_rest_served() {
    // A nirs4all 1.0 file's best rows are looked up in its score column:
    // when that column is damaged, the summary says so and names the file.
    let ws = workspace_with(&[GOOD[1]]);
    let p = ws.path().join(GOOD[1]);
    let mut bytes = std::fs::read(&p).unwrap();
    for b in &mut bytes[4..6000] {
        *b = 0xAB;
    }
    std::fs::write(&p, &bytes).unwrap();
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.datasets[0].summary().unwrap().total_predictions, 15);
    assert_eq!(
        s.exactness.top_predictions,
        n4a::workspace::merge::Accuracy::Approximate
    );
    assert!(
        s.exactness.notes.iter().any(|n| n.contains(GOOD[1])),
        "{:?}",
        s.exactness.notes
    );
}

fn generated_workspace(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let opts = n4a::generate::GenOptions {
        datasets: n,
        rows: 150,
        arrays: false,
        ..Default::default()
    };
    n4a::generate::generate(dir.path(), &opts).unwrap();
    dir
}

#[test]
fn sequential_and_parallel_reads_give_identical_answers() {
    let ws = generated_workspace(140); // three merge chunks of 64
    std::fs::copy(
        fixture("truncated.meta.parquet"),
        ws.path().join("truncated.meta.parquet"),
    )
    .unwrap();
    let answer = |threads| {
        let s = Workspace::open(ws.path())
            .unwrap()
            .with_threads(threads)
            .summary()
            .unwrap();
        let mut v: serde_json::Value =
            serde_json::from_slice(&s.to_json(n4a::workspace::merge::Form::Full)).unwrap();
        v.as_object_mut().unwrap().remove("generated_at");
        (s, v)
    };
    let (seq, seq_json) = answer(1);
    let (_, par_json) = answer(4);
    assert_eq!(seq_json, par_json);
    assert_eq!(seq.merged_files, 140);
    assert_eq!(seq.errors.len(), 1);
}

#[test]
fn cache_skips_unchanged_files_and_sees_changed_added_and_removed_ones() {
    let ws = generated_workspace(4);
    age_all(ws.path());
    let w = Workspace::open(ws.path()).unwrap();
    let first = w.summary().unwrap();
    assert_eq!(w.footer_reads(), 4);
    let again = w.summary().unwrap();
    assert_eq!(w.footer_reads(), 4, "unchanged files are not reopened");
    assert_eq!(again.total_predictions, first.total_predictions);
    // Changed: an append replaces the file (new inode).
    let mut a = PredictionWriter::append(ws.path(), "corn_000", WriterOptions::default()).unwrap();
    let mut p = row("c9", "PLS", "0", "val", 0.01);
    p.dataset_name = Some("corn_000".into());
    a.write(&p).unwrap();
    a.finish().unwrap();
    age(&ws.path().join("corn_000.meta.parquet"));
    let changed = w.summary().unwrap();
    assert_eq!(w.footer_reads(), 5);
    assert_eq!(changed.total_predictions, first.total_predictions + 1);
    // Added and removed.
    std::fs::copy(fixture(GOOD[1]), ws.path().join(GOOD[1])).unwrap();
    age(&ws.path().join(GOOD[1]));
    std::fs::remove_file(ws.path().join("soil_003.meta.parquet")).unwrap();
    let s = w.summary().unwrap();
    assert_eq!(w.footer_reads(), 6);
    let names: Vec<&str> = s.datasets.iter().map(|d| d.dataset.as_str()).collect();
    assert_eq!(names, ["corn_000", "grain_001", "grain_class", "wheat_002"]);
}

#[test]
fn freshly_modified_files_are_not_trusted_from_the_cache() {
    // The cache's blind spot is an in-place rewrite keeping size and inode
    // within the clock's granularity; so a file modified within the racy
    // window of its read is read again next time, until it is quiet.
    let ws = workspace_with(&["grain_class.meta.parquet", "newer_version.meta.parquet"]);
    let w = Workspace::open(ws.path()).unwrap();
    w.summary().unwrap();
    w.summary().unwrap();
    assert_eq!(w.footer_reads(), 4, "fresh files are re-read");
    age_all(ws.path());
    w.summary().unwrap();
    w.summary().unwrap();
    assert_eq!(w.footer_reads(), 6, "quiet files are served from the cache");
    // An in-place rewrite (same inode) of the same size is seen.
    let target = ws.path().join("grain_class.meta.parquet");
    let other = std::fs::read(ws.path().join("newer_version.meta.parquet")).unwrap();
    assert_eq!(
        other.len() as u64,
        std::fs::metadata(&target).unwrap().len()
    );
    std::fs::write(&target, &other).unwrap();
    let s = w.summary().unwrap();
    assert_eq!(s.errors.len(), 2, "the rewrite is seen: {:?}", s.errors);
}

#[test]
fn recursive_listing_is_opt_in() {
    let ws = workspace_with(&[GOOD[1]]);
    std::fs::create_dir(ws.path().join("sub")).unwrap();
    std::fs::copy(fixture(GOOD[0]), ws.path().join("sub").join(GOOD[0])).unwrap();
    assert_eq!(
        Workspace::open(ws.path())
            .unwrap()
            .summary()
            .unwrap()
            .total_datasets,
        1
    );
    let r = Workspace::open(ws.path())
        .unwrap()
        .with_recursive(true)
        .summary()
        .unwrap();
    assert_eq!(r.total_datasets, 2);
}

#[test]
fn workspace_summary_json_has_the_dashboard_shape() {
    let ws = generated_workspace(3);
    let s = Workspace::open(ws.path()).unwrap().summary().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&s.to_json(n4a::workspace::merge::Form::Full)).unwrap();
    for key in [
        "total_predictions",
        "total_datasets",
        "datasets",
        "models",
        "runs",
        "top_predictions",
        "stats",
        "generated_at",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let d = &v["datasets"][0];
    for key in [
        "dataset",
        "has_summary",
        "total_predictions",
        "facets",
        "top_predictions",
    ] {
        assert!(d.get(key).is_some(), "datasets[0].{key}");
    }
    // Issue 29: runs are listed once, at the top, each with the datasets it
    // touched; a file's entry does not repeat them.
    assert!(d.get("runs").is_none());
    assert!(v["runs"][0]["datasets"].is_array(), "{}", v["runs"][0]);
    assert!(
        d.get("state").is_none(),
        "the mergeable state stays out of the answer"
    );
    assert!(v["top_predictions"][0]["dataset"].is_string());
    // The generated datasets use different metrics: no pooled statistics,
    // each metric's under `metrics[].stats`.
    assert!(v["stats"].is_null(), "{}", v["stats"]);
    let metrics = v["metrics"].as_array().unwrap();
    assert!(metrics.len() > 1);
    for m in metrics {
        assert_eq!(m["stats"]["val_score"]["quartiles_method"], "sketch", "{m}");
        assert_eq!(m["stats"]["val_score"]["quartiles_rel_error"], 0.01);
    }
}
