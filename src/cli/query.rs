//! `n4a query`, `n4a top` and `n4a stats`: flags converted once into a
//! query, the engine called, the answer printed as a table, JSON or CSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::ValueEnum;

use n4a::metric::Direction;
use n4a::query::filter::FIELDS;
use n4a::reader::Workspace;

use super::table::{num, top_table, Table};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(super) enum QueryFormat {
    Table,
    Json,
    Csv,
}

/// Ranking and output flags shared by `top` and `stats`.
#[derive(Debug, clap::Args)]
pub(super) struct RankArgs {
    /// Force a direction (max, min, zero), e.g. to rank several metrics together.
    #[arg(long)]
    direction: Option<String>,
    /// Score column.
    #[arg(long, default_value = "val_score")]
    score: String,
    /// Output format (table or json).
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
}

impl RankArgs {
    /// The direction, checked, and the format, refused before any work
    /// when it is CSV (only `query` writes CSV).
    fn checked(&self) -> anyhow::Result<(Option<Direction>, QueryFormat)> {
        if self.format == QueryFormat::Csv {
            bail!("--format csv is for `n4a query`; use json or table");
        }
        Ok((
            self.direction.as_deref().map(parse_dir).transpose()?,
            self.format,
        ))
    }
}

/// Row filters shared by `query`, `top` and `stats`: one flag per
/// [`n4a::query::filter::FIELDS`] entry (several values each: repeat the
/// flag or separate with commas) and `--where`.
#[derive(Debug, Default)]
pub(super) struct FilterArgs {
    values: Vec<(&'static str, Vec<String>)>,
    where_: Vec<String>,
}

impl clap::FromArgMatches for FilterArgs {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut a = FilterArgs::default();
        a.update_from_arg_matches(m)?;
        Ok(a)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        let all = |id: &str| -> Vec<String> {
            m.get_many::<String>(id)
                .map(|v| v.cloned().collect())
                .unwrap_or_default()
        };
        self.values = FIELDS.iter().map(|f| (f.name, all(f.param))).collect();
        self.where_ = all("where");
        Ok(())
    }
}

impl clap::Args for FilterArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = FIELDS.iter().fold(cmd, |cmd, f| {
            cmd.arg(
                clap::Arg::new(f.param)
                    .long(f.flag)
                    .value_name("VALUE")
                    .help(f.help)
                    .value_delimiter(',')
                    .action(clap::ArgAction::Append),
            )
        });
        cmd.arg(
            clap::Arg::new("where")
                .long("where")
                .value_name("RANGES")
                .help("Score ranges, e.g. 'val_score>=0.5, test_score<1' (repeatable)")
                .action(clap::ArgAction::Append),
        )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FilterArgs {
    /// The filters of a ranking ([`n4a::query::Filters::for_ranking`]) and
    /// which rows they keep, for the header.
    fn ranking(&self) -> Result<(n4a::query::Filters, &'static str), n4a::Error> {
        Ok(n4a::query::Filters::try_from(self)?.for_ranking())
    }
}

impl TryFrom<&FilterArgs> for n4a::query::Filters {
    type Error = n4a::Error;

    fn try_from(a: &FilterArgs) -> Result<Self, Self::Error> {
        let mut f = n4a::query::Filters::default();
        for (field, vals) in &a.values {
            f = f.with(field, vals.iter().cloned())?;
        }
        for w in &a.where_ {
            f = f.with_where(w)?;
        }
        Ok(f)
    }
}

