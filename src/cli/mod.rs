//! The `n4a` command line: clap arguments are parsed, converted once into
//! library options, the library is called, and the answer printed as a
//! table for people or JSON for programs. No format logic lives here.

mod progress;
mod query;
mod refresh;
mod serve;
mod table;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use n4a::generate::GenOptions;
use n4a::ingest::InputFormat;
use n4a::metric::Direction;
use n4a::reader::{footer, Workspace, WorkspaceSummary};
use n4a::summary::Summary;
use n4a::writer::WriterOptions;
use table::{num, top_table, Table};

/// n4a: columnar analytics for nirs4all prediction files.
///
/// With no command, generates a demo workspace in ./n4a-demo and prints
/// its summary.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A filtered, sorted page of predictions with the total of matches.
    Query {
        /// Workspace folder.
        workspace: PathBuf,
        #[command(flatten)]
        filters: query::FilterArgs,
        /// Sort as COLUMN or COLUMN:asc|desc (ties by id, then dataset).
        #[arg(long)]
        sort: Option<String>,
        /// Rows to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Rows to return.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Columns to return (comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = query::QueryFormat::Table)]
        format: query::QueryFormat,
    },
    /// The best K predictions by a score, in its metric's direction.
    Top {
        /// Workspace folder.
        workspace: PathBuf,
        #[command(flatten)]
        filters: query::FilterArgs,
        /// How many.
        #[arg(long, default_value_t = 10)]
        k: usize,
        #[command(flatten)]
        rank: query::RankArgs,
    },
    /// Counts and score statistics per group.
    Stats {
        /// Workspace folder.
        workspace: PathBuf,
        #[command(flatten)]
        filters: query::FilterArgs,
        /// Group by model_name, config_name, dataset, partition or fold_id.
        #[arg(long)]
        group_by: String,
        /// Only count and mean (then the footers can answer by model).
        #[arg(long)]
        count_mean_only: bool,
        #[command(flatten)]
        rank: query::RankArgs,
    },
    /// Generate a seeded synthetic workspace.
    Gen {
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
    },
    /// Append rows from a JSON Lines, CSV, parquet or Arrow IPC file to their datasets.
    Ingest {
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
    },
    /// Backfill, verify and repair the summaries of a workspace's files
    /// (rewrites only footers; row data is copied byte for byte).
    Refresh(refresh::RefreshArgs),
    /// Serve workspaces to the nirs4all dashboard over HTTP/JSON (read-only).
    Serve(serve::ServeArgs),
    /// Load-test a running `n4a serve`: cold first requests, then a mix of
    /// summaries and data pages; latencies, throughput, errors, memory.
    BenchServe(serve::BenchServeArgs),
    /// Summarise a workspace from its footers alone (no row is read).
    Summary {
        /// Workspace folder (default: the current folder).
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
    },
    /// Time workspace summaries on a real workspace: median and spread of
    /// cold (new reader, empty cache) and warm (cached) answers.
    BenchSummary {
        /// Workspace folder.
        workspace: PathBuf,
        /// Runs of each kind.
        #[arg(long, default_value_t = 10)]
        iterations: usize,
        /// Footer-reading threads (1 = sequential, 0 = one per CPU).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Show a prediction file's schema, row groups and decoded summary.
    Inspect {
        /// A .meta.parquet (or any parquet) file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// Parses the process arguments and runs the command.
///
/// # Errors
/// Whatever the library returns, with context naming the step.
pub fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    match args.command {
        None => demo(),
        Some(Command::Gen {
            out,
            datasets,
            rows,
            seed,
            no_arrays,
            row_group_rows,
            quiet,
            format,
        }) => {
            let opts = GenOptions {
                datasets,
                rows,
                seed,
                arrays: !no_arrays,
                writer: WriterOptions::default().with_row_group_rows(row_group_rows),
            };
            gen_cmd(&out, &opts, format, quiet)
        }
        Some(Command::Ingest {
            workspace,
            file,
            input_format,
            directions,
            row_group_rows,
            quiet,
            format,
        }) => {
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
            let report = n4a::ingest::ingest_with_progress(&workspace, &file, fmt, &opts, &|n| {
                line.add(n, None)
            })
            .with_context(|| {
                format!("ingesting {} into {}", file.display(), workspace.display())
            })?;
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
        Some(Command::Inspect { file, format }) => inspect(&file, format),
        Some(Command::Refresh(a)) => refresh::refresh_cmd(a),
        Some(Command::Serve(a)) => serve::serve_cmd(a),
        Some(Command::BenchServe(a)) => serve::bench_serve_cmd(a),
        Some(Command::Query {
            workspace,
            filters,
            sort,
            offset,
            limit,
            columns,
            format,
        }) => query::page_cmd(workspace, filters, sort, offset, limit, columns, format),
        Some(Command::Top {
            workspace,
            filters,
            k,
            rank,
        }) => query::top_cmd(workspace, filters, k, rank),
        Some(Command::Stats {
            workspace,
            filters,
            group_by,
            count_mean_only,
            rank,
        }) => query::stats_cmd(workspace, filters, group_by, count_mean_only, rank),
        Some(Command::BenchSummary {
            workspace,
            iterations,
            threads,
        }) => {
            let time = |f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<Vec<f64>> {
                (0..iterations.max(1))
                    .map(|_| {
                        let t0 = Instant::now();
                        f()?;
                        Ok(t0.elapsed().as_secs_f64() * 1e3)
                    })
                    .collect()
            };
            let cold = time(&|| {
                Workspace::open(&workspace)?
                    .with_threads(threads)
                    .summary()?;
                Ok(())
            })?;
            let warm_ws = Workspace::open(&workspace)?.with_threads(threads);
            let files = warm_ws.summary()?.total_datasets;
            let warm = time(&|| {
                warm_ws.summary()?;
                Ok(())
            })?;
            let stats = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                (v[v.len() / 2], v[0], v[v.len() - 1])
            };
            let (cm, c0, c1) = stats(cold);
            let (wm, w0, w1) = stats(warm);
            println!(
                "{files} files, {} threads, {iterations} runs each",
                warm_ws.threads()
            );
            println!("cold summary: median {cm:.2} ms (min {c0:.2}, max {c1:.2})");
            println!("warm summary: median {wm:.2} ms (min {w0:.2}, max {w1:.2})");
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Summary {
            workspace,
            recursive,
            threads,
            format,
        }) => {
            let dir = workspace.unwrap_or_else(|| PathBuf::from("."));
            let ws = Workspace::open(&dir)?
                .with_recursive(recursive)
                .with_threads(threads)
                .with_cache(false);
            let s = ws
                .summary()
                .with_context(|| format!("summarising {}", dir.display()))?;
            if format == Format::Json {
                let mut out = raw_stdout()?;
                s.write_json(&mut out, n4a::reader::merge::Form::Full)?;
                out.write_all(b"\n")?;
                out.flush()?;
            } else {
                print!("{}", workspace_text(&s));
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
    }
}

/// Standard output without the line buffering of `std::io::Stdout`
/// (which scans every write for a newline): its descriptor duplicated into
/// a `File` behind a 32 KiB buffer (slices larger than that, the relayed
/// summaries, go to the descriptor without a copy), for answers of tens of
/// MB.
fn raw_stdout() -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    use std::os::fd::AsFd;
    let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
    Ok(std::io::BufWriter::with_capacity(
        32 << 10,
        std::fs::File::from(fd),
    ))
}

fn parse_direction(s: &str) -> anyhow::Result<(String, Direction)> {
    let Some((metric, dir)) = s.split_once('=') else {
        bail!("--direction {s:?}: expected METRIC=max|min|zero");
    };
    let Some(d) = Direction::parse(dir) else {
        bail!("--direction {s:?}: {dir:?} is not max, min or zero");
    };
    Ok((metric.to_string(), d))
}

fn demo() -> anyhow::Result<ExitCode> {
    let out = Path::new("n4a-demo");
    println!(
        "n4a demo: generating a workspace in {}/ (4 datasets x 2,000 rows, seed 42)\n",
        out.display()
    );
    gen_cmd(out, &GenOptions::default(), Format::Table, false)
}

fn gen_cmd(out: &Path, opts: &GenOptions, format: Format, quiet: bool) -> anyhow::Result<ExitCode> {
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

fn summary_text(s: &Summary) -> String {
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
    let mut t = Table::new(&["model", "count", "avg val"]);
    for m in &s.facets.models {
        t.row(vec![
            m.name.clone().unwrap_or_default(),
            m.count.to_string(),
            num(m.avg_val_score),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
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
        let best = file_best(d);
        let version = d.info.summary.as_ref().map_or("", |s| s.version.as_str());
        t.row(vec![
            d.dataset.clone(),
            d.num_rows().to_string(),
            format!("{version} {}", d.kind()).trim().to_string(),
            best.metric,
            best.direction,
            best.value,
            best.model,
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    let mut t = Table::new(&["model", "count", "avg val"]);
    for m in &s.models {
        t.row(vec![
            m.name.clone().unwrap_or_default(),
            m.count.to_string(),
            num(m.avg_val_score),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
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

/// One dataset row of the workspace table.
struct FileBest {
    metric: String,
    direction: String,
    value: String,
    model: String,
}

/// A file's metric and best prediction as its footer tells them: from the
/// state, from a nirs4all 1.0 summary only where its maximum is the best.
fn file_best(d: &n4a::reader::merge::DatasetEntry) -> FileBest {
    use n4a::reader::info::Content;
    let mut b = FileBest {
        metric: String::new(),
        direction: String::new(),
        value: String::new(),
        model: String::new(),
    };
    let Some(fs) = &d.info.summary else {
        b.value = "(no summary)".into();
        return b;
    };
    let top = match &fs.content {
        Content::State(src) => src.head().ok().and_then(|head| {
            head.primary_metric().map(|(m, dir)| {
                b.metric = m.to_string();
                b.direction = dir.as_str().to_string();
                head.top_of_metric(m).into_iter().next()
            })
        }),
        Content::Legacy { ranking, .. } => {
            b.metric = ranking.metric.clone().unwrap_or_else(|| "?".into());
            b.direction = ranking
                .direction
                .map_or("?".to_string(), |d| d.as_str().to_string());
            if ranking.stored_bests_hold() {
                Some(
                    d.summary()
                        .ok()
                        .and_then(|s| s.top_predictions.into_iter().next()),
                )
            } else {
                b.value = "(1.0: max only)".into();
                None
            }
        }
    };
    if let Some(Some(e)) = top {
        b.value = num(e.val_score);
        b.model = e.model_name.unwrap_or_default();
    }
    b
}

fn inspect(file: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let (_, meta) = footer::open_metadata(file)?;
    let fm = meta.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
            .with_context(|| format!("{}: reading the Arrow schema", file.display()))?;
    let summary = footer::decode_summary(file, &meta);
    let groups: Vec<(usize, i64, i64, i64)> = meta
        .row_groups()
        .iter()
        .enumerate()
        .map(|(i, rg)| (i, rg.num_rows(), rg.compressed_size(), rg.total_byte_size()))
        .collect();
    if format == Format::Json {
        let (summary_json, err) = match &summary {
            Ok(s) => (serde_json::to_value(s)?, None),
            Err(e) => (serde_json::Value::Null, Some(e.to_string())),
        };
        let v = serde_json::json!({
            "path": file,
            "num_rows": fm.num_rows(),
            "created_by": fm.created_by(),
            "columns": schema.fields().iter().map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()})).collect::<Vec<_>>(),
            "row_groups": groups.iter().map(|(i, n, c, u)| serde_json::json!({"index": i, "rows": n, "compressed_bytes": c, "uncompressed_bytes": u})).collect::<Vec<_>>(),
            "has_summary": matches!(summary, Ok(Some(_))),
            "summary": summary_json,
            "summary_error": err,
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} rows, {} row groups, created by {}",
        file.display(),
        fm.num_rows(),
        groups.len(),
        fm.created_by().unwrap_or("?")
    );
    let mut t = Table::new(&["#", "column", "type"]);
    for (i, f) in schema.fields().iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            f.name().clone(),
            f.data_type().to_string(),
        ]);
    }
    println!();
    print!("{}", t.render());
    let mut t = Table::new(&["row group", "rows", "compressed", "uncompressed"]);
    for (i, n, c, u) in &groups {
        t.row(vec![
            i.to_string(),
            n.to_string(),
            c.to_string(),
            u.to_string(),
        ]);
    }
    println!();
    print!("{}", t.render());
    println!();
    match summary {
        Ok(Some(s)) => print!("{}", summary_text(&s)),
        Ok(None) => println!("no n4a_summary (written before summaries existed)"),
        Err(e) => {
            println!("summary error: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
