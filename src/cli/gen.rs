//! `n4a gen` and the demo: a seeded synthetic workspace, then a table of
//! what was written and the first dataset's summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use n4a::generate::GenOptions;
use n4a::writer::WriterOptions;

use super::summary::summary_text;
use super::table::{num, Table};
use super::{progress, Format};

/// The `gen` flags.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Output folder (created if missing).
    out: PathBuf,
    /// Number of datasets.
    #[arg(long, default_value_t = 4)]
    datasets: usize,
    /// Rows per dataset.
    #[arg(long, default_value_t = 2000)]
    rows: usize,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Do not attach y_true/y_pred/indices arrays (for huge benchmarks).
    #[arg(long)]
    no_arrays: bool,
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

/// Runs `n4a gen`.
pub fn gen_cmd(a: GenArgs) -> anyhow::Result<ExitCode> {
    let GenArgs {
        out,
        datasets,
        rows,
        seed,
        no_arrays,
        row_group_rows,
        quiet,
        format,
    } = a;
    let opts = GenOptions {
        datasets,
        rows,
        seed,
        arrays: !no_arrays,
        writer: WriterOptions::default().with_row_group_rows(row_group_rows),
    };
    generate(&out, &opts, format, quiet)
}

/// The demo (`n4a` with no command): gen with its defaults into ./n4a-demo.
pub fn demo() -> anyhow::Result<ExitCode> {
    let out = Path::new("n4a-demo");
    println!(
        "n4a demo: a workspace of 4 datasets x 2,000 predictions (regression and classification, \
         seed 42) generated in {}/, then what n4a tells of it (`n4a summary {}`)\n",
        out.display(),
        out.display()
    );
    let made = n4a::generate::generate(out, &GenOptions::default())
        .with_context(|| format!("generating into {}", out.display()))?;
    let _ = made;
    let ws = n4a::Workspace::open(out)?.with_cache(false);
    let s = ws.summary()?;
    print!("{}", super::summary::workspace_text(&s));
    println!(
        "\nNext: n4a top {0} --k 5, n4a stats {0} --group-by model, n4a query {0} --model PLS --limit 10, \
         n4a serve {0}",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn generate(
    out: &Path,
    opts: &GenOptions,
    format: Format,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let line = progress::Progress::new(
        "gen",
        "rows",
        Some((opts.datasets * opts.rows) as u64),
        quiet,
    );
    let made = n4a::generate::generate_with_progress(out, opts, &|n| line.add(n, None))
        .with_context(|| format!("generating into {}", out.display()))?;
    line.finish();
    let secs = t0.elapsed().as_secs_f64();
    let rows: u64 = made.iter().map(|d| d.summary.total_predictions).sum();
    let peak = n4a::memory::peak_resident_bytes();
    if format == Format::Json {
        let v = serde_json::json!({
            "workspace": out,
            "datasets": made.iter().map(|d| serde_json::json!({
                "dataset": d.name, "path": d.meta_path, "summary": d.summary,
            })).collect::<Vec<_>>(),
            "rows": rows,
            "seconds": secs,
            "rows_per_second": rows as f64 / secs.max(1e-9),
            "peak_rss_bytes": peak,
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "dataset",
        "rows",
        "task",
        "metric",
        "direction",
        "best val",
        "best model",
        "configs",
    ]);
    for d in &made {
        let s = &d.summary;
        let best = s.top_predictions.first();
        t.row(vec![
            d.name.clone(),
            s.total_predictions.to_string(),
            s.facets
                .task_types
                .first()
                .and_then(|t| t.name.clone())
                .unwrap_or_default(),
            s.ranking
                .as_ref()
                .map(|r| r.metric.clone())
                .unwrap_or_default(),
            s.ranking
                .as_ref()
                .map(|r| r.direction.as_str().to_string())
                .unwrap_or_default(),
            num(best.and_then(|b| b.val_score)),
            best.and_then(|b| b.model_name.clone()).unwrap_or_default(),
            s.facets.n_configs.to_string(),
        ]);
    }
    print!("{}", t.render());
    println!(
        "\n{rows} rows in {secs:.2} s ({:.0} rows/s), peak memory {}",
        rows as f64 / secs.max(1e-9),
        peak.map_or("unknown".to_string(), |b| format!(
            "{:.1} MiB",
            b as f64 / 1048576.0
        ))
    );
    if let Some(first) = made.first() {
        println!(
            "\nSummary of {} (n4a inspect {}):\n",
            first.name,
            first.meta_path.display()
        );
        print!("{}", summary_text(&first.summary));
    }
    Ok(ExitCode::SUCCESS)
}
