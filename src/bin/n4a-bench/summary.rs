//! `n4a-bench summary`: median and spread of cold (new reader, empty
//! cache) and warm (cached) workspace summaries, in-process.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use n4a::Workspace;

/// The `summary` flags.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// Workspace folder.
    workspace: PathBuf,
    /// Runs of each kind.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Footer-reading threads (1 = sequential, 0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Times `iterations` cold summaries (each on a new `Workspace`) and as
/// many warm ones (one `Workspace`, its cache full), and prints median,
/// minimum and maximum of each in milliseconds.
pub fn summary_cmd(a: SummaryArgs) -> anyhow::Result<ExitCode> {
    let time = |f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<Vec<f64>> {
        (0..a.iterations.max(1))
            .map(|_| {
                let t0 = Instant::now();
                f()?;
                Ok(t0.elapsed().as_secs_f64() * 1e3)
            })
            .collect()
    };
    let cold = time(&|| {
        Workspace::open(&a.workspace)?
            .with_threads(a.threads)
            .summary()?;
        Ok(())
    })?;
    let warm_ws = Workspace::open(&a.workspace)?.with_threads(a.threads);
    let files = warm_ws.summary()?.total_datasets;
    let warm = time(&|| {
        warm_ws.summary()?;
        Ok(())
    })?;
    let (cm, c0, c1) = spread(cold);
    let (wm, w0, w1) = spread(warm);
    println!(
        "{files} files, {} threads, {} runs each",
        warm_ws.threads(),
        a.iterations
    );
    println!("cold summary: median {cm:.2} ms (min {c0:.2}, max {c1:.2})");
    println!("warm summary: median {wm:.2} ms (min {w0:.2}, max {w1:.2})");
    Ok(ExitCode::SUCCESS)
}

/// Median, minimum and maximum.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}
