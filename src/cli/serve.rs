//! `n4a serve`: its flags, converted once into `ServeOptions`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use n4a::server::{run, ServeOptions};

use super::parse_direction;

/// The `serve` flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Workspace folders, as PATH or ID=PATH (the id defaults to the
    /// folder's name); none is needed with --root (the web app links them).
    #[arg(required_unless_present = "roots")]
    workspaces: Vec<String>,
    /// A folder under which the nirs4all web app may link workspaces
    /// (repeatable; without one, linking answers 403). Nothing outside
    /// these folders and the workspaces given is ever opened.
    #[arg(long = "root", value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// An origin whose pages may call the API (CORS, repeatable; `*` for
    /// any): the web app's dev server is http://localhost:5173, its
    /// preview http://localhost:4173. Not needed with --ui (same origin).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// A built nirs4all web app (the folder holding its index.html) to
    /// serve from /, so one command gives the app on these workspaces.
    #[arg(long, value_name = "DIR")]
    ui: Option<PathBuf>,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8765")]
    addr: SocketAddr,
    /// Allow a non-loopback address.
    #[arg(long)]
    allow_remote: bool,
    /// Largest `limit` of a data page.
    #[arg(long, default_value_t = 10_000)]
    max_limit: usize,
    /// Heavy queries (pages, top-k, scatter) at once (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    max_heavy: usize,
    /// Seconds a heavy query waits for its turn before a 503.
    #[arg(long, default_value_t = 30)]
    queue_timeout: u64,
    /// Seconds a heavy query may run before it is stopped with a 503
    /// (fractions allowed).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    query_timeout: f64,
    /// File whose first line is the bearer token every request must carry
    /// (`Authorization: Bearer TOKEN`; at least 16 bytes); required to
    /// serve beyond loopback.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Serve beyond loopback without a token: anyone who reaches the port
    /// reads every prediction.
    #[arg(long)]
    no_auth: bool,
    /// No log line per request.
    #[arg(long)]
    quiet: bool,
    /// MiB of decoded columns kept between queries (scores, facets as
    /// dictionary keys), over all workspaces; 0 keeps none.
    #[arg(long, default_value_t = 512, value_name = "MIB")]
    cache_mem: usize,
    /// MiB the whole process's heap may hold (footers, summaries, answers,
    /// running queries and the cache): the cache then holds at most this
    /// less the rest (never less than an eighth of --cache-mem). Default:
    /// no bound beyond --cache-mem
    #[arg(long, value_name = "MIB")]
    mem_limit: Option<usize>,
    /// Direction of a metric not built in, as METRIC=max|min|zero (repeatable).
    #[arg(long = "direction", value_name = "METRIC=DIR")]
    directions: Vec<String>,
}

/// Runs `n4a serve` until SIGINT or SIGTERM.
pub fn serve_cmd(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut opts = ServeOptions {
        addr: a.addr,
        allow_remote: a.allow_remote,
        max_limit: a.max_limit,
        queue_timeout: Duration::from_secs(a.queue_timeout),
        query_timeout: Duration::try_from_secs_f64(a.query_timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| {
                format!(
                    "--query-timeout {}: a positive number of seconds",
                    a.query_timeout
                )
            })?,
        token: a
            .token_file
            .as_deref()
            .map(n4a::server::BearerToken::from_file)
            .transpose()?,
        no_auth: a.no_auth,
        log: !a.quiet,
        cache_mem: a.cache_mem.saturating_mul(1 << 20),
        mem_limit: a.mem_limit.map(|m| m.saturating_mul(1 << 20)),
        roots: a.roots.clone(),
        cors_origins: a.cors_origins.clone(),
        ui: a.ui.clone(),
        ..ServeOptions::default()
    };
    if let Some(ui) = &a.ui {
        anyhow::ensure!(
            ui.join("index.html").is_file(),
            "--ui {}: no index.html in it (give the folder a web app build made, e.g. its dist/)",
            ui.display()
        );
    }
    if a.max_heavy > 0 {
        opts.max_heavy = a.max_heavy;
    }
    for d in &a.directions {
        let (metric, dir) = parse_direction(d)?;
        opts.directions = opts.directions.with(metric, dir);
    }
    let given: Vec<(String, PathBuf)> = a
        .workspaces
        .iter()
        .map(|w| match w.split_once('=') {
            Some((id, p)) if !id.contains('/') => (id.to_string(), PathBuf::from(p)),
            _ => (String::new(), PathBuf::from(w)),
        })
        .collect();
    // A nirs4all store is served from its mirror, which the workspace
    // keeps up to date (`n4a::workspace::watch`).
    let workspaces = given;
    run(&workspaces, opts).context("n4a serve")?;
    Ok(ExitCode::SUCCESS)
}
