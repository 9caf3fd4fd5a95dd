//! Crash safety and concurrency, with real processes: a writer killed
//! between flushes, and two writers appending to one dataset at once.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use n4a::generate::dataset_rows;
use n4a::rows;
use n4a::writer::{PredictionWriter, WriterOptions};

fn n4a() -> Command {
    Command::new(env!("CARGO_BIN_EXE_n4a"))
}

/// Writes `n` generated rows of dataset `corn_000` (seed `seed`) as JSON Lines.
fn jsonl(path: &Path, n: usize, seed: u64) -> Vec<String> {
    let (_, rows) = dataset_rows(0, n, seed, false);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut ids = Vec::new();
    for mut p in rows {
        // Distinct ids across seeds and rows.
        let id = format!("{seed:04x}{:012x}", ids.len());
        p.id = Some(id.clone());
        ids.push(id);
        serde_json::to_writer(&mut f, &p).unwrap();
        f.write_all(b"\n").unwrap();
    }
    ids
}

fn seed_dataset(ws: &Path) -> Vec<u8> {
    let (_, rows) = dataset_rows(0, 500, 1, false);
    let mut w = PredictionWriter::create(ws, "corn_000", WriterOptions::default()).unwrap();
    rows.into_iter().for_each(|p| w.write_owned(p).unwrap());
    w.finish().unwrap();
    std::fs::read(ws.join("corn_000.meta.parquet")).unwrap()
}

fn temp_files(ws: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(ws)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".n4a-tmp-"))
        .collect()
}

#[test]
fn writer_killed_between_flushes_leaves_previous_file_byte_identical() {
    let ws = tempfile::tempdir().unwrap();
    let before = seed_dataset(ws.path());
    let arrays_before = std::fs::read(ws.path().join("corn_000.arrays.parquet")).unwrap();
    let input = ws.path().join("big.jsonl");
    jsonl(&input, 60_000, 2);
    let mut child = n4a()
        .args([
            "ingest",
            ws.path().to_str().unwrap(),
            input.to_str().unwrap(),
            "--row-group-rows",
            "500",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the writer has flushed row groups of new rows past the copy
    // of the old file, then kill it (SIGKILL: no destructor runs).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let grown = temp_files(ws.path())
            .iter()
            .filter(|p| p.to_string_lossy().contains(".meta.parquet"))
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > before.len() as u64 + 50_000));
        if grown {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ingest finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "no flush observed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        std::fs::read(ws.path().join("corn_000.meta.parquet")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read(ws.path().join("corn_000.arrays.parquet")).unwrap(),
        arrays_before
    );
    assert!(
        !temp_files(ws.path()).is_empty(),
        "the killed writer's temp file is still there"
    );
    // The next writer removes the leftovers under the lock and works.
    let w = PredictionWriter::append(ws.path(), "corn_000", WriterOptions::default()).unwrap();
    assert_eq!(w.num_rows(), 500);
    w.finish().unwrap();
    assert!(temp_files(ws.path()).is_empty());
}

#[test]
fn two_processes_appending_to_one_dataset_lose_no_row() {
    let ws = tempfile::tempdir().unwrap();
    seed_dataset(ws.path());
    let (a, b) = (ws.path().join("a.jsonl"), ws.path().join("b.jsonl"));
    let mut ids = jsonl(&a, 3000, 3);
    ids.extend(jsonl(&b, 3000, 4));
    let spawn = |f: &Path| {
        n4a()
            .args([
                "ingest",
                ws.path().to_str().unwrap(),
                f.to_str().unwrap(),
                "--row-group-rows",
                "256",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut pa, mut pb) = (spawn(&a), spawn(&b));
    assert!(pa.wait().unwrap().success());
    assert!(pb.wait().unwrap().success());
    let meta = ws.path().join("corn_000.meta.parquet");
    let got = rows::read_predictions(&meta).unwrap();
    assert_eq!(got.len(), 500 + 6000);
    let have: std::collections::HashSet<_> = got.iter().filter_map(|p| p.id.clone()).collect();
    assert!(
        ids.iter().all(|id| have.contains(id)),
        "every appended row is there"
    );
    let s = n4a::footer::Footer::read(&meta)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(s.total_predictions, 6500, "summary counts every row");
}