/// `n4a query`: a filtered, sorted page with its total.
pub(super) fn page_cmd(
    workspace: PathBuf,
    filters: FilterArgs,
    sort: Option<String>,
    offset: usize,
    limit: usize,
    columns: Vec<String>,
    format: QueryFormat,
) -> anyhow::Result<ExitCode> {
    let q = n4a::query::PageQuery {
        filters: (&filters).try_into()?,
        columns: (!columns.is_empty()).then_some(columns),
        sort: sort.as_deref().map(n4a::query::Sort::parse).transpose()?,
        offset,
        limit,
    };
    keep_freed_memory();
    let read = super::store::readable(&workspace)?;
    let ws = Workspace::open(&read.dir)?
        .with_cache(false)
        .with_summaries(false);
    let page = n4a::query::QueryEngine::new(&ws).page(&q)?;
    print_page(&page, &q, format)?;
    Ok(read.exit(exit_for(&page.provenance)))
}

/// `n4a top`: the best K rows by the metric's direction.
pub(super) fn top_cmd(
    workspace: PathBuf,
    filters: FilterArgs,
    k: usize,
    rank: RankArgs,
) -> anyhow::Result<ExitCode> {
    let (direction, format) = rank.checked()?;
    let (filters, rows) = filters.ranking()?;
    let q = n4a::query::TopQuery {
        filters,
        k,
        direction,
        score: rank.score,
    };
    keep_freed_memory();
    let read = super::store::readable(&workspace)?;
    let ws = Workspace::open(&read.dir)?
        .with_cache(false)
        .with_summaries(false);
    let top = n4a::query::QueryEngine::new(&ws).top(&q)?;
    match format {
        QueryFormat::Json => println!("{}", serde_json::to_string(&top)?),
        QueryFormat::Csv | QueryFormat::Table => {
            println!(
                "top {} by {} ({}) over {rows}, served by {}",
                q.k,
                q.score,
                top.direction.map_or("no rows", |d| d.as_str()),
                served(top.served_by, &top.provenance)
            );
            print!("{}", top_table(&top.records, usize::MAX, None));
            print_errors(&top.provenance);
        }
    }
    Ok(read.exit(exit_for(&top.provenance)))
}

/// `n4a stats`: counts and score statistics per group.
pub(super) fn stats_cmd(
    workspace: PathBuf,
    filters: FilterArgs,
    group_by: String,
    count_mean_only: bool,
    rank: RankArgs,
) -> anyhow::Result<ExitCode> {
    let (direction, format) = rank.checked()?;
    let (filters, rows) = filters.ranking()?;
    let q = n4a::query::GroupQuery {
        filters,
        key: n4a::query::GroupKey::parse(&group_by)?,
        score: rank.score,
        count_and_mean_only: count_mean_only,
        direction,
    };
    keep_freed_memory();
    let read = super::store::readable(&workspace)?;
    let ws = Workspace::open(&read.dir)?
        .with_cache(false)
        .with_summaries(false);
    let answers = n4a::query::QueryEngine::new(&ws).group_by_metric(&q)?;
    match format {
        QueryFormat::Json => {
            let mut out = std::io::stdout().lock();
            if let [(None, g)] = answers.as_slice() {
                out.write_all(&g.to_json(&ws))?;
            } else {
                let by: Vec<serde_json::Value> = answers
                    .iter()
                    .map(|(m, g)| {
                        let mut v = serde_json::to_value(g).unwrap_or_default();
                        v["metric"] = serde_json::json!(m);
                        v
                    })
                    .collect();
                serde_json::to_writer(&mut out, &serde_json::json!({ "by_metric": by }))?;
            }
            out.write_all(b"\n")?;
        }
        QueryFormat::Csv | QueryFormat::Table => {
            for (i, (m, g)) in answers.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!(
                    "{} by {}{}, best by {}, over {rows}, served by {}",
                    q.score,
                    q.key.column(),
                    m.as_ref()
                        .map_or(String::new(), |m| format!(" for metric {m}")),
                    g.direction.map_or("-", |d| d.as_str()),
                    served(g.served_by, &g.provenance)
                );
                let mut t = Table::new(&[q.key.column(), "count", "mean", "min", "max", "best"]);
                for r in &g.groups {
                    t.row(vec![
                        r.key.clone().unwrap_or_else(|| "(null)".into()),
                        r.count.to_string(),
                        num(r.mean),
                        num(r.min),
                        num(r.max),
                        num(r.best),
                    ]);
                }
                print!("{}", t.render());
            }
            // Each file's error once, however many groupings met it.
            let mut all = answers[0].1.provenance.clone();
            for (_, g) in &answers[1..] {
                for e in &g.provenance.errors {
                    if !all.errors.iter().any(|x| x.path == e.path) {
                        all.errors.push(e.clone());
                    }
                }
            }
            print_errors(&all);
        }
    }
    Ok(read.exit(
        answers
            .iter()
            .map(|(_, g)| exit_for(&g.provenance))
            .find(|c| *c != ExitCode::SUCCESS)
            .unwrap_or(ExitCode::SUCCESS),
    ))
}

