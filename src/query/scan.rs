//! The polars side of the query engine: a lazy scan of the candidate files
//! with the filter and the projection pushed down to each parquet scan.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;

use super::filter::{Filters, VALUE_FIELDS};
use super::{Candidate, Group, GroupQuery, PageQuery, TopQuery};
use crate::error::{Error, Result};
use crate::metric::Direction;
use crate::schema::{Kind, COLUMNS};
use crate::summary::topk::TopEntry;

/// Row index within its file, added to every scan.
pub(crate) const ROW: &str = "__row";

fn perr(e: PolarsError) -> Error {
    Error::Polars(e.to_string())
}

fn contract_schema() -> SchemaRef {
    let fields = COLUMNS.iter().map(|(n, k)| {
        let dt = match k {
            Kind::Str => DataType::String,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
        };
        Field::new((*n).into(), dt)
    });
    Arc::new(Schema::from_iter(fields))
}

/// One lazy frame over `cands`: the contract's columns (missing ones null,
/// for older files), plus `dataset` and the row index within the file.
pub(crate) fn lazy(cands: &[Candidate]) -> Result<LazyFrame> {
    let schema = contract_schema();
    let frames = cands
        .iter()
        .map(|c| {
            let args = ScanArgsParquet {
                schema: Some(schema.clone()),
                allow_missing_columns: true,
                ..Default::default()
            };
            let path = PlRefPath::try_from_path(&c.path).map_err(perr)?;
            let lf = LazyFrame::scan_parquet(path, args).map_err(perr)?;
            Ok(lf
                .with_row_index(ROW, None)
                .with_column(lit(c.dataset.as_str()).alias("dataset")))
        })
        .collect::<Result<Vec<_>>>()?;
    concat(frames, UnionArgs::default()).map_err(perr)
}

/// The filter as a polars expression (`dataset` is applied by pruning).
pub(crate) fn filter_expr(f: &Filters) -> Option<Expr> {
    let mut parts: Vec<Expr> = Vec::new();
    for (field, values) in &f.values {
        let column = VALUE_FIELDS
            .iter()
            .find(|(n, _)| n == field)
            .map_or(field.as_str(), |(_, c)| c);
        let any = values
            .iter()
            .map(|v| col(column).eq(lit(v.as_str())))
            .reduce(|a, b| a.or(b));
        parts.extend(any);
    }
    for r in &f.ranges {
        let c = col(r.column.as_str());
        let mut e = c.clone().is_not_nan();
        if let Some(b) = r.lo {
            e = e.and(if b.inclusive {
                c.clone().gt_eq(lit(b.value))
            } else {
                c.clone().gt(lit(b.value))
            });
        }
        if let Some(b) = r.hi {
            e = e.and(if b.inclusive {
                c.clone().lt_eq(lit(b.value))
            } else {
                c.clone().lt(lit(b.value))
            });
        }
        parts.push(e);
    }
    parts.into_iter().reduce(|a, b| a.and(b))
}

fn filtered(cands: &[Candidate], f: &Filters) -> Result<LazyFrame> {
    let lf = lazy(cands)?;
    Ok(match filter_expr(f) {
        Some(e) => lf.filter(e),
        None => lf,
    })
}

/// The optimized plan of a filtered scan (to check pushdown).
///
/// # Errors
/// [`Error::Polars`].
pub(crate) fn describe(cands: &[Candidate], f: &Filters) -> Result<String> {
    filtered(cands, f)?
        .select([col("id")])
        .describe_optimized_plan()
        .map_err(perr)
}

fn sort_options(descending: Vec<bool>) -> SortMultipleOptions {
    let n = descending.len();
    SortMultipleOptions::default()
        .with_order_descending_multi(descending)
        .with_nulls_last_multi(vec![true; n])
        .with_maintain_order(true)
}

