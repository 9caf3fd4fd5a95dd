//! The `n4a` command line: clap arguments are parsed, converted once into
//! library options, the library is called, and the answer printed as a
//! table for people or JSON for programs. No format logic lives here.

mod gen;
mod ingest;
mod inspect;
mod progress;
mod query;
mod refresh;
mod serve;
mod store;
mod summary;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};

use n4a::metric::Direction;

/// n4a: columnar analytics for nirs4all prediction files.
///
/// With no command, generates a demo workspace in ./n4a-demo and prints
/// its summary.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bucket: BucketArgs,
}

/// How a workspace given as a bucket URL (`s3://bucket/prefix`, and
/// through the same crate, untested, `gs://`, `az://`) is reached.
/// Credentials come from the usual environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, ...).
#[derive(Debug, clap::Args)]
struct BucketArgs {
    /// An S3-compatible endpoint (else `AWS_ENDPOINT_URL`, else AWS).
    #[arg(long, global = true)]
    endpoint: Option<String>,
    /// Bucket requests in flight at once.
    #[arg(long, global = true, default_value_t = 64)]
    requests: usize,
    /// Retries of a failed bucket request (throttling, timeouts, resets),
    /// with backoff.
    #[arg(long, global = true, default_value_t = 5)]
    retries: usize,
    /// Seconds a bucket listing answers for (a server's asks within them
    /// make no LIST request; a writer's new files are seen after at most
    /// this); 0 lists on every ask.
    #[arg(long, global = true, default_value_t = 2.0)]
    relist: f64,
    /// A setting of the bucket client as KEY=VALUE, over the environment's
    /// (object_store's config keys: aws_region, aws_session_token, ...;
    /// repeatable).
    #[arg(long = "bucket-option", global = true, value_name = "KEY=VALUE")]
    bucket_options: Vec<String>,
}

/// Output of a report (one answer): a table for people, JSON for programs.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

/// Output of a listing command (`query`, `top`, `stats`, `summary`,
/// `refresh`): a table for people, JSON or CSV for programs.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum ListFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A filtered, sorted page of predictions with the total of matches.
    Query {
        /// Workspace folder (`.meta.parquet` files, or a nirs4all `store.sqlite` workspace).
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
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// The best K predictions by a score, in its metric's direction.
    Top {
        /// Workspace folder (`.meta.parquet` files, or a nirs4all `store.sqlite` workspace).
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
        /// Workspace folder (`.meta.parquet` files, or a nirs4all `store.sqlite` workspace).
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
    Gen(gen::GenArgs),
    /// Append rows from a JSON Lines, CSV, parquet or Arrow IPC file to their datasets.
    Ingest(ingest::IngestArgs),
    /// Backfill, verify and repair the summaries of a workspace's files
    /// (rewrites only footers; row data is copied byte for byte).
    Refresh(refresh::RefreshArgs),
    /// Serve workspaces to the nirs4all dashboard over HTTP/JSON (read-only).
    Serve(serve::ServeArgs),
    /// Summarise a workspace from its footers alone (no row is read).
    Summary(summary::SummaryArgs),
    /// Show a prediction file's schema, row groups and decoded summary.
    Inspect(inspect::InspectArgs),
    /// Copy a nirs4all store workspace (store.sqlite + arrays/) into
    /// .meta.parquet pairs with n4a's summaries; a rerun rewrites only the
    /// datasets that changed.
    ImportStore(store::ImportStoreArgs),
    /// Write a .meta.parquet workspace as a new nirs4all store workspace
    /// (store.sqlite + arrays/) that nirs4all 1.4.10 opens; never in place,
    /// nothing left on failure.
    ExportStore(store::ExportStoreArgs),
    /// Brings a store's mirror up to date (what a command answering a
    /// store in place starts in a detached process).
    #[command(name = "__mirror-store", hide = true)]
    MirrorStore {
        /// The store workspace.
        store: std::path::PathBuf,
        /// The mirror root.
        root: std::path::PathBuf,
    },
}

/// Parses the process arguments and runs the command.
///
/// # Errors
/// Whatever the library returns, with context naming the step.
pub fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let mut options = Vec::new();
    for o in &args.bucket.bucket_options {
        let Some((k, v)) = o.split_once('=') else {
            bail!("--bucket-option {o:?}: expected KEY=VALUE");
        };
        options.push((k.to_string(), v.to_string()));
    }
    n4a::bucket::configure(n4a::bucket::BucketOptions {
        endpoint: args.bucket.endpoint.clone(),
        requests: args.bucket.requests,
        retries: args.bucket.retries,
        relist: std::time::Duration::from_secs_f64(args.bucket.relist.max(0.0)),
        options,
        ..Default::default()
    });
    match args.command {
        None => gen::demo(),
        Some(Command::Gen(a)) => gen::gen_cmd(a),
        Some(Command::Ingest(a)) => ingest::ingest_cmd(a),
        Some(Command::Inspect(a)) => inspect::inspect_cmd(a),
        Some(Command::Summary(a)) => summary::summary_cmd(a),
        Some(Command::Refresh(a)) => refresh::refresh_cmd(a),
        Some(Command::Serve(a)) => serve::serve_cmd(a),
        Some(Command::ImportStore(a)) => store::import_store_cmd(a),
        Some(Command::ExportStore(a)) => store::export_store_cmd(a),
        Some(Command::MirrorStore { store, root }) => store::mirror_store_cmd(&store, &root),
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

/// A path that is not a folder: says what was looked for, on standard
/// error, and gives exit code 1 (as for a folder without predictions).
fn not_a_folder(asked: &std::path::Path) -> Option<ExitCode> {
    if asked.is_dir() || n4a::bucket::is_url(asked) {
        return None;
    }
    eprintln!(
        "error: {} is not a folder: a workspace is a folder of <dataset>.meta.parquet files, \
         a nirs4all store workspace (store.sqlite) or a bucket URL (s3://bucket/prefix)",
        asked.display()
    );
    Some(ExitCode::from(1))
}

/// A folder with no prediction file in it (nor a nirs4all store): says
/// what was looked for, on standard error, and gives exit code 1.
fn no_predictions(
    ws: &n4a::Workspace,
    asked: &std::path::Path,
) -> anyhow::Result<Option<ExitCode>> {
    if ws.has_predictions()? {
        return Ok(None);
    }
    eprintln!(
        "error: no predictions in {}: looked for <dataset>.meta.parquet files (a nirs4all \
         workspace of the .meta.parquet era) and for store.sqlite (a nirs4all store workspace)",
        asked.display()
    );
    Ok(Some(ExitCode::from(1)))
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
