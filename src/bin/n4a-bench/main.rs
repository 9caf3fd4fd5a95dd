//! `n4a-bench`: the load and timing harnesses, kept out of the user CLI
//! (built only with `--features bench`). `serve` load-tests a running
//! `n4a serve` over real sockets; `summary` times workspace summaries
//! in-process; `row-floor` measures the least CPU fetching unseen rows
//! costs on a workspace's files. Peer comparisons against DuckDB live in
//! `benches/`.

/// Also included by path in the tests, which use all of it.
#[allow(dead_code)]
mod client;
mod floor;
mod serve;
mod summary;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// n4a's benchmark harnesses.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load-test a running `n4a serve`: cold first requests, then a mix of
    /// summaries and data pages; latencies, throughput, errors, memory.
    Serve(serve::BenchServeArgs),
    /// Time workspace summaries on a real workspace: median and spread of
    /// cold (new reader, empty cache) and warm (cached) answers.
    Summary(summary::SummaryArgs),
    /// Time decompressing the pages that hold random rows of a
    /// workspace's files (nothing decoded, files in memory, one thread):
    /// the floor under a page of rows never read before.
    RowFloor(floor::FloorArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let run = match args.command {
        Command::Serve(a) => serve::bench_serve_cmd(a),
        Command::Summary(a) => summary::summary_cmd(a),
        Command::RowFloor(a) => floor::floor_cmd(a),
    };
    match run {
        Ok(code) => code,
        Err(err) => {
            eprintln!("n4a-bench: {err:#}");
            ExitCode::from(2)
        }
    }
}