/// Phase 1 reads only the columns the filter and the sort need, once, for
/// the total and the page's (dataset, row) keys; phase 2 reads just those
/// rows whole, file by file, through the parquet reader's row selection
/// (with the page index, only the pages holding them are decoded).
pub(crate) fn page(
    cands: &[Candidate],
    q: &PageQuery,
) -> Result<(Vec<serde_json::Map<String, serde_json::Value>>, u64)> {
    let keys_df = filtered(cands, &q.filters)?
        .select(distinct_cols(
            ["dataset", ROW, "id"]
                .into_iter()
                .chain(q.sort.iter().map(|s| s.column.as_str())),
        ))
        .collect()
        .map_err(perr)?;
    let total = keys_df.height() as u64;
    if q.limit == 0 || q.offset as u64 >= total {
        return Ok((Vec::new(), total));
    }
    let (keys, desc): (Vec<Expr>, Vec<bool>) = match &q.sort {
        Some(s) => (
            vec![col(s.column.as_str()), col("id"), col("dataset"), col(ROW)],
            vec![s.descending, false, false, false],
        ),
        None => (vec![col("dataset"), col(ROW)], vec![false, false]),
    };
    let limit = q.limit.min(u32::MAX as usize) as IdxSize;
    let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
    let found = keys_df
        .lazy()
        .sort_by_exprs(keys, sort_options(desc))
        .slice(offset, limit)
        .select([col("dataset"), col(ROW)])
        .collect()
        .map_err(perr)?;
    let datasets = found
        .column("dataset")
        .map_err(perr)?
        .str()
        .map_err(perr)?
        .clone();
    let rows = found
        .column(ROW)
        .map_err(perr)?
        .idx()
        .map_err(perr)?
        .clone();
    let order: Vec<(String, u64)> = datasets
        .iter()
        .zip(rows.iter())
        .filter_map(|(d, r)| Some((d?.to_string(), u64::from(r?))))
        .collect();
    let mut by_file: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (d, r) in &order {
        by_file.entry(d.as_str()).or_default().push(*r);
    }
    let columns: Vec<String> = match &q.columns {
        Some(c) => c.clone(),
        None => std::iter::once("dataset".to_string())
            .chain(COLUMNS.iter().map(|(n, _)| n.to_string()))
            .collect(),
    };
    let mut fetched: BTreeMap<(String, u64), serde_json::Map<String, serde_json::Value>> =
        BTreeMap::new();
    for (dataset, wanted) in by_file {
        let Some(c) = cands.iter().find(|c| c.dataset == dataset) else {
            continue;
        };
        for (row, p) in read_rows(&c.path, wanted)? {
            fetched.insert((dataset.to_string(), row), record(dataset, &p, &columns));
        }
    }
    let records = order
        .into_iter()
        .filter_map(|k| fetched.remove(&k))
        .collect();
    Ok((records, total))
}

/// One row as a JSON record.
type Record = serde_json::Map<String, serde_json::Value>;

/// A page in the default order (dataset, then row) when no row-level
/// filter applies: the total is the footers' row counts, and the page's
/// rows are located by counting through the files in dataset order, then
/// read alone. Returns the records, the total and the files read. Cost:
/// O(files) plus reading the page's rows (the pages of them).
pub(crate) fn page_in_file_order(
    cands: &[Candidate],
    q: &PageQuery,
) -> Result<(Vec<Record>, u64, usize)> {
    let mut files: Vec<&Candidate> = cands.iter().collect();
    files.sort_by(|a, b| a.dataset.cmp(&b.dataset));
    let total: u64 = files.iter().map(|c| c.info.num_rows).sum();
    let columns: Vec<String> = match &q.columns {
        Some(c) => c.clone(),
        None => std::iter::once("dataset".to_string())
            .chain(COLUMNS.iter().map(|(n, _)| n.to_string()))
            .collect(),
    };
    let (mut start, end) = (
        q.offset as u64,
        (q.offset as u64).saturating_add(q.limit as u64).min(total),
    );
    let mut records = Vec::new();
    let (mut before, mut touched) = (0u64, 0usize);
    for c in files {
        let n = c.info.num_rows;
        if start >= end {
            break;
        }
        if start < before + n {
            let (lo, hi) = (start - before, end.min(before + n) - before);
            let mut rows = read_rows(&c.path, (lo..hi).collect())?;
            rows.sort_by_key(|(r, _)| *r);
            touched += 1;
            records.extend(rows.iter().map(|(_, p)| record(&c.dataset, p, &columns)));
            start = before + hi;
        }
        before += n;
    }
    Ok((records, total, touched))
}

