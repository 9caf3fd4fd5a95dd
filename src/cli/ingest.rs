//! `n4a ingest`: rows from JSON Lines, CSV, Parquet or Arrow IPC appended
//! to their datasets, all or nothing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};

use n4a::ingest::InputFormat;
use n4a::writer::WriterOptions;

use super::table::Table;
use super::{parse_direction, progress, Format};

/// The `ingest` flags.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Workspace folder.
    workspace: PathBuf,
    /// Input rows (.jsonl, .csv, .parquet, or Arrow IPC: .arrow, .feather, .ipc).
    file: PathBuf,
    /// Input format (default: from the extension).
    #[arg(long, value_parser = ["jsonl", "csv", "parquet", "arrow"])]
    input_format: Option<String>,
    /// Direction of a metric not built in, as METRIC=max|min|zero (repeatable).
    #[arg(long = "direction", value_name = "METRIC=DIR")]
    directions: Vec<String>,
    /// Rows per row group.
    #[arg(long, default_value_t = 65536)]
    row_group_rows: usize,
    /// No progress line (it is drawn only when stderr is a terminal).
    #[arg(long)]
    quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs `n4a ingest`.
pub fn ingest_cmd(a: IngestArgs) -> anyhow::Result<ExitCode> {
    let IngestArgs {
        workspace,
        file,
        input_format,
        directions,
        row_group_rows,
        quiet,
        format,
    } = a;
    let mut opts = WriterOptions::default().with_row_group_rows(row_group_rows);
    for d in &directions {
        let (metric, dir) = parse_direction(d)?;
        opts = opts.with_direction(metric, dir);
    }
    let fmt = match input_format.as_deref() {
        Some("csv") => InputFormat::Csv,
        Some("parquet") => InputFormat::Parquet,
        Some("arrow" | "ipc" | "feather") => InputFormat::ArrowIpc,
        Some("jsonl") => InputFormat::JsonLines,
        Some(other) => {
            bail!("--input-format {other:?}: expected jsonl, csv, parquet or arrow")
        }
        None => InputFormat::from_path(&file),
    };
    let t0 = Instant::now();
    let line = progress::Progress::new("ingest", "rows", None, quiet);
    let ingest = if n4a::bucket::is_url(&workspace) {
        n4a::ingest::ingest_into_bucket
    } else {
        n4a::ingest::ingest_with_progress
    };
    let report = ingest(&workspace, &file, fmt, &opts, &|n| line.add(n, None))
        .with_context(|| format!("ingesting {} into {}", file.display(), workspace.display()))?;
    line.finish();
    let secs = t0.elapsed().as_secs_f64();
    if format == Format::Json {
        let v = serde_json::json!({"appended": report, "seconds": secs});
        println!("{v}");
    } else {
        let mut t = Table::new(&["dataset", "rows appended"]);
        for (ds, n) in &report {
            t.row(vec![ds.clone(), n.to_string()]);
        }
        print!("{}", t.render());
        println!("{} rows in {secs:.3} s", report.values().sum::<u64>());
    }
    Ok(ExitCode::SUCCESS)
}