fn parse_dir(s: &str) -> anyhow::Result<Direction> {
    Direction::parse(s)
        .ok_or_else(|| anyhow::anyhow!("--direction {s:?}: expected max, min or zero"))
}

fn served(by: n4a::query::ServedBy, p: &n4a::query::Provenance) -> String {
    format!(
        "{} ({} files considered, {} pruned by their footers, {} scanned)",
        serde_json::to_value(by)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        p.files_considered,
        p.files_pruned,
        p.files_scanned
    )
}

fn print_errors(p: &n4a::query::Provenance) {
    for e in &p.errors {
        println!("error [{}] {}", e.kind, e.error);
    }
}

fn exit_for(p: &n4a::query::Provenance) -> ExitCode {
    if p.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Columns shown by the table when none are asked for.
const TABLE_COLUMNS: [&str; 9] = [
    "dataset",
    "id",
    "model_name",
    "config_name",
    "fold_id",
    "partition",
    "val_score",
    "test_score",
    "metric",
];

fn print_page(
    page: &n4a::query::Page,
    q: &n4a::query::PageQuery,
    format: QueryFormat,
) -> anyhow::Result<()> {
    let all: Vec<String> = q.columns.clone().unwrap_or_else(|| {
        std::iter::once("dataset".to_string())
            .chain(n4a::schema::COLUMNS.iter().map(|(n, _)| n.to_string()))
            .collect()
    });
    match format {
        QueryFormat::Json => println!("{}", serde_json::to_string(page)?),
        QueryFormat::Csv => n4a::query::to_csv(&page.records, &all, std::io::stdout().lock())?,
        QueryFormat::Table => {
            let cols: Vec<String> = match &q.columns {
                Some(c) => c.clone(),
                None => TABLE_COLUMNS.iter().map(|s| s.to_string()).collect(),
            };
            let header: Vec<&str> = cols.iter().map(String::as_str).collect();
            let mut t = Table::new(&header);
            for r in &page.records {
                t.row(
                    cols.iter()
                        .map(|c| match r.get(c) {
                            None | Some(serde_json::Value::Null) => "-".to_string(),
                            Some(serde_json::Value::Number(n)) => {
                                n.as_f64().map_or(n.to_string(), |x| {
                                    if n.is_f64() {
                                        format!("{x:.4}")
                                    } else {
                                        n.to_string()
                                    }
                                })
                            }
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                        })
                        .collect(),
                );
            }
            print!("{}", t.render());
            let end = (page.offset + page.records.len()).min(page.total as usize);
            println!(
                "rows {}-{} of {}{}; served by {}",
                if page.records.is_empty() {
                    page.offset
                } else {
                    page.offset + 1
                },
                end,
                page.total,
                if page.has_more { " (more)" } else { "" },
                served(page.served_by, &page.provenance)
            );
            print_errors(&page.provenance);
        }
    }
    Ok(())
}

/// A one-shot scan frees and allocates the same column buffers file after
/// file (about 1 MB each): glibc would hand each back to the kernel and
/// fault it in again (a third of a group-by's time on 100 files). Keeping
/// freed memory in the process costs nothing here: the peak is the same.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc tuning parameters, before any
    // thread of ours starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
