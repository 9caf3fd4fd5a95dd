//! The queries and their answers: what a caller asks ([`PageQuery`],
//! [`TopQuery`], [`GroupQuery`], with [`Sort`] and [`GroupKey`]) and what it
//! gets back, each answer saying which path served it and which files were
//! pruned, scanned or bad.

use super::filter::Filters;
use crate::error::{Error, Result};
use crate::metric::Direction;
use crate::schema::COLUMNS;
use crate::summary::topk::TopEntry;
use crate::workspace::{FileError, Workspace};
use serde::Serialize;

/// Which path answered a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServedBy {
    /// The footers alone: no row group was read.
    Footers,
    /// A scan of the files that survived pruning.
    Scan,
    /// Nothing could match: every file was pruned.
    Pruned,
}

/// How files were chosen, reported with every answer.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Provenance {
    /// Files that could match and were considered.
    pub files_considered: usize,
    /// Files skipped from what their footers say.
    pub files_pruned: usize,
    /// Files whose rows were read.
    pub files_scanned: usize,
    /// Files that could not be used, each with its reason.
    pub errors: Vec<FileError>,
}

/// A sort: a column and a direction. Ties break by `id`, then `dataset`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    /// The column.
    pub column: String,
    /// Descending when true.
    pub descending: bool,
}

impl Sort {
    /// Parses `column` or `column:asc|desc`.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for an unknown column or order.
    pub fn parse(s: &str) -> Result<Sort> {
        let (column, order) = s.split_once(':').unwrap_or((s, "asc"));
        check_column(column)?;
        let descending = match order {
            "asc" => false,
            "desc" => true,
            o => {
                return Err(Error::InvalidQuery(format!(
                    "sort order {o:?} is not asc or desc"
                )))
            }
        };
        Ok(Sort {
            column: column.to_string(),
            descending,
        })
    }
}

pub(super) fn check_column(c: &str) -> Result<()> {
    if c == "dataset" || COLUMNS.iter().any(|(n, _)| *n == c) {
        Ok(())
    } else {
        Err(Error::InvalidQuery(format!("unknown column {c:?}")))
    }
}

/// A page of rows.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Which rows.
    pub filters: Filters,
    /// Columns to return (all 35 plus `dataset` when `None`).
    pub columns: Option<Vec<String>>,
    /// Order (default: file order, `dataset` then row, as the dashboard
    /// concatenates files; then the total is the footers' and only the
    /// page's rows are read when no row-level filter applies).
    pub sort: Option<Sort>,
    /// Rows to skip.
    pub offset: usize,
    /// Rows to return.
    pub limit: usize,
}

/// The answer to a [`PageQuery`], in the dashboard's data shape: the rows
/// as JSON records ([`super::QueryEngine::page`]), or as one Arrow batch
/// ([`ArrowPage`], [`super::QueryEngine::page_arrow`]).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "server",
    schema(
        as = Page,
        bound = "",
        description = "A filtered, sorted page of predictions, with the total."
    )
)]
pub struct Page<R = Vec<serde_json::Map<String, serde_json::Value>>> {
    /// The rows: records with `best_params` and `scores` parsed and NaN as
    /// null, or a batch of the asked columns in the contract's types.
    #[cfg_attr(feature = "server", schema(value_type = Vec<Object>))]
    pub records: R,
    /// Rows matching the filters.
    pub total: u64,
    /// As asked.
    pub limit: usize,
    /// As asked.
    pub offset: usize,
    /// True when rows remain past this page.
    pub has_more: bool,
    /// Which path answered.
    pub served_by: ServedBy,
    /// Files considered, pruned, scanned, and errors.
    pub provenance: Provenance,
}

/// A page whose rows are one Arrow batch, in the page's order, the asked
/// columns in order.
pub type ArrowPage = Page<arrow_array::RecordBatch>;

/// The best `k` rows by a score, in its metric's direction.
#[derive(Debug, Clone)]
pub struct TopQuery {
    /// Which rows.
    pub filters: Filters,
    /// How many.
    pub k: usize,
    /// Forces a direction (required to rank metrics of opposite directions together).
    pub direction: Option<Direction>,
    /// The score column (default `val_score`).
    pub score: String,
}

/// The answer to a [`TopQuery`].
#[derive(Debug, Clone, Serialize)]
pub struct TopAnswer {
    /// Best first, each with its dataset.
    pub records: Vec<TopEntry>,
    /// The direction used.
    pub direction: Option<Direction>,
    /// Which path answered.
    pub served_by: ServedBy,
    /// Files considered, pruned, scanned, and errors.
    pub provenance: Provenance,
}