/// Reads the rows at `wanted` (0-based, any order) of one file, decoding
/// only the pages that hold them when the file has a page index.
fn read_rows(path: &Path, mut wanted: Vec<u64>) -> Result<Vec<(u64, crate::schema::Prediction)>> {
    use parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
    };
    wanted.sort_unstable();
    wanted.dedup();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let opts = ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, opts)
        .map_err(|e| Error::parquet(path, e))?;
    let mut selectors = Vec::new();
    let mut at = 0u64;
    for &r in &wanted {
        if r > at {
            selectors.push(RowSelector::skip((r - at) as usize));
        }
        selectors.push(RowSelector::select(1));
        at = r + 1;
    }
    let reader = builder
        .with_row_selection(RowSelection::from(selectors))
        .build()
        .map_err(|e| Error::parquet(path, e))?;
    let ctx = path.display().to_string();
    let mut out = Vec::with_capacity(wanted.len());
    let mut it = wanted.into_iter();
    for batch in reader {
        let batch = batch.map_err(|e| Error::parquet(path, e.into()))?;
        for p in crate::reader::rows::batch_to_predictions(&batch, &ctx, false)? {
            out.push((it.next().unwrap_or(u64::MAX), p));
        }
    }
    Ok(out)
}

/// One row as a record: the requested columns in order, `dataset` from the
/// file, JSON columns parsed, NaN as null.
fn record(
    dataset: &str,
    p: &crate::schema::Prediction,
    columns: &[String],
) -> serde_json::Map<String, serde_json::Value> {
    let mut all = match serde_json::to_value(p) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    all.insert("dataset".to_string(), serde_json::Value::from(dataset));
    columns
        .iter()
        .map(|c| {
            let v = all.remove(c).unwrap_or(serde_json::Value::Null);
            let v = match v {
                serde_json::Value::String(s)
                    if super::output::JSON_COLUMNS.contains(&c.as_str()) =>
                {
                    super::output::parse_json_text(&s)
                }
                v => v,
            };
            (c.clone(), v)
        })
        .collect()
}

/// Column expressions for `names`, each once, in first-seen order.
fn distinct_cols<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Expr> {
    let mut seen = std::collections::BTreeSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(*n))
        .map(col)
        .collect()
}

/// The best `k` rows by the score under `dir`; ties by dataset, then row.
pub(crate) fn top(cands: &[Candidate], q: &TopQuery, dir: Direction) -> Result<Vec<TopEntry>> {
    if cands.is_empty() || q.k == 0 {
        return Ok(Vec::new());
    }
    let score = col(q.score.as_str());
    let (key, desc) = match dir {
        Direction::Maximize => (score.clone(), true),
        Direction::Minimize => (score.clone(), false),
        Direction::TowardZero => (score.clone().abs(), false),
    };
    let df = filtered(cands, &q.filters)?
        .filter(score.clone().is_finite())
        .select([
            col("id"),
            col("model_name"),
            col("config_name"),
            score.clone().alias("__score"),
            col("test_score"),
            col("fold_id"),
            col("partition"),
            col("dataset"),
            col(ROW),
            key.alias("__key"),
        ])
        .sort_by_exprs(
            [col("__key"), col("dataset"), col(ROW)],
            sort_options(vec![desc, false, false]),
        )
        .limit(q.k.min(u32::MAX as usize) as IdxSize)
        .collect()
        .map_err(perr)?;
    let s = |name: &str, i: usize| -> Result<Option<String>> {
        Ok(df
            .column(name)
            .map_err(perr)?
            .str()
            .map_err(perr)?
            .get(i)
            .map(str::to_string))
    };
    let f = |name: &str, i: usize| -> Result<Option<f64>> {
        Ok(df
            .column(name)
            .map_err(perr)?
            .f64()
            .map_err(perr)?
            .get(i)
            .filter(|v| v.is_finite()))
    };
    let rows = df.column(ROW).map_err(perr)?.idx().map_err(perr)?.clone();
    (0..df.height())
        .map(|i| {
            Ok(TopEntry {
                id: s("id", i)?,
                model_name: s("model_name", i)?,
                config_name: s("config_name", i)?,
                val_score: f("__score", i)?,
                test_score: f("test_score", i)?,
                fold_id: s("fold_id", i)?,
                partition: s("partition", i)?,
                dataset: s("dataset", i)?,
                row: u64::from(rows.get(i).unwrap_or(0)),
            })
        })
        .collect()
}

