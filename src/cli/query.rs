//! `n4a query`, `n4a top` and `n4a stats`: flags converted once into a
//! query, the engine called, the answer printed as a table, JSON or CSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use n4a::metric::Direction;
use n4a::query::filter::FIELDS;
use n4a::Workspace;

use super::table::{num, top_table, Table};
use super::ListFormat;

/// Ranking and output flags shared by `top` and `stats`.
#[derive(Debug, clap::Args)]
pub(super) struct RankArgs {
    /// Force a direction (max, min, zero) for a metric n4a does not know;
    /// scores of different metrics are never ranked together.
    #[arg(long)]
    direction: Option<String>,
    /// Score column.
    #[arg(long, default_value = "val_score")]
    score: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
}

impl RankArgs {
    /// The direction, checked, and the format.
    fn checked(&self) -> anyhow::Result<(Option<Direction>, ListFormat)> {
        Ok((
            self.direction.as_deref().map(parse_dir).transpose()?,
            self.format,
        ))
    }
}

/// Row filters shared by `query`, `top` and `stats`: one flag per
/// [`n4a::query::filter::FIELDS`] entry (several values each: repeat the
/// flag or separate with commas) and `--where`; and `--no-cache`, which
/// the three share too (the footer cache on disk).
#[derive(Debug, Default)]
pub(super) struct FilterArgs {
    values: Vec<(&'static str, Vec<String>)>,
    where_: Vec<String>,
    no_cache: bool,
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
        self.no_cache = m.get_flag("no_cache");
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
        .arg(
            clap::Arg::new("no_cache")
                .long("no-cache")
                .help(
                    "Neither read nor write the footer cache on disk (see `n4a summary \
                     --help`): every footer is read from its file",
                )
                .action(clap::ArgAction::SetTrue),
        )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FilterArgs {
    /// Where the footer cache on disk is, unless `--no-cache`.
    fn disk_cache(&self) -> Option<PathBuf> {
        (!self.no_cache).then(n4a::files::cache_root)
    }

    /// The filters of a ranking ([`n4a::query::Filters::for_ranking`]) and
    /// which rows they keep, for the header.
    fn ranking(&self) -> Result<(n4a::query::Filters, String), n4a::Error> {
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
    format: ListFormat,
) -> anyhow::Result<ExitCode> {
    let q = n4a::query::PageQuery {
        filters: (&filters).try_into()?,
        columns: (!columns.is_empty()).then_some(columns),
        sort: sort.as_deref().map(n4a::query::Sort::parse).transpose()?,
        offset,
        limit,
    };
    if let Some(code) = super::not_a_folder(&workspace) {
        return Ok(code);
    }
    n4a::memory::keep_freed_memory();
    let ws = super::store::open(&workspace)?
        .with_cache(false)
        .with_summaries(false)
        .with_disk_cache(filters.disk_cache());
    if let Some(code) = super::no_predictions(&ws, &workspace)? {
        return Ok(code);
    }
    let engine = n4a::query::QueryEngine::new(&ws);
    let page = engine.page(&q)?;
    print_page(&page, &q, format)?;
    if page.total == 0 {
        explain_empty(&engine, &q.filters, &ws)?;
    }
    Ok(exit_for(&page.provenance))
}

/// `n4a top`: the best K model instances of each metric, by its
/// direction.
pub(super) fn top_cmd(
    workspace: PathBuf,
    filters: FilterArgs,
    k: usize,
    rank: RankArgs,
) -> anyhow::Result<ExitCode> {
    let (direction, format) = rank.checked()?;
    let given = n4a::query::Filters::try_from(&filters)?;
    let disk = filters.disk_cache();
    let (filters, rows) = filters.ranking()?;
    let q = n4a::query::TopQuery {
        filters,
        k,
        direction,
        score: rank.score,
    };
    if let Some(code) = super::not_a_folder(&workspace) {
        return Ok(code);
    }
    n4a::memory::keep_freed_memory();
    let ws = super::store::open(&workspace)?
        .with_cache(false)
        .with_summaries(false)
        .with_disk_cache(disk);
    if let Some(code) = super::no_predictions(&ws, &workspace)? {
        return Ok(code);
    }
    let engine = n4a::query::QueryEngine::new(&ws);
    let lists = engine.top_by_metric(&q)?;
    match format {
        ListFormat::Json => {
            println!(
                "{}",
                serde_json::to_string(&n4a::query::TopLists(lists.clone()))?
            );
        }
        ListFormat::Csv => top_csv(&lists, std::io::stdout().lock())?,
        ListFormat::Table => {
            for (i, (metric, top)) in lists.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!(
                    "best {} model instances{} by {} ({}) over {rows}; {}",
                    q.k,
                    metric
                        .as_ref()
                        .map_or(String::new(), |m| format!(" of {m}")),
                    q.score,
                    top.direction.map_or("no rows", |d| d.in_words()),
                    served(top.served_by, &top.provenance)
                );
                print!("{}", top_table(&top.records, usize::MAX, None));
            }
        }
    }
    let all: Vec<&n4a::query::Provenance> = lists.iter().map(|(_, t)| &t.provenance).collect();
    if format == ListFormat::Table {
        print_errors(&merged_errors(&all));
    }
    if lists.iter().all(|(_, t)| t.records.is_empty()) {
        explain_empty(&engine, &given, &ws)?;
    }
    Ok(exit_for(&merged_errors(&all)))
}

/// The `top` answer as CSV: one row per entry, led by its metric and rank.
fn top_csv(
    lists: &[(Option<String>, n4a::query::TopAnswer)],
    out: impl Write,
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "metric",
        "rank",
        "dataset",
        "id",
        "model_name",
        "config_name",
        "fold_id",
        "partition",
        "val_score",
        "test_score",
        "train_score",
    ])?;
    let f = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
    for (metric, top) in lists {
        for (i, e) in top.records.iter().enumerate() {
            let s = |v: &Option<String>| v.clone().unwrap_or_default();
            w.write_record([
                s(metric),
                (i + 1).to_string(),
                s(&e.dataset),
                s(&e.id),
                s(&e.model_name),
                s(&e.config_name),
                s(&e.fold_id),
                s(&e.partition),
                f(e.val_score),
                f(e.test_score),
                f(e.train_score),
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Each file's error once, however many answers met it.
fn merged_errors(all: &[&n4a::query::Provenance]) -> n4a::query::Provenance {
    let mut out = n4a::query::Provenance::default();
    for p in all {
        for e in &p.errors {
            if !out.errors.iter().any(|x| x.path == e.path) {
                out.errors.push(e.clone());
            }
        }
    }
    out
}

/// `n4a stats`: counts and score statistics per group, within one metric
/// (and one partition over every partition) at a time.
pub(super) fn stats_cmd(
    workspace: PathBuf,
    filters: FilterArgs,
    group_by: String,
    count_mean_only: bool,
    rank: RankArgs,
) -> anyhow::Result<ExitCode> {
    let (direction, format) = rank.checked()?;
    let given = n4a::query::Filters::try_from(&filters)?;
    let disk = filters.disk_cache();
    let (filters, rows) = filters.ranking()?;
    let q = n4a::query::GroupQuery {
        filters,
        key: n4a::query::GroupKey::parse(&group_by)?,
        score: rank.score,
        count_and_mean_only: count_mean_only,
        direction,
    };
    if let Some(code) = super::not_a_folder(&workspace) {
        return Ok(code);
    }
    n4a::memory::keep_freed_memory();
    let ws = super::store::open(&workspace)?
        .with_cache(false)
        .with_summaries(false)
        .with_disk_cache(disk);
    if let Some(code) = super::no_predictions(&ws, &workspace)? {
        return Ok(code);
    }
    let engine = n4a::query::QueryEngine::new(&ws);
    let grouped = engine.group_by_metric(&q)?;
    let answers = &grouped.groupings;
    match format {
        ListFormat::Json => {
            let mut out = std::io::stdout().lock();
            grouped.write_json(&ws, &mut out)?;
            out.write_all(b"\n")?;
        }
        ListFormat::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            w.write_record([
                "metric",
                "partition",
                q.key.column(),
                "count",
                "mean",
                "min",
                "max",
                "best",
            ])?;
            let f = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
            for (split, g) in answers {
                for r in &g.groups {
                    w.write_record([
                        split.metric.clone().unwrap_or_default(),
                        split.partition.clone().unwrap_or_default(),
                        r.key.clone().unwrap_or_default(),
                        r.count.to_string(),
                        f(r.mean),
                        f(r.min),
                        f(r.max),
                        f(r.best),
                    ])?;
                }
            }
            w.flush()?;
        }
        ListFormat::Table => {
            for (i, (split, g)) in answers.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                // Which rows: the grouping's partition where the answer is
                // split by partition, else the partition filter's words.
                let over = match &split.partition {
                    Some(p) if answers.len() > 1 && q.filters.get("partition").is_none() => {
                        format!("the {p} partition")
                    }
                    _ => rows.to_string(),
                };
                println!(
                    "{} by {}{}, over {over}; best: {}; {}",
                    q.score,
                    q.key.column(),
                    split
                        .metric
                        .as_ref()
                        .map_or(String::new(), |m| format!(", metric {m}")),
                    g.direction.map_or("not asked", |d| d.in_words()),
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
        }
    }
    let all: Vec<&n4a::query::Provenance> = answers.iter().map(|(_, g)| &g.provenance).collect();
    let errors = merged_errors(&all);
    if format == ListFormat::Table {
        print_errors(&errors);
    }
    if answers.iter().all(|(_, g)| g.groups.is_empty()) {
        explain_empty(&engine, &given, &ws)?;
    }
    Ok(exit_for(&errors))
}

/// An empty answer exits 0 but says why on standard error: each filter
/// value that matches no row of the workspace, with the nearest values
/// that do; or that only the filters together match nothing.
fn explain_empty(
    engine: &n4a::query::QueryEngine<'_>,
    given: &n4a::query::Filters,
    _ws: &Workspace,
) -> anyhow::Result<()> {
    let unmatched = engine.unmatched(given)?;
    for u in &unmatched {
        let field = u.field.replace('_', " ");
        if u.nearest.is_empty() {
            eprintln!(
                "note: no prediction has {field} {:?} (the workspace has none)",
                u.value
            );
        } else {
            eprintln!(
                "note: no prediction has {field} {:?}; nearest: {}",
                u.value,
                u.nearest.join(", ")
            );
        }
    }
    if unmatched.is_empty() && (!given.values.is_empty() || !given.ranges.is_empty()) {
        eprintln!("note: no prediction matches these filters together (each value alone exists)");
    }
    Ok(())
}

fn parse_dir(s: &str) -> anyhow::Result<Direction> {
    Direction::parse(s)
        .ok_or_else(|| anyhow::anyhow!("--direction {s:?}: expected max, min or zero"))
}

fn served(by: n4a::query::ServedBy, p: &n4a::query::Provenance) -> String {
    let how = match by {
        n4a::query::ServedBy::Footers => "answered from the files' summaries",
        n4a::query::ServedBy::Scan => "answered by reading rows",
        n4a::query::ServedBy::Pruned => "no file can match",
    };
    format!(
        "{how} ({} files could match, {} skipped by their summaries, {} read)",
        p.files_considered, p.files_pruned, p.files_scanned
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
    format: ListFormat,
) -> anyhow::Result<()> {
    let all: Vec<String> = q.columns.clone().unwrap_or_else(|| {
        std::iter::once("dataset".to_string())
            .chain(n4a::schema::COLUMNS.iter().map(|(n, _)| n.to_string()))
            .collect()
    });
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string(page)?),
        ListFormat::Csv => n4a::query::to_csv(&page.records, &all, std::io::stdout().lock())?,
        ListFormat::Table => {
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
                "rows {}-{} of {}{}; {}",
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
