//! `n4a serve` latency over a real loopback socket, on a generated
//! workspace of 100 files x 100,000 rows (10 million rows): the summary, a
//! data page (the val partition sorted by val_score, 50 rows, with its
//! total) and the dashboard's default page (500 rows, no sort), each cold (a server just started: empty caches) and warm (the
//! same server asked again), in one run. `cargo bench --bench serve`.
//! Throughput and p50/p99 under concurrent load come from `n4a-bench serve`
//! (see the README).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

#[path = "../src/bin/n4a-bench/client.rs"]
#[allow(dead_code)]
mod client;

use client::Client;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use n4a::generate::{generate, GenOptions};
use n4a::server::{App, Background, ServeOptions};

const SUMMARY: &str = "/api/workspaces/ws/predictions/summary";
const DATA: &str = "/api/workspaces/ws/predictions/data?limit=50&partition=val&sort=val_score";
/// The dashboard's own request: the first 500 rows, no sort.
const DASHBOARD: &str = "/api/workspaces/ws/predictions/data?limit=500";

fn workspace() -> &'static (tempfile::TempDir, PathBuf) {
    static W: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let opts = GenOptions {
            datasets: 100,
            rows: 100_000,
            arrays: false,
            ..Default::default()
        };
        generate(&ws, &opts).unwrap();
        // Quiet files, as between runs (the footer cache trusts only files
        // not modified in the last second).
        for e in std::fs::read_dir(&ws).unwrap() {
            let f = std::fs::File::options()
                .write(true)
                .open(e.unwrap().path())
                .unwrap();
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
                .unwrap();
        }
        (dir, ws)
    })
}

/// A server on 127.0.0.1:0 with fresh caches; stops when dropped.
struct Server(Background);

impl Server {
    fn start() -> Server {
        let ws = workspace().1.clone();
        let opts = ServeOptions {
            log: false,
            ..ServeOptions::default()
        };
        let app: Arc<App> = App::new(&[("ws".to_string(), ws)], opts).unwrap();
        Server(Background::start(app).unwrap())
    }

    fn get(&self, client: &mut Client, target: &str) -> usize {
        let r = client.get(target).unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.body.len()
    }
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("serve_10m_rows_100_files");
    g.sample_size(10);
    for (name, target) in [
        ("summary", SUMMARY),
        ("data_page", DATA),
        ("dashboard_page", DASHBOARD),
    ] {
        g.bench_function(format!("{name}_cold"), |b| {
            b.iter_batched(
                || {
                    let s = Server::start();
                    let c = Client::connect(s.0.addr()).unwrap();
                    (s, c)
                },
                |(s, mut c)| {
                    s.get(&mut c, target);
                    (s, c)
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(format!("{name}_warm"), |b| {
            let s = Server::start();
            let mut c = Client::connect(s.0.addr()).unwrap();
            s.get(&mut c, target);
            b.iter(|| s.get(&mut c, target))
        });
    }
    g.finish();
}

criterion_group!(benches, requests);
criterion_main!(benches);
