//! `n4a summary` and the text of summaries: a workspace's from its footers
//! alone, and one file's (shared with `gen` and `inspect`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use n4a::summary::Summary;
use n4a::workspace::WorkspaceSummary;

use super::table::{models_table, num, top_table, Table};
use super::{raw_stdout, ListFormat};

/// The `summary` flags.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// Workspace folder (default: the current folder): `.meta.parquet`
    /// files, or a nirs4all `store.sqlite` workspace.
    workspace: Option<PathBuf>,
    /// Also find files in sub-folders.
    #[arg(long)]
    recursive: bool,
    /// Footer-reading threads (1 = sequential, 0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Output format (CSV: one row per dataset).
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    /// Neither read nor write the footer cache on disk (kept under
    /// `N4A_CACHE_DIR`, else `$XDG_CACHE_HOME/n4a`, else `~/.cache/n4a`,
    /// for workspaces of 64 files or more): every footer is read from
    /// its file.
    #[arg(long)]
    no_cache: bool,
}

/// Runs `n4a summary`: exit 1 when a file could not be read (the good
/// ones are still summarised).
pub fn summary_cmd(a: SummaryArgs) -> anyhow::Result<ExitCode> {
    let SummaryArgs {
        workspace,
        recursive,
        threads,
        format,
        no_cache,
    } = a;
    let dir = workspace.unwrap_or_else(|| PathBuf::from("."));
    if let Some(code) = super::not_a_folder(&dir) {
        return Ok(code);
    }
    n4a::memory::keep_freed_memory();
    let ws = super::store::open(&dir)?
        .with_recursive(recursive)
        .with_threads(threads)
        .with_cache(false)
        .with_disk_cache((!no_cache).then(n4a::files::cache_root));
    let mut s = std::sync::Arc::unwrap_or_clone(
        ws.summary()
            .with_context(|| format!("summarising {}", dir.display()))?,
    );
    if s.total_datasets == 0 && s.errors.is_empty() {
        if let Some(code) = super::no_predictions(&ws, &dir)? {
            return Ok(code);
        }
    }
    // A store's summary names the store, not its mirror.
    s.workspace = dir;
    match format {
        ListFormat::Json => {
            let mut out = raw_stdout()?;
            s.write_json(&mut out, n4a::workspace::merge::Form::Full)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        ListFormat::Csv => datasets_csv(&s, std::io::stdout().lock())?,
        ListFormat::Table => print!("{}", workspace_text(&s)),
    }
    let code = if s.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    // The process ends here: freeing every file's footer one by one
    // (a few ms for thousands of files) is left to the OS.
    std::mem::forget((s, ws));
    Ok(code)
}

/// One file's summary as tables.
pub fn summary_text(s: &Summary) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "n4a_version {}  dataset {}  predictions {}  generated {}\n",
        s.n4a_version,
        s.dataset_name.as_deref().unwrap_or("(several)"),
        s.total_predictions,
        s.generated_at.as_deref().unwrap_or("-")
    ));
    if let Some(r) = &s.ranking {
        out.push_str(&format!(
            "best predictions ranked by {} ({})\n",
            r.metric,
            r.direction.in_words()
        ));
    }
    let mut t = Table::new(&[
        "score",
        "count",
        "min",
        "max",
        "mean",
        "std",
        "q25",
        "q50",
        "q75",
        "quartiles",
    ]);
    for (name, st) in [
        ("val", &s.stats.val_score),
        ("test", &s.stats.test_score),
        ("train", &s.stats.train_score),
    ] {
        if let Some(st) = st {
            let q = |i: usize| num(st.quartiles.get(i).copied().flatten());
            t.row(vec![
                name.to_string(),
                st.count.map_or("-".to_string(), |c| c.to_string()),
                num(st.min),
                num(st.max),
                num(st.mean),
                num(st.std),
                q(0),
                q(1),
                q(2),
                st.quartiles_method
                    .clone()
                    .unwrap_or_else(|| "exact".to_string()),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&t.render());
    out.push('\n');
    out.push_str(&models_table(&s.facets.models));
    let f = &s.facets;
    let names = |v: &[n4a::summary::NameCount]| {
        v.iter()
            .map(|p| format!("{}={}", p.name.as_deref().unwrap_or("null"), p.count))
            .collect::<Vec<_>>()
            .join(" ")
    };
    out.push_str(&format!(
        "\npartitions {}  task types {}\nfolds {}  configs {}  pipelines {}\n",
        names(&f.partitions),
        names(&f.task_types),
        f.folds
            .iter()
            .map(|x| x.as_deref().unwrap_or("null"))
            .collect::<Vec<_>>()
            .join(","),
        f.n_configs,
        f.n_pipelines
    ));
    out.push('\n');
    out.push_str(&top_table(
        &s.top_predictions,
        usize::MAX,
        s.dataset_name.as_deref(),
    ));
    out
}

/// The datasets as CSV: one row per file, what its footer says.
fn datasets_csv(s: &WorkspaceSummary, out: impl Write) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "dataset",
        "path",
        "predictions",
        "summary",
        "metric",
        "direction",
        "best_val_score",
        "best_model",
    ])?;
    for d in &s.datasets {
        let b = d.best();
        w.write_record([
            d.dataset.clone(),
            d.path.display().to_string(),
            d.num_rows().to_string(),
            summary_kind(d).to_string(),
            b.metric.clone().unwrap_or_default(),
            b.direction
                .map(|x| x.as_str().to_string())
                .unwrap_or_default(),
            b.best
                .as_ref()
                .and_then(|e| e.val_score)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            b.best.and_then(|e| e.model_name).unwrap_or_default(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// What kind of summary a file's footer holds, in words.
fn summary_kind(d: &n4a::workspace::merge::DatasetEntry) -> &'static str {
    match (d.kind(), d.version()) {
        ("none", _) => "none",
        ("no state", Some("1.0")) => "nirs4all's",
        ("no state", _) => "without n4a state",
        _ => "n4a",
    }
}

/// The workspace for people: its datasets, the best model instances of
/// each metric (by its own direction), the models and the runs.
pub(super) fn workspace_text(s: &WorkspaceSummary) -> String {
    let mut out = format!(
        "Workspace {}: {} predictions in {} datasets",
        s.workspace.display(),
        s.total_predictions,
        s.total_datasets,
    );
    if !s.errors.is_empty() {
        out.push_str(&format!(
            " ({} files could not be read: see the end)",
            s.errors.len()
        ));
    }
    out.push('\n');
    let mut t = Table::new(&[
        "dataset",
        "predictions",
        "summary",
        "metric",
        "better when",
        "best val",
        "best model",
    ]);
    for d in &s.datasets {
        let [metric, direction, value, model] = file_best(d);
        t.row(vec![
            d.dataset.clone(),
            d.num_rows().to_string(),
            summary_kind(d).to_string(),
            metric,
            direction,
            value,
            model,
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    for (metric, top) in &s.top_by_metric {
        out.push_str(&format!(
            "\nBest model instances by {metric} ({}):\n",
            top.direction.in_words()
        ));
        out.push_str(&top_table(&top.predictions, 5, None));
    }
    let per_metric: Vec<&n4a::summary::MetricSummary> =
        s.metrics.iter().filter(|m| !m.models.is_empty()).collect();
    if per_metric.is_empty() {
        out.push_str("\nModels:\n");
        out.push_str(&models_table(&s.models));
    } else {
        for m in per_metric {
            out.push_str(&format!("\nModels scored by {}:\n", m.name));
            out.push_str(&models_table(&m.models));
        }
    }
    let runs = s.runs_once();
    if !runs.is_empty() {
        const SHOWN: usize = 20;
        out.push_str(&format!("\nRuns ({} configs", runs.len()));
        if runs.len() > SHOWN {
            out.push_str(&format!(
                ", the first {SHOWN} shown; --format json lists them all"
            ));
        }
        out.push_str("):\n");
        let mut t = Table::new(&[
            "config",
            "predictions",
            "datasets",
            "metric",
            "best val",
            "best test",
        ]);
        for r in runs.iter().take(SHOWN) {
            t.row(vec![
                r.name.clone().or_else(|| r.id.clone()).unwrap_or_default(),
                r.n_predictions.to_string(),
                r.datasets.join(", "),
                r.metric.clone().unwrap_or_else(|| "(several)".into()),
                num(r.best_val_score),
                num(r.best_test_score),
            ]);
        }
        out.push_str(&t.render());
    }
    if !s.exactness.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in &s.exactness.notes {
            out.push_str(&format!("  {n}\n"));
        }
    }
    if !s.errors.is_empty() {
        out.push_str("\nFiles that could not be read:\n");
        for e in &s.errors {
            out.push_str(&format!("  [{}] {}\n", e.kind, e.error));
        }
    }
    out
}

/// One dataset row of the workspace table: metric, its direction in
/// words, best value and model; where the footer cannot tell, why.
fn file_best(d: &n4a::workspace::merge::DatasetEntry) -> [String; 4] {
    let b = d.best();
    // Where the footer cannot tell the best, the model column says why
    // (the value column stays numbers).
    let (value, model) = match (&b.best, b.missing) {
        (Some(e), _) => (num(e.val_score), e.model_name.clone().unwrap_or_default()),
        (None, Some("no summary")) => {
            ("-".to_string(), "(no summary: run n4a refresh)".to_string())
        }
        (None, Some(_)) => (
            "-".to_string(),
            "(nirs4all kept its worst: run n4a refresh)".to_string(),
        ),
        (None, None) => ("-".to_string(), String::new()),
    };
    [
        b.metric.unwrap_or_else(|| "-".to_string()),
        b.direction.map_or_else(
            || "-".to_string(),
            |d| d.in_words().trim_end_matches(" is better").to_string(),
        ),
        value,
        model,
    ]
}
