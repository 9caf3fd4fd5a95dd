//! Workspace summaries from footers, in process: sequential, rayon and
//! cached, beside the floor (open + read the footer bytes, no decoding), on
//! a generated workspace of 2000 files x 500 rows (n4a 1.2 footers); how
//! the rayon summary grows from 10 to 2000 files; and one footer's read,
//! step by step. All in one run: `cargo bench --bench footer_read`. The
//! whole-process comparison with DuckDB on nirs4all's own files is
//! `benches/vs_duckdb.sh`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use n4a::generate::{generate, GenOptions};
use n4a::Workspace;
use rayon::prelude::*;

const FILES: usize = 2000;

fn workspace() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        datasets: FILES,
        rows: 500,
        arrays: false,
        ..Default::default()
    };
    generate(dir.path(), &opts).unwrap();
    let mut metas: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
        .collect();
    metas.sort();
    // Quiet files, so the cache trusts them (see workspace::cache).
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let f = File::options().write(true).open(e.unwrap().path()).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
    }
    (dir, metas)
}

/// The floor: open, read the 8-byte tail, read the metadata bytes.
fn footer_bytes(path: &Path) -> usize {
    let mut f = File::open(path).unwrap();
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::End(-8)).unwrap();
    f.read_exact(&mut tail).unwrap();
    let len = u32::from_le_bytes(tail[..4].try_into().unwrap()) as i64;
    let mut buf = vec![0u8; len as usize];
    f.seek(SeekFrom::End(-8 - len)).unwrap();
    f.read_exact(&mut buf).unwrap();
    buf.len()
}

/// The 2000-file workspace, made once and only when a benchmark that needs
/// it runs (criterion calls a benchmark's closure only if its id matches the
/// filter).
fn shared() -> &'static (tempfile::TempDir, Vec<PathBuf>) {
    static WS: std::sync::OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = std::sync::OnceLock::new();
    WS.get_or_init(workspace)
}

fn summary(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("workspace_summary_2000_files");
    g.sample_size(10);
    g.throughput(Throughput::Elements(FILES as u64));
    g.bench_function("floor_sequential", |b| {
        let metas = &shared().1;
        b.iter(|| metas.iter().map(|p| footer_bytes(p)).sum::<usize>())
    });
    g.bench_function("floor_rayon", |b| {
        let metas = &shared().1;
        b.iter(|| pool.install(|| metas.par_iter().map(|p| footer_bytes(p)).sum::<usize>()))
    });
    g.bench_function("n4a_sequential", |b| {
        let dir = shared().0.path();
        b.iter(|| {
            Workspace::open(dir)
                .unwrap()
                .with_threads(1)
                .summary()
                .unwrap()
        })
    });
    g.bench_function("n4a_rayon", |b| {
        let dir = shared().0.path();
        b.iter(|| {
            Workspace::open(dir)
                .unwrap()
                .with_threads(2)
                .summary()
                .unwrap()
        })
    });
    g.bench_function("n4a_cached", |b| {
        let warm = Workspace::open(shared().0.path()).unwrap().with_threads(2);
        warm.summary().unwrap();
        b.iter(|| warm.summary().unwrap())
    });
    g.bench_function("stat_only", |b| {
        let metas = &shared().1;
        b.iter(|| {
            metas
                .iter()
                .map(|p| std::fs::metadata(p).unwrap().len())
                .sum::<u64>()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("workspace_summary_growth");
    g.sample_size(10);
    for n in [10usize, 100, 500, 2000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("n4a_rayon", n), &n, |b, &n| {
            let sub = tempfile::tempdir().unwrap();
            for p in &shared().1[..n] {
                std::fs::hard_link(p, sub.path().join(p.file_name().unwrap())).unwrap();
            }
            b.iter(|| {
                Workspace::open(sub.path())
                    .unwrap()
                    .with_threads(2)
                    .summary()
                    .unwrap()
            })
        });
    }
    g.finish();
}

/// Where the time of one cold footer read goes: the bytes, the parquet
/// metadata decode, and the summary JSON decode.
fn one_file(c: &mut Criterion) {
    let (_dir, metas) = one_small_workspace();
    let p = &metas[0];
    let mut g = c.benchmark_group("one_footer");
    g.bench_function("bytes", |b| b.iter(|| footer_bytes(p)));
    g.bench_function("parquet_metadata", |b| {
        b.iter(|| n4a::footer::Footer::read(p).unwrap())
    });
    g.bench_function("metadata_and_summary", |b| {
        b.iter(|| n4a::footer::Footer::read(p).unwrap().summary().unwrap())
    });
    // The skim (what a workspace reads per file), through the public path:
    // a one-file workspace without its cache.
    let dir = p.parent().unwrap().to_path_buf();
    g.bench_function("skim_and_state_head", |b| {
        b.iter(|| {
            Workspace::open(&dir)
                .unwrap()
                .with_threads(1)
                .with_cache(false)
                .summary()
                .unwrap()
        })
    });
    g.finish();
}

fn one_small_workspace() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        datasets: 1,
        rows: 500,
        arrays: false,
        ..Default::default()
    };
    let made = generate(dir.path(), &opts).unwrap();
    let metas = made.into_iter().map(|d| d.meta_path).collect();
    (dir, metas)
}

criterion_group!(benches, one_file, summary);
criterion_main!(benches);
