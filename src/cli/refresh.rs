//! `n4a refresh`: argument handling, the progress line and the report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use n4a::refresh::{refresh_workspace, Mode, RefreshOptions, Status};
use n4a::summary::SummaryOptions;

use super::table::Table;
use super::{parse_direction, ListFormat};

/// The `refresh` flags, as parsed.
#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    /// Workspace folder.
    workspace: PathBuf,
    /// Recompute every summary from the rows and report those that differ
    /// (nothing is written unless --fix).
    #[arg(long)]
    verify: bool,
    /// With --verify: rewrite the summaries that differ.
    #[arg(long, requires = "verify")]
    fix: bool,
    /// Say what would be done; write nothing (exit 0 unless a file could
    /// not be read).
    #[arg(long)]
    dry_run: bool,
    /// As --dry-run, but exit 1 when a file needs a refresh: for CI and
    /// cron jobs that must fail on stale summaries.
    #[arg(long, conflicts_with = "dry_run")]
    check: bool,
    /// Also refresh files in sub-folders.
    #[arg(long)]
    recursive: bool,
    /// Threads (1 = sequential, 0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Direction of a metric not built in, as METRIC=max|min|zero (repeatable).
    #[arg(long = "direction", value_name = "METRIC=DIR")]
    directions: Vec<String>,
    /// No progress line (it is drawn only when stderr is a terminal).
    #[arg(long, alias = "no-progress")]
    quiet: bool,
    /// Output format (CSV: one row per file).
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

/// Runs `n4a refresh`. Exit code 1 when a file failed; with `--check` or
/// `--verify` (without `--fix`), also when a file needs a refresh; else 0
/// (a dry run that worked reports and exits 0).
pub fn refresh_cmd(a: RefreshArgs) -> anyhow::Result<ExitCode> {
    let mut summary = SummaryOptions::default();
    for d in &a.directions {
        let (metric, dir) = parse_direction(d)?;
        summary.directions = summary.directions.with(metric, dir);
    }
    let opts = RefreshOptions {
        mode: if a.verify {
            Mode::Verify
        } else {
            Mode::Refresh
        },
        write: !a.dry_run && !a.check && (!a.verify || a.fix),
        threads: a.threads,
        recursive: a.recursive,
        summary,
        before_commit: None,
    };
    if let Some(code) = super::not_a_folder(&a.workspace) {
        return Ok(code);
    }
    // The total is known at the first file: a line made then.
    let line: std::sync::OnceLock<super::progress::Progress> = std::sync::OnceLock::new();
    let counts = std::sync::Mutex::new((0usize, 0usize));
    let report = refresh_workspace(&a.workspace, &opts, &|r, total| {
        let l = line.get_or_init(|| {
            super::progress::Progress::new("refresh", "files", Some(total as u64), a.quiet)
        });
        let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
        c.0 += usize::from(r.status == Status::Refreshed);
        c.1 += usize::from(r.status == Status::Failed);
        l.add(1, Some(format!("{} refreshed, {} failed", c.0, c.1)));
    })
    .with_context(|| format!("refreshing {}", a.workspace.display()))?;
    if let Some(l) = line.get() {
        l.finish();
    }
    if report.files.is_empty() {
        eprintln!(
            "error: no prediction files in {}: refresh looks for <dataset>.meta.parquet files{}",
            a.workspace.display(),
            if a.recursive {
                " in it and its sub-folders"
            } else {
                " (--recursive for sub-folders)"
            }
        );
        return Ok(ExitCode::from(1));
    }
    if a.format == ListFormat::Json {
        let mut v = serde_json::to_value(&report)?;
        v["peak_rss_bytes"] = serde_json::json!(n4a::memory::peak_resident_bytes());
        println!("{v}");
    } else if a.format == ListFormat::Csv {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        w.write_record([
            "file",
            "status",
            "rows",
            "reason",
            "differences",
            "warnings",
        ])?;
        for r in &report.files {
            w.write_record([
                r.path.display().to_string(),
                format!("{:?}", r.status).to_lowercase(),
                r.rows.map(|n| n.to_string()).unwrap_or_default(),
                r.reason.clone().unwrap_or_default(),
                r.differences.join("; "),
                r.warnings.join("; "),
            ])?;
        }
        w.flush()?;
    } else {
        let mut t = Table::new(&["file", "status", "rows", "reason"]);
        for r in report
            .files
            .iter()
            .filter(|r| r.status != Status::Unchanged)
        {
            t.row(vec![
                r.path.display().to_string(),
                format!("{:?}", r.status).to_lowercase(),
                r.rows.map(|n| n.to_string()).unwrap_or_default(),
                r.reason.clone().unwrap_or_default(),
            ]);
        }
        if report.files.iter().any(|r| r.status != Status::Unchanged) {
            print!("{}", t.render());
        }
        for r in report.files.iter().filter(|r| !r.differences.is_empty()) {
            println!("\n{} differs from its rows:", r.path.display());
            r.differences.iter().for_each(|d| println!("  {d}"));
        }
        let warned: Vec<_> = report
            .files
            .iter()
            .filter(|r| !r.warnings.is_empty())
            .collect();
        if !warned.is_empty() {
            println!("\nwarnings:");
            for r in warned {
                r.warnings
                    .iter()
                    .for_each(|w| println!("  {}: {w}", r.path.display()));
            }
        }
        let verb = if opts.write {
            "refreshed"
        } else {
            "to refresh"
        };
        println!(
            "{} files: {} {verb}, {} unchanged, {} failed ({} rows recomputed in {:.2} s)",
            report.files.len(),
            report.refreshed + report.stale,
            report.unchanged,
            report.failed,
            report.rows_recomputed,
            report.seconds
        );
    }
    let checking = a.check || (a.verify && !a.fix);
    Ok(if report.failed > 0 || (checking && !report.is_clean()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
