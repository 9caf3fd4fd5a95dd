//! `n4a refresh`: argument handling, the progress line and the report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use n4a::refresh::{refresh_workspace, Mode, RefreshOptions, Status};
use n4a::summary::SummaryOptions;

use super::table::Table;
use super::{parse_direction, Format};

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
    /// Say what would be done; write nothing.
    #[arg(long)]
    dry_run: bool,
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
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs `n4a refresh`. Exit code 0 when every file is current at the end,
/// 1 when any failed or still needs a refresh (dry run, verify without fix).
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
        write: !a.dry_run && (!a.verify || a.fix),
        threads: a.threads,
        recursive: a.recursive,
        summary,
        before_commit: None,
    };
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
    if a.format == Format::Json {
        let mut v = serde_json::to_value(&report)?;
        v["peak_rss_bytes"] = serde_json::json!(n4a::memory::peak_resident_bytes());
        println!("{v}");
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
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
