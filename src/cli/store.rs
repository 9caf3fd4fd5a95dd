//! nirs4all store workspaces on the command line: `n4a import-store`, and
//! the mirror through which `summary`, `query`, `top`, `stats` and `serve`
//! read a `store.sqlite` workspace.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use n4a::store::{ExportOptions, ImportOptions, ImportReport, Outcome};
use n4a::writer::WriterOptions;

use super::table::Table;
use super::{parse_direction, Format};

/// The `import-store` flags.
#[derive(Debug, clap::Args)]
pub struct ImportStoreArgs {
    /// The nirs4all workspace holding `store.sqlite` and `arrays/`.
    store: PathBuf,
    /// The folder to write the `.meta.parquet` pairs into (not the store's).
    out: PathBuf,
    /// Direction of a metric not built in, as METRIC=max|min|zero (repeatable).
    #[arg(long = "direction", value_name = "METRIC=DIR")]
    directions: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Import options from `--direction` flags.
pub(super) fn import_options(directions: &[String]) -> anyhow::Result<ImportOptions> {
    let mut writer = WriterOptions::default();
    for d in directions {
        let (metric, dir) = parse_direction(d)?;
        writer = writer.with_direction(metric, dir);
    }
    Ok(ImportOptions { writer })
}

/// Runs `n4a import-store`: exit 1 when a dataset could not be imported
/// (the others are).
pub fn import_store_cmd(a: ImportStoreArgs) -> anyhow::Result<ExitCode> {
    let opts = import_options(&a.directions)?;
    let t0 = Instant::now();
    let report = n4a::store::import_store(&a.store, &a.out, &opts)
        .with_context(|| format!("importing {}", a.store.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    if a.format == Format::Json {
        let v = serde_json::json!({
            "store": report.store,
            "out": report.out,
            "datasets": report.datasets,
            "removed": report.removed,
            "notes": report.notes,
            "errors": report.errors.iter().map(|(d, e)| serde_json::json!({
                "dataset": d, "kind": e.kind(), "error": e.to_string(),
            })).collect::<Vec<_>>(),
            "seconds": secs,
        });
        println!("{v}");
    } else {
        let mut t = Table::new(&["dataset", "predictions", "with arrays", "copy"]);
        for d in &report.datasets {
            t.row(vec![
                d.dataset.clone(),
                d.predictions.to_string(),
                match d.outcome {
                    Outcome::Written => d.with_arrays.to_string(),
                    Outcome::Unchanged => "-".into(),
                },
                match d.outcome {
                    Outcome::Written => "written".into(),
                    Outcome::Unchanged => "unchanged".into(),
                },
            ]);
        }
        print!("{}", t.render());
        for r in &report.removed {
            println!("{r}: removed (no longer in the store)");
        }
        println!(
            "{} datasets from {} into {} in {secs:.3} s",
            report.datasets.len(),
            report.store.display(),
            report.out.display()
        );
    }
    print_notes(&report);
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The `export-store` flags.
#[derive(Debug, clap::Args)]
pub struct ExportStoreArgs {
    /// The `.meta.parquet` workspace to export (nirs4all's files or n4a's).
    workspace: PathBuf,
    /// The new store workspace to write (must not exist, or be empty).
    out: PathBuf,
    /// Direction of a metric not built in, as METRIC=max|min|zero (repeatable).
    #[arg(long = "direction", value_name = "METRIC=DIR")]
    directions: Vec<String>,
    /// Export the readable datasets when some cannot be read (listed on
    /// stderr, exit 1); by default one bad file fails the export.
    #[arg(long)]
    skip_bad: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs `n4a export-store`: exit 1 when a dataset was skipped.
pub fn export_store_cmd(a: ExportStoreArgs) -> anyhow::Result<ExitCode> {
    let mut opts = ExportOptions {
        skip_bad: a.skip_bad,
        ..ExportOptions::default()
    };
    for d in &a.directions {
        let (metric, dir) = parse_direction(d)?;
        opts.directions = opts.directions.with(metric, dir);
    }
    let t0 = Instant::now();
    let report = n4a::store::export_store(&a.workspace, &a.out, &opts)
        .with_context(|| format!("exporting {}", a.workspace.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    let skipped: Vec<_> = report
        .skipped
        .iter()
        .map(|(d, e)| serde_json::json!({"dataset": d, "kind": e.kind(), "error": e.to_string()}))
        .collect();
    if a.format == Format::Json {
        let v = serde_json::json!({
            "source": report.source,
            "out": report.out,
            "run_id": report.run_id,
            "datasets": report.datasets,
            "pipelines": report.pipelines,
            "chains": report.chains,
            "derivations": n4a::store::export::DERIVATIONS,
            "skipped": skipped,
            "seconds": secs,
        });
        println!("{v}");
    } else {
        let mut t = Table::new(&["dataset", "predictions", "with arrays", "arrays file"]);
        for d in &report.datasets {
            t.row(vec![
                d.dataset.clone(),
                d.predictions.to_string(),
                d.with_arrays.to_string(),
                d.arrays_file.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        print!("{}", t.render());
        println!(
            "{} datasets, {} pipelines, {} chains from {} into {} in {secs:.3} s",
            report.datasets.len(),
            report.pipelines,
            report.chains,
            report.source.display(),
            report.out.display()
        );
        for d in n4a::store::export::DERIVATIONS {
            println!("derived: {d}");
        }
    }
    for d in &report.datasets {
        for n in &d.notes {
            eprintln!("note: {}: {n}", d.dataset);
        }
    }
    for (d, e) in &report.skipped {
        eprintln!("error: dataset {d} skipped: {e}");
    }
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The notes and errors of an import, on stderr, one line each.
fn print_notes(r: &ImportReport) {
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    for d in &r.datasets {
        for n in &d.notes {
            eprintln!("note: {}: {n}", d.dataset);
        }
    }
    for (d, e) in &r.errors {
        eprintln!("error: dataset {d}: {e}");
    }
}

/// Opens the workspace at `path` for a one-shot command: a folder, or a
/// nirs4all store, answered from its mirror when that is fresh, else in
/// place while a detached `n4a __mirror-store` brings the mirror up to
/// date for the commands after it (a dataset that cannot be read is among
/// the answer's errors, the others are answered, and the command exits 1
/// as for any unreadable file).
pub(super) fn open(path: &Path) -> anyhow::Result<n4a::Workspace> {
    let mut ws = n4a::Workspace::open(path)?;
    if std::env::var_os("N4A_STORE_MIRROR").is_some_and(|v| v == "off") {
        ws = ws.with_mirror_update(n4a::workspace::MirrorUpdate::Never);
    } else if let Ok(exe) = std::env::current_exe() {
        ws = ws.with_mirror_update(n4a::workspace::MirrorUpdate::Detached(exe));
    }
    let synced = ws
        .sync()
        .with_context(|| format!("reading the store {}", path.display()))?;
    for n in &synced.notes {
        eprintln!("note: {n}");
    }
    Ok(ws)
}

/// `n4a __mirror-store STORE ROOT`: brings the store's mirror under `ROOT`
/// up to date, unless another process already does.
pub(super) fn mirror_store_cmd(store: &Path, root: &Path) -> anyhow::Result<ExitCode> {
    let m = n4a::store::Mirror::new(store, root)?;
    m.sync_if_free(&n4a::store::ImportOptions::default())?;
    Ok(ExitCode::SUCCESS)
}
