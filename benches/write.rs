//! Write throughput and append-vs-rewrite, each beside its baseline in the
//! same run.
//!
//! `cargo bench --bench write` (all), or e.g. `cargo bench --bench write -- append`.
//! Rows come from a pre-generated, seeded pool of 65,536 rows (ids set), so
//! the measured time is the writer's: buffering, summary, encoding, ZSTD,
//! fsync and rename.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use n4a::generate::dataset_rows;
use n4a::rows::read_predictions;
use n4a::schema::Prediction;
use n4a::writer::{PredictionWriter, WriterOptions};

fn pool() -> Vec<Prediction> {
    let (_, mut rows) = dataset_rows(0, 65_536, 42, false);
    for p in &mut rows {
        p.id = Some(p.computed_id());
    }
    rows
}

fn write_rows(dir: &Path, rows: impl Iterator<Item = Prediction>) {
    let mut w = PredictionWriter::create(dir, "corn_000", WriterOptions::default()).unwrap();
    rows.for_each(|p| w.write_owned(p).unwrap());
    w.finish().unwrap();
}

fn throughput(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group("write_throughput");
    g.sample_size(10);
    for n in [10_000usize, 1_000_000, 10_000_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("writer", n), &n, |b, &n| {
            let dir = tempfile::tempdir().unwrap();
            b.iter(|| {
                let mut w =
                    PredictionWriter::create(dir.path(), "corn_000", WriterOptions::default())
                        .unwrap();
                for i in 0..n {
                    w.write(&pool[i % pool.len()]).unwrap();
                }
                w.finish().unwrap()
            });
        });
    }
    g.finish();
}

fn append_vs_rewrite(c: &mut Criterion) {
    let pool = pool();
    let base = tempfile::tempdir().unwrap();
    write_rows(
        base.path(),
        (0..100_000).map(|i| pool[i % pool.len()].clone()),
    );
    let pristine = std::fs::read(base.path().join("corn_000.meta.parquet")).unwrap();
    let pristine_arrays = std::fs::read(base.path().join("corn_000.arrays.parquet")).unwrap();
    let (_, new_rows) = dataset_rows(0, 10_000, 7, false);
    let fresh = || {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("corn_000.meta.parquet"), &pristine).unwrap();
        std::fs::write(d.path().join("corn_000.arrays.parquet"), &pristine_arrays).unwrap();
        d
    };
    let mut g = c.benchmark_group("append_10k_to_100k");
    g.sample_size(10);
    g.bench_function("n4a_append", |b| {
        b.iter_batched(
            fresh,
            |d| {
                let mut w =
                    PredictionWriter::append(d.path(), "corn_000", WriterOptions::default())
                        .unwrap();
                new_rows.iter().for_each(|p| w.write(p).unwrap());
                w.finish().unwrap();
                d
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("nirs4all_way_full_rewrite", |b| {
        b.iter_batched(
            fresh,
            |d| {
                // Load every row, concatenate, recompute the summary from
                // scratch and rewrite the whole file.
                let mut all = read_predictions(&d.path().join("corn_000.meta.parquet")).unwrap();
                all.extend(new_rows.iter().cloned());
                write_rows(d.path(), all.into_iter());
                d
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, throughput, append_vs_rewrite);
criterion_main!(benches);