/// The best lists of [`super::QueryEngine::top_by_metric`], one per
/// metric, as the CLI, the server and Python answer them. Serialized as
/// `{"by_metric": [{metric, direction, records, served_by, provenance}]}`,
/// plus, when there is one list, its members at the top level too (the
/// shape of one metric's answer).
#[derive(Debug, Clone, Default)]
pub struct TopLists(pub Vec<(Option<String>, TopAnswer)>);

impl Serialize for TopLists {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct One<'a> {
            metric: &'a Option<String>,
            #[serde(flatten)]
            answer: &'a TopAnswer,
        }
        let lists: Vec<One<'_>> = self
            .0
            .iter()
            .map(|(metric, answer)| One { metric, answer })
            .collect();
        let mut m = s.serialize_map(None)?;
        if let [one] = lists.as_slice() {
            m.serialize_entry("metric", one.metric)?;
            m.serialize_entry("records", &one.answer.records)?;
            m.serialize_entry("direction", &one.answer.direction)?;
            m.serialize_entry("served_by", &one.answer.served_by)?;
            m.serialize_entry("provenance", &one.answer.provenance)?;
        }
        m.serialize_entry("by_metric", &lists)?;
        m.end()
    }
}

/// Which rows one grouping of [`super::QueryEngine::group_by_metric`]
/// covers: its metric and its partition (`None` for rows without one, or
/// where the rows were not split on it and hold several).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupSplit {
    /// The metric of the grouping's rows.
    pub metric: Option<String>,
    /// The partition of the grouping's rows.
    pub partition: Option<String>,
}

/// The answers of [`super::QueryEngine::group_by_metric`].
#[derive(Debug, Clone)]
pub struct GroupsByMetric {
    /// One grouping per metric and partition split, in (metric, partition)
    /// order; rows without a metric or partition in a grouping of their
    /// own, last.
    pub groupings: Vec<(GroupSplit, GroupAnswer)>,
}

impl GroupsByMetric {
    /// Writes the answer as JSON: one grouping as [`GroupAnswer::to_json`]
    /// with its `metric` and `partition` first; several as `{"by_metric":
    /// [...]}` of those, each grouping written as it is made (one
    /// grouping's text held at a time). Written, not built as a
    /// `serde_json::Value`: the groups are serialised in chunks on the
    /// workspace's pool (570,000 groups of 190,000 configs by partition
    /// took 4.5 s through a `Value`).
    ///
    /// # Errors
    /// What `out` returns.
    pub fn write_json(
        &self,
        ws: &crate::workspace::Workspace,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        let one = |split: &GroupSplit,
                   g: &GroupAnswer,
                   out: &mut dyn std::io::Write|
         -> std::io::Result<()> {
            // `{"metric":..,"partition":..,` then the answer's members.
            let body = g.to_json(ws);
            out.write_all(b"{\"metric\":")?;
            out.write_all(&serde_json::to_vec(&split.metric).unwrap_or_default())?;
            out.write_all(b",\"partition\":")?;
            out.write_all(&serde_json::to_vec(&split.partition).unwrap_or_default())?;
            if body.len() > 2 {
                out.write_all(b",")?;
            }
            out.write_all(&body[1..])
        };
        match self.groupings.as_slice() {
            [(split, g)] => one(split, g, out),
            many => {
                out.write_all(b"{\"by_metric\":[")?;
                for (i, (split, g)) in many.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    one(split, g, out)?;
                }
                out.write_all(b"]}")
            }
        }
    }

    /// [`Self::write_json`] into a new buffer.
    pub fn to_json(&self, ws: &crate::workspace::Workspace) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(ws, &mut out)
            .expect("writing to memory does not fail");
        out
    }
}

/// The key of a group-by.
// In the OpenAPI document: `GroupBy`, by the lower-case variant names
// `group_by` takes (the server's parameter, `server::api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "server",
    derive(utoipa::ToSchema),
    schema(as = GroupBy, rename_all = "lowercase")
)]
pub enum GroupKey {
    /// `model_name`.
    Model,
    /// `config_name`.
    Config,
    /// The file's dataset.
    Dataset,
    /// `partition`.
    Partition,
    /// `fold_id`.
    Fold,
    /// `metric`.
    Metric,
}

