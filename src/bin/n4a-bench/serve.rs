//! `n4a-bench serve`: a load bench for a running `n4a serve`, over real
//! sockets from another process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::client::Client;
use crate::Format;

/// The `n4a-bench serve` flags.
#[derive(Debug, clap::Args)]
pub struct BenchServeArgs {
    /// The server, as HOST:PORT.
    addr: String,
    /// Workspace id (default: the first the server lists).
    #[arg(long)]
    workspace: Option<String>,
    /// Requests in the load run.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Connections sending at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Query string of the data pages.
    #[arg(long, default_value = "limit=50&partition=val&sort=val_score")]
    data_query: String,
    /// Summaries per data page in the mix (1: half and half).
    #[arg(long, default_value_t = 1)]
    summary_per_data: usize,
    /// Requests of the same mix sent before the measured run (caches,
    /// thread pools and allocator arenas fill up), not counted.
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    /// File holding the server's bearer token (as `serve --token-file`).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[i]
}

fn rss(addr: &str) -> anyhow::Result<Option<u64>> {
    let r = Client::connect(addr)?.get("/healthz")?;
    Ok(r.json()["rss_bytes"].as_u64())
}

/// Runs the load bench: the first summary and data page (cold when the
/// server has just started), then the load run on `concurrency`
/// connections; reports latencies, throughput, errors and the server's
/// memory before and after. Exit 1 when any request failed.
pub fn bench_serve_cmd(a: BenchServeArgs) -> anyhow::Result<ExitCode> {
    let addr = a.addr.as_str();
    let token = match &a.token_file {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(text.lines().next().unwrap_or("").trim().to_string())
        }
        None => None,
    };
    let token = token.as_deref();
    let connect = |addr: &str| Client::connect(addr).map(|c| c.with_bearer(token));
    let ws = match &a.workspace {
        Some(w) => w.clone(),
        None => {
            let r = connect(addr)
                .with_context(|| format!("connecting to {addr}"))?
                .get("/api/workspaces")?;
            match r.json()["workspaces"][0]["id"].as_str() {
                Some(id) => id.to_string(),
                None => bail!("{addr} serves no workspace"),
            }
        }
    };
    let summary = format!("/api/workspaces/{ws}/predictions/summary");
    let data = format!("/api/workspaces/{ws}/predictions/data?{}", a.data_query);
    let timed = |target: &str| -> anyhow::Result<(f64, u16)> {
        let mut c = connect(addr)?;
        let t0 = Instant::now();
        let r = c.get(target)?;
        Ok((t0.elapsed().as_secs_f64() * 1e3, r.status))
    };
    let (cold_summary, s1) = timed(&summary)?;
    let (cold_data, s2) = timed(&data)?;
    if s1 != 200 || s2 != 200 {
        bail!("the first requests failed: summary {s1}, data {s2}");
    }
    let per = a.summary_per_data.max(1) + 1;
    let run = |requests: usize| -> Vec<Vec<(bool, f64, bool)>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..a.concurrency.max(1))
                .map(|t| {
                    let (summary, data) = (&summary, &data);
                    s.spawn(move || {
                        let mut out = Vec::new();
                        let mut client = connect(addr).ok();
                        let mut i = t;
                        while i < requests {
                            let is_data = i % per == per - 1;
                            let target = if is_data { data } else { summary };
                            let t0 = Instant::now();
                            let ok = match client.as_mut().map(|c| c.get(target)) {
                                Some(Ok(r)) => r.status == 200,
                                _ => {
                                    client = connect(addr).ok();
                                    false
                                }
                            };
                            out.push((is_data, t0.elapsed().as_secs_f64() * 1e3, ok));
                            i += a.concurrency.max(1);
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let warm_errors = run(a.warmup).into_iter().flatten().filter(|r| !r.2).count();
    let rss_before = rss(addr)?;
    let started = Instant::now();
    let results = run(a.requests);
    let secs = started.elapsed().as_secs_f64();
    let rss_after = rss(addr)?;
    let all: Vec<(bool, f64, bool)> = results.into_iter().flatten().collect();
    let errors = all.iter().filter(|r| !r.2).count();
    let stats = |data: bool| {
        let mut v: Vec<f64> = all.iter().filter(|r| r.0 == data).map(|r| r.1).collect();
        v.sort_by(f64::total_cmp);
        serde_json::json!({
            "requests": v.len(),
            "errors": all.iter().filter(|r| r.0 == data && !r.2).count(),
            "p50_ms": percentile(&v, 0.5),
            "p99_ms": percentile(&v, 0.99),
            "max_ms": v.last().copied().unwrap_or(f64::NAN),
        })
    };
    let report = serde_json::json!({
        "server": addr,
        "workspace": ws,
        "cold": {"summary_ms": cold_summary, "data_ms": cold_data},
        "warmup": {"requests": a.warmup, "errors": warm_errors},
        "load": {
            "requests": all.len(),
            "concurrency": a.concurrency,
            "seconds": secs,
            "requests_per_second": all.len() as f64 / secs.max(1e-9),
            "errors": errors,
            "summary": stats(false),
            "data": stats(true),
        },
        "server_rss_bytes": {"before": rss_before, "after": rss_after},
    });
    if a.format == Format::Json {
        println!("{report}");
    } else {
        let l = &report["load"];
        let f = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
        println!("cold (first request): summary {cold_summary:.2} ms, data page {cold_data:.2} ms");
        println!(
            "load: {} requests on {} connections in {:.2} s = {:.0} req/s, {} errors",
            all.len(),
            a.concurrency,
            secs,
            all.len() as f64 / secs.max(1e-9),
            errors
        );
        for kind in ["summary", "data"] {
            let k = &l[kind];
            println!(
                "  {kind:7} {} requests: p50 {} ms, p99 {} ms, max {} ms",
                k["requests"],
                f(&k["p50_ms"]),
                f(&k["p99_ms"]),
                f(&k["max_ms"])
            );
        }
        let mib = |b: Option<u64>| {
            b.map_or("?".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        println!(
            "server memory: {} after {} warm-up requests ({warm_errors} errors), {} after the run",
            mib(rss_before),
            a.warmup,
            mib(rss_after)
        );
    }
    Ok(if errors + warm_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
