//! `n4a summary` and the text of summaries: a workspace's from its footers
//! alone, and one file's (shared with `gen` and `inspect`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use n4a::reader::{Workspace, WorkspaceSummary};
use n4a::summary::Summary;

use super::table::{models_table, num, top_table, Table};
use super::{raw_stdout, Format};

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
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs `n4a summary`: exit 1 when a file could not be read (the good
/// ones are still summarised).
pub fn summary_cmd(a: SummaryArgs) -> anyhow::Result<ExitCode> {
    let SummaryArgs {
        workspace,
        recursive,
        threads,
        format,
    } = a;
    let dir = workspace.unwrap_or_else(|| PathBuf::from("."));
    let read = super::store::readable(&dir)?;
    let ws = Workspace::open(&read.dir)?
        .with_recursive(recursive)
        .with_threads(threads)
        .with_cache(false);
    let mut s = std::sync::Arc::unwrap_or_clone(
        ws.summary()
            .with_context(|| format!("summarising {}", dir.display()))?,
    );
    // A store's summary names the store, not its mirror.
    s.workspace = dir;
    if format == Format::Json {
        let mut out = raw_stdout()?;
        s.write_json(&mut out, n4a::reader::merge::Form::Full)?;
        out.write_all(b"\n")?;
        out.flush()?;
    } else {
        print!("{}", workspace_text(&s));
    }
    let code = read.exit(if s.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    });
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
            "ranking: {} ({})\n",
            r.metric,
            r.direction.as_str()
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

fn workspace_text(s: &WorkspaceSummary) -> String {
    let mut out = format!(
        "workspace {}: {} datasets, {} predictions ({} merged from n4a state, {} without state, {} errors)\n",
        s.workspace.display(),
        s.total_datasets,
        s.total_predictions,
        s.merged_files,
        s.files_without_state.len(),
        s.errors.len()
    );
    let mut t = Table::new(&[
        "dataset",
        "rows",
        "summary",
        "metric",
        "direction",
        "best val",
        "best model",
    ]);
    for d in &s.datasets {
        let [metric, direction, value, model] = file_best(d);
        let version = d.version().unwrap_or("");
        t.row(vec![
            d.dataset.clone(),
            d.num_rows().to_string(),
            format!("{version} {}", d.kind()).trim().to_string(),
            metric,
            direction,
            value,
            model,
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    out.push('\n');
    out.push_str(&models_table(&s.models));
    for (metric, top) in &s.top_by_metric {
        out.push_str(&format!("\nbest {metric} ({}):\n", top.direction.as_str()));
        out.push_str(&top_table(&top.predictions, 5, None));
    }
    if !s.exactness.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &s.exactness.notes {
            out.push_str(&format!("  {n}\n"));
        }
    }
    if !s.errors.is_empty() {
        out.push_str("\nerrors:\n");
        for e in &s.errors {
            out.push_str(&format!("  [{}] {}\n", e.kind, e.error));
        }
    }
    out
}

/// One dataset row of the workspace table: metric, direction, best value
/// and model ("?" where a nirs4all 1.0 summary names none).
fn file_best(d: &n4a::reader::merge::DatasetEntry) -> [String; 4] {
    let b = d.best();
    let unknown = if d.kind() == "no state" { "?" } else { "" };
    let value = match (&b.best, b.missing) {
        (Some(e), _) => num(e.val_score),
        (None, Some(why)) => format!("({why})"),
        (None, None) => String::new(),
    };
    [
        b.metric.unwrap_or_else(|| unknown.to_string()),
        b.direction
            .map_or_else(|| unknown.to_string(), |d| d.as_str().to_string()),
        value,
        b.best.and_then(|e| e.model_name).unwrap_or_default(),
    ]
}
