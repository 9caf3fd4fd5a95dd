//! `n4a refresh`: argument handling, the progress line and the report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use n4a::refresh::{refresh_workspace, FileReport, Mode, RefreshOptions, Status};
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
    /// Never draw the progress line (it is drawn only when stderr is a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// A one-line progress bar on stderr, redrawn at most ten times a second.
struct Progress {
    enabled: bool,
    state: Mutex<(usize, usize, usize, Instant)>,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            state: Mutex::new((0, 0, 0, Instant::now() - Duration::from_secs(1))),
        }
    }

    fn tick(&self, r: &FileReport, total: usize) {
        if !self.enabled {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        s.1 += usize::from(r.status == Status::Refreshed);
        s.2 += usize::from(r.status == Status::Failed);
        if s.0 < total && s.3.elapsed() < Duration::from_millis(100) {
            return;
        }
        s.3 = Instant::now();
        let width = 30;
        let filled = s.0 * width / total.max(1);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Krefresh [{}{}] {}/{total} files, {} refreshed, {} failed",
            "#".repeat(filled),
            ".".repeat(width - filled),
            s.0,
            s.1,
            s.2
        );
        let _ = err.flush();
    }

    fn done(&self) {
        if self.enabled {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
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
    let progress = Progress::new(!a.no_progress && std::io::stderr().is_terminal());
    let report = refresh_workspace(&a.workspace, &opts, &|r, total| progress.tick(r, total))
        .with_context(|| format!("refreshing {}", a.workspace.display()))?;
    progress.done();
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
