//! Batch summary refresh, in one run: backfilling the summaries of 10 files
//! x 100,000 rows written without one, by `n4a refresh` (footer-only
//! rewrite) against the nirs4all way (read each file whole, recompute,
//! rewrite the whole file), both on the same 2 threads; `--verify` (all
//! recomputed, nothing written) and a refresh of an already current
//! workspace (footer checks only); and how one file's refresh grows from
//! 10 thousand to 1 million rows. `cargo bench --bench refresh`.
//!
//! Every iteration starts from a fresh copy of the summary-less files
//! (copied in the untimed setup).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::RecordBatch;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use n4a::generate::{generate, GenOptions};
use n4a::refresh::{refresh_workspace, Mode, RefreshOptions};
use n4a::rows;
use n4a::summary::{utc_now, SummaryBuilder, SummaryOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;

const THREADS: usize = 2;

/// Rewrites `path` without its summary (nirs4all before summaries existed).
fn strip(path: &Path) {
    let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let schema = Arc::new(
        b.schema()
            .as_ref()
            .clone()
            .with_metadata(std::collections::HashMap::<String, String>::new()),
    );
    let batches: Vec<RecordBatch> = b.build().unwrap().map(Result::unwrap).collect();
    let tmp = path.with_extension("strip");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w =
        ArrowWriter::try_new(File::create(&tmp).unwrap(), schema.clone(), Some(props)).unwrap();
    for b in batches {
        w.write(&RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap())
            .unwrap();
    }
    w.close().unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// A generated workspace of `files` x `rows`, summaries stripped.
fn source(files: usize, rows: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = GenOptions {
        datasets: files,
        rows,
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
    metas.iter().for_each(|p| strip(p));
    (dir, metas)
}

fn ten_files() -> &'static (tempfile::TempDir, Vec<PathBuf>) {
    static S: OnceLock<(tempfile::TempDir, Vec<PathBuf>)> = OnceLock::new();
    S.get_or_init(|| source(10, 100_000))
}

/// A fresh workspace holding copies of `metas`.
fn copy_of(metas: &[PathBuf]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for p in metas {
        std::fs::copy(p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

/// The nirs4all way, for one file: read every column of every row,
/// recompute the summary from all rows, write the whole file anew (ZSTD,
/// the summary in the footer), then rename it over the old one.
fn nirs4all_way(path: &Path) {
    let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let schema = b.schema().clone();
    let batches: Vec<RecordBatch> = b.build().unwrap().map(Result::unwrap).collect();
    let mut sb = SummaryBuilder::new(SummaryOptions::default());
    for batch in &batches {
        rows::summarize_batch(batch, &mut sb, "bench").unwrap();
    }
    let text = sb.finish(Some(utc_now())).to_json();
    let mut md = schema.metadata().clone();
    md.insert("n4a_summary".to_string(), text.clone());
    let schema = Arc::new(schema.as_ref().clone().with_metadata(md));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(vec![KeyValue::new("n4a_summary".into(), text)]))
        .build();
    let tmp = path.with_extension("rewrite");
    let mut w =
        ArrowWriter::try_new(File::create(&tmp).unwrap(), schema.clone(), Some(props)).unwrap();
    for batch in batches {
        w.write(&RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).unwrap())
            .unwrap();
    }
    w.close().unwrap();
    File::open(&tmp).unwrap().sync_all().unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn opts(mode: Mode, write: bool) -> RefreshOptions {
    RefreshOptions {
        mode,
        write,
        threads: THREADS,
        ..RefreshOptions::default()
    }
}

fn refresh_ten(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("refresh_10_files_x_100k_rows");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("n4a_refresh_backfill", |b| {
        let metas = &ten_files().1;
        b.iter_batched(
            || copy_of(metas),
            |ws| {
                let r =
                    refresh_workspace(ws.path(), &opts(Mode::Refresh, true), &|_, _| {}).unwrap();
                assert_eq!(r.refreshed, 10);
                ws
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("nirs4all_way_rewrite_whole_files", |b| {
        let metas = &ten_files().1;
        b.iter_batched(
            || copy_of(metas),
            |ws| {
                let files: Vec<PathBuf> = metas
                    .iter()
                    .map(|p| ws.path().join(p.file_name().unwrap()))
                    .collect();
                pool.install(|| files.par_iter().for_each(|p| nirs4all_way(p)));
                ws
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("n4a_verify_all_recomputed", |b| {
        let metas = &ten_files().1;
        let ws = copy_of(metas);
        refresh_workspace(ws.path(), &opts(Mode::Refresh, true), &|_, _| {}).unwrap();
        b.iter(|| {
            let r = refresh_workspace(ws.path(), &opts(Mode::Verify, false), &|_, _| {}).unwrap();
            assert_eq!(r.unchanged, 10);
        })
    });
    g.bench_function("n4a_refresh_already_current", |b| {
        let metas = &ten_files().1;
        let ws = copy_of(metas);
        refresh_workspace(ws.path(), &opts(Mode::Refresh, true), &|_, _| {}).unwrap();
        b.iter(|| {
            let r = refresh_workspace(ws.path(), &opts(Mode::Refresh, true), &|_, _| {}).unwrap();
            assert_eq!(r.unchanged, 10);
        })
    });
    g.finish();
}

/// One summary-less file of `rows` rows, made once per size.
fn one_file(rows: usize) -> &'static (tempfile::TempDir, Vec<PathBuf>) {
    static S: [OnceLock<(tempfile::TempDir, Vec<PathBuf>)>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match rows {
        10_000 => 0,
        100_000 => 1,
        _ => 2,
    };
    S[slot].get_or_init(|| source(1, rows))
}

fn growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("refresh_one_file_growth");
    g.sample_size(10);
    for rows in [10_000usize, 100_000, 1_000_000] {
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_with_input(BenchmarkId::from_parameter(rows), &rows, |b, &rows| {
            let metas = &one_file(rows).1;
            b.iter_batched(
                || copy_of(metas),
                |ws| {
                    let r = refresh_workspace(ws.path(), &opts(Mode::Refresh, true), &|_, _| {})
                        .unwrap();
                    assert_eq!(r.refreshed, 1);
                    ws
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, refresh_ten, growth);
criterion_main!(benches);