/// Count, mean, min, max and best per group.
pub(crate) fn group(
    cands: &[Candidate],
    q: &GroupQuery,
    dir: Option<Direction>,
) -> Result<Vec<Group>> {
    let score = col(q.score.as_str());
    let fin = score.clone().filter(score.clone().is_finite());
    let best = match dir {
        Some(Direction::Maximize) => fin.clone().max(),
        Some(Direction::Minimize) => fin.clone().min(),
        Some(Direction::TowardZero) => fin
            .clone()
            .sort_by([fin.clone().abs()], SortMultipleOptions::default())
            .first(),
        None => lit(NULL).cast(DataType::Float64),
    };
    let key = q.key.column();
    let df = filtered(cands, &q.filters)?
        .group_by([col(key)])
        .agg([
            len().alias("count"),
            fin.clone().mean().alias("mean"),
            fin.clone().min().alias("min"),
            fin.clone().max().alias("max"),
            best.alias("best"),
        ])
        .sort_by_exprs([col(key)], sort_options(vec![false]))
        .collect()
        .map_err(perr)?;
    let keys = df.column(key).map_err(perr)?.str().map_err(perr)?.clone();
    let counts = df
        .column("count")
        .map_err(perr)?
        .cast(&DataType::UInt64)
        .map_err(perr)?;
    let counts = counts.u64().map_err(perr)?.clone();
    let num = |name: &str| -> Result<Float64Chunked> {
        Ok(df
            .column(name)
            .map_err(perr)?
            .cast(&DataType::Float64)
            .map_err(perr)?
            .f64()
            .map_err(perr)?
            .clone())
    };
    let (mean, min, max, bestv) = (num("mean")?, num("min")?, num("max")?, num("best")?);
    let only = q.count_and_mean_only;
    Ok((0..df.height())
        .map(|i| Group {
            key: keys.get(i).map(str::to_string),
            count: counts.get(i).unwrap_or(0),
            mean: mean.get(i).filter(|v| v.is_finite()),
            min: if only { None } else { min.get(i) },
            max: if only { None } else { max.get(i) },
            best: if only { None } else { bestv.get(i) },
        })
        .collect())
}

/// The distinct metrics of the matching rows (for files without state).
pub(crate) fn distinct_metrics(cands: &[Candidate], f: &Filters) -> Result<Vec<String>> {
    let df = filtered(cands, f)?
        .filter(col("metric").is_not_null())
        .group_by([col("metric")])
        .agg([len().alias("n")])
        .collect()
        .map_err(perr)?;
    let m = df
        .column("metric")
        .map_err(perr)?
        .str()
        .map_err(perr)?
        .clone();
    Ok(m.iter().flatten().map(str::to_string).collect())
}

/// Checks a file's column types against the contract before a scan.
///
/// # Errors
/// [`Error::Schema`] naming the file and column; I/O or parquet errors.
pub(crate) fn check_file(path: &Path) -> Result<()> {
    let (_, meta) = crate::reader::footer::open_metadata(path)?;
    let fm = meta.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
            .map_err(|e| Error::parquet(path, e))?;
    crate::reader::rows::check_columns(&schema, &path.display().to_string(), false)
}
