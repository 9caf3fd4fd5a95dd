//! Queries on a generated workspace of 100 files x 100,000 rows (10 million
//! rows), each beside a plain polars full scan of the same query (read every
//! file whole, then filter, sort, slice: what the dashboard does today), in
//! the same run; and the page query on 10 files (1 million rows) for growth.
//! `cargo bench --bench query`.

use std::path::PathBuf;
use std::sync::OnceLock;

use criterion::{criterion_group, criterion_main, Criterion};
use n4a::generate::{generate, GenOptions};
use n4a::query::{Filters, GroupKey, GroupQuery, PageQuery, QueryEngine, Sort, TopQuery};
use n4a::reader::Workspace;
use polars::prelude::*;

struct Ws {
    _dir: tempfile::TempDir,
    big: PathBuf,
    small: PathBuf,
}

/// 100 files x 100k rows, made once, only if a benchmark needs it; the first
/// 10 files are also linked into a 1-million-row workspace.
fn ws() -> &'static Ws {
    static W: OnceLock<Ws> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        let opts = GenOptions {
            datasets: 100,
            rows: 100_000,
            arrays: false,
            ..Default::default()
        };
        generate(&big, &opts).unwrap();
        let small = dir.path().join("small");
        std::fs::create_dir(&small).unwrap();
        let mut metas: Vec<PathBuf> = std::fs::read_dir(&big)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
            .collect();
        metas.sort();
        for p in &metas[..10] {
            std::fs::hard_link(p, small.join(p.file_name().unwrap())).unwrap();
        }
        Ws {
            _dir: dir,
            big,
            small,
        }
    })
}

/// The baseline: every file read whole into memory, then the query eagerly.
fn full_scan(dir: &std::path::Path) -> DataFrame {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
        .collect();
    paths.sort();
    let frames: Vec<LazyFrame> = paths
        .iter()
        .map(|p| {
            LazyFrame::scan_parquet(
                PlRefPath::try_from_path(p).unwrap(),
                ScanArgsParquet::default(),
            )
            .unwrap()
        })
        .collect();
    concat(frames, UnionArgs::default())
        .unwrap()
        .collect()
        .unwrap()
}

fn page_query() -> PageQuery {
    PageQuery {
        filters: Filters::default()
            .with("partition", ["val"])
            .unwrap()
            .with("metric", ["mse"])
            .unwrap(),
        columns: None,
        sort: Some(Sort {
            column: "val_score".into(),
            descending: false,
        }),
        offset: 1000,
        limit: 50,
    }
}

fn page(c: &mut Criterion) {
    let mut g = c.benchmark_group("page_val_mse_sorted_offset_1000");
    g.sample_size(10);
    for (name, pick) in [("10M", true), ("1M", false)] {
        g.bench_function(format!("n4a_{name}"), |b| {
            let dir = if pick { &ws().big } else { &ws().small };
            let w = Workspace::open(dir).unwrap();
            let e = QueryEngine::new(&w);
            b.iter(|| e.page(&page_query()).unwrap())
        });
        g.bench_function(format!("polars_full_scan_{name}"), |b| {
            let dir = if pick { &ws().big } else { &ws().small };
            b.iter(|| {
                let df = full_scan(dir);
                let f = col("partition")
                    .eq(lit("val"))
                    .and(col("metric").eq(lit("mse")));
                let total = df
                    .clone()
                    .lazy()
                    .filter(f.clone())
                    .select([len()])
                    .collect()
                    .unwrap();
                let rows = df
                    .lazy()
                    .filter(f)
                    .sort_by_exprs(
                        [col("val_score"), col("id")],
                        SortMultipleOptions::default(),
                    )
                    .slice(1000, 50)
                    .collect()
                    .unwrap();
                (total, rows)
            })
        });
    }
    g.finish();
}

fn top(c: &mut Criterion) {
    let mut g = c.benchmark_group("top10_lowest_mse_val");
    g.sample_size(10);
    g.bench_function("n4a_10M", |b| {
        let w = Workspace::open(&ws().big).unwrap();
        let e = QueryEngine::new(&w);
        let q = TopQuery {
            filters: Filters::default()
                .with("metric", ["mse"])
                .unwrap()
                .with("partition", ["val"])
                .unwrap(),
            k: 10,
            direction: None,
            score: "val_score".into(),
        };
        b.iter(|| e.top(&q).unwrap())
    });
    g.bench_function("polars_full_scan_10M", |b| {
        b.iter(|| {
            full_scan(&ws().big)
                .lazy()
                .filter(
                    col("metric")
                        .eq(lit("mse"))
                        .and(col("partition").eq(lit("val"))),
                )
                .sort_by_exprs([col("val_score")], SortMultipleOptions::default())
                .limit(10)
                .collect()
                .unwrap()
        })
    });
    g.finish();
}

fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_by_model_10M");
    g.sample_size(10);
    g.bench_function("n4a_scan_all_aggregates", |b| {
        let w = Workspace::open(&ws().big).unwrap();
        let e = QueryEngine::new(&w);
        let q = GroupQuery {
            filters: Filters::default().with("metric", ["mse"]).unwrap(),
            key: GroupKey::Model,
            score: "val_score".into(),
            count_and_mean_only: false,
            direction: None,
        };
        b.iter(|| e.group(&q).unwrap())
    });
    g.bench_function("n4a_footers_count_mean", |b| {
        let w = Workspace::open(&ws().big).unwrap();
        let e = QueryEngine::new(&w);
        let q = GroupQuery {
            filters: Filters::default(),
            key: GroupKey::Model,
            score: "val_score".into(),
            count_and_mean_only: true,
            direction: None,
        };
        b.iter(|| e.group(&q).unwrap())
    });
    g.bench_function("polars_full_scan", |b| {
        b.iter(|| {
            full_scan(&ws().big)
                .lazy()
                .filter(col("metric").eq(lit("mse")))
                .group_by([col("model_name")])
                .agg([
                    len().alias("count"),
                    col("val_score").mean().alias("mean"),
                    col("val_score").min().alias("min"),
                    col("val_score").max().alias("max"),
                ])
                .collect()
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, page, top, group);
criterion_main!(benches);