impl GroupKey {
    /// The column grouped on.
    pub fn column(self) -> &'static str {
        match self {
            GroupKey::Model => "model_name",
            GroupKey::Config => "config_name",
            GroupKey::Dataset => "dataset",
            GroupKey::Partition => "partition",
            GroupKey::Fold => "fold_id",
            GroupKey::Metric => "metric",
        }
    }

    /// Parses `model`/`model_name`, `config`, `dataset`, `partition`,
    /// `fold`, `metric`.
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for anything else.
    pub fn parse(s: &str) -> Result<GroupKey> {
        Ok(match s {
            "model" | "model_name" => GroupKey::Model,
            "config" | "config_name" => GroupKey::Config,
            "dataset" | "dataset_name" => GroupKey::Dataset,
            "partition" => GroupKey::Partition,
            "fold" | "fold_id" => GroupKey::Fold,
            "metric" => GroupKey::Metric,
            _ => {
                return Err(Error::InvalidQuery(format!(
                    "cannot group by {s:?}: use model, config, dataset, partition, fold or metric"
                )))
            }
        })
    }
}

/// Counts and score statistics per group.
#[derive(Debug, Clone)]
pub struct GroupQuery {
    /// Which rows.
    pub filters: Filters,
    /// The key.
    pub key: GroupKey,
    /// The score column (default `val_score`).
    pub score: String,
    /// Only count and mean wanted (then footers can answer by model).
    pub count_and_mean_only: bool,
    /// Forces the direction of "best".
    pub direction: Option<Direction>,
}

impl GroupQuery {
    /// The columns a scan for this query reads besides the filters': the
    /// score, the key (a file's dataset is known), and `metric` and
    /// `partition`, which group-bys split on.
    pub(crate) fn reads(&self) -> Vec<&str> {
        let mut out = vec![self.score.as_str(), "metric", "partition"];
        if self.key != GroupKey::Dataset {
            out.push(self.key.column());
        }
        out
    }
}

/// One group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Group {
    /// The key value (null for rows without one).
    pub key: Option<String>,
    /// Rows in the group.
    pub count: u64,
    /// Mean of the finite scores.
    pub mean: Option<f64>,
    /// Smallest finite score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest finite score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Best finite score by the direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best: Option<f64>,
}

/// The answer to a [`GroupQuery`].
#[derive(Debug, Clone, Serialize)]
pub struct GroupAnswer {
    /// Groups in key order (null last).
    pub groups: Vec<Group>,
    /// The direction used for `best`; `None` when grouped by metric over
    /// several metrics (each group's best is by its own metric's
    /// direction).
    pub direction: Option<Direction>,
    /// Which path answered.
    pub served_by: ServedBy,
    /// Files considered, pruned, scanned, and errors.
    pub provenance: Provenance,
}

impl GroupAnswer {
    /// The answer as JSON, byte for byte `serde_json::to_vec(self)`, with
    /// the groups serialized in chunks on the workspace's pool: 190k groups
    /// (one per config of 100 files) cost 70 ms on one thread, most of it
    /// formatting their four floats.
    pub fn to_json(&self, ws: &Workspace) -> Vec<u8> {
        const CHUNK: usize = 8192;
        let head = serde_json::to_vec(&self.clone_without_groups()).expect("groups serialize");
        let chunks: Vec<&[Group]> = self.groups.chunks(CHUNK).collect();
        let parts = ws.install(|parallel| {
            let one = |c: &&[Group]| serde_json::to_vec(c).expect("groups serialize");
            if parallel {
                use rayon::prelude::*;
                chunks.par_iter().map(one).collect::<Vec<_>>()
            } else {
                chunks.iter().map(one).collect()
            }
        });
        // `groups` is the first field: `{"groups":[]` then the rest.
        let open = br#"{"groups":["#.len();
        let mut out = Vec::with_capacity(head.len() + parts.iter().map(Vec::len).sum::<usize>());
        out.extend_from_slice(&head[..open]);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&p[1..p.len() - 1]);
        }
        out.extend_from_slice(&head[open..]);
        out
    }

    /// The answer without its groups (direction, path, provenance): what
    /// goes beside a table of the groups. O(provenance).
    pub fn clone_without_groups(&self) -> GroupAnswer {
        GroupAnswer {
            groups: Vec::new(),
            direction: self.direction,
            served_by: self.served_by,
            provenance: self.provenance.clone(),
        }
    }
}
