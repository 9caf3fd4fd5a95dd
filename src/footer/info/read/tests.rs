//! The skim against the parquet crate's full decode (moved from the
//! integration tests when `info` became crate-private, issue 13).

use std::path::PathBuf;

use super::read_info;
use crate::footer::meta as footer;
use crate::footer::FileKey;
use crate::schema::Prediction;
use crate::writer::{PredictionWriter, WriterOptions};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn generated_workspace(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::generate::GenOptions {
        datasets: n,
        rows: 150,
        arrays: false,
        ..Default::default()
    };
    crate::generate::generate(dir.path(), &opts).unwrap();
    dir
}

fn row(config: &str, model: &str, fold: &str, partition: &str, val: f64) -> Prediction {
    Prediction {
        dataset_path: Some("ds".into()),
        config_name: Some(config.into()),
        model_name: Some(model.into()),
        fold_id: Some(fold.into()),
        partition: Some(partition.into()),
        val_score: Some(val),
        metric: Some("mse".into()),
        task_type: Some("regression".into()),
        ..Default::default()
    }
}

#[test]
fn quick_footer_read_agrees_with_the_parquet_decoder() {
    let ws = generated_workspace(2);
    let mut paths: Vec<std::path::PathBuf> = [
        "corn_moisture.meta.parquet",
        "grain_class.meta.parquet",
        "no_summary.meta.parquet",
        "corn_moisture.arrays.parquet",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect();
    paths.extend(
        std::fs::read_dir(ws.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".parquet")),
    );
    // A large footer (over the 64 KiB first read) takes the second read.
    let big = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(big.path(), "many", WriterOptions::default()).unwrap();
    for i in 0..3000 {
        w.write(&row(&format!("config_{i:05}"), "PLS", "0", "val", i as f64))
            .unwrap();
    }
    w.finish().unwrap();
    paths.push(big.path().join("many.meta.parquet"));
    for p in &paths {
        let key = FileKey::of(p).unwrap();
        let quick = read_info(p, key).unwrap();
        let (_, full) = footer::open_metadata(p).unwrap();
        assert_eq!(
            quick.num_rows as i64,
            full.file_metadata().num_rows(),
            "{}",
            p.display()
        );
        assert_eq!(quick.num_row_groups, full.num_row_groups());
        let typed = footer::decode_summary(p, &full).unwrap();
        match (&quick.summary, typed) {
            (Some(info), Some(mut t)) => {
                let relayed = info.to_summary(p, &key).unwrap();
                match t.state.take() {
                    Some(st) => {
                        assert_eq!(info.full_state(p, &key).unwrap().as_deref(), Some(&st));
                        assert_eq!(relayed, t, "{}", p.display());
                    }
                    None => {
                        // nirs4all's: relayed with its maxima left out
                        // where they are not bests; the rest as stored.
                        assert_eq!(relayed.total_predictions, t.total_predictions);
                        assert_eq!(relayed.facets, t.facets);
                        assert_eq!(relayed.stats, t.stats);
                    }
                }
            }
            (None, None) => {}
            other => panic!("{}: {other:?}", p.display()),
        }
    }
    let (_, full) = footer::open_metadata(&big.path().join("many.meta.parquet")).unwrap();
    assert!(footer::summary_text(&full).unwrap().len() > 64 << 10);
}

#[test]
fn corrupted_footers_give_errors_never_panics() {
    // nirs4all's 1.0 footer, and n4a 1.2 footers small (read whole) and
    // large (read sparsely, the summary text left in the file).
    let big = tempfile::tempdir().unwrap();
    let mut w = PredictionWriter::create(big.path(), "many", WriterOptions::default()).unwrap();
    for i in 0..2000 {
        w.write(&row(&format!("config_{i:05}"), "PLS", "0", "val", i as f64))
            .unwrap();
    }
    w.finish().unwrap();
    let small = generated_workspace(1);
    let sources = [
        fixture("grain_class.meta.parquet"),
        small.path().join("corn_000.meta.parquet"),
        big.path().join("many.meta.parquet"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.meta.parquet");
    let mut seed = 7u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for src in &sources {
        let src = std::fs::read(src).unwrap();
        for round in 0..300 {
            let mut bytes = src.clone();
            let n = bytes.len();
            for _ in 0..1 + round % 8 {
                let at = n - 1 - next() % 60_000.min(n - 1);
                bytes[at] = next() as u8;
            }
            std::fs::write(&p, &bytes).unwrap();
            let key = FileKey::of(&p).unwrap();
            if let Ok(info) = read_info(&p, key) {
                if let Some(s) = &info.summary {
                    let _ = s.to_summary(&p, &key);
                    let _ = s.full_state(&p, &key);
                }
            }
        }
    }
    let w = crate::workspace::Workspace::open(dir.path()).unwrap();
    let s = w.summary().unwrap();
    let _ = s.to_json(crate::workspace::merge::Form::Full);
}
