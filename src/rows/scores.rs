//! A file's scores, read column by column: the finite values of its
//! score columns (exact quartiles after an append), its val rows' scores
//! with their row numbers (the best search of files without n4a state),
//! its rows per metric (a summary of a file whose footer does not prove
//! one metric), and the best-list fields of chosen rows.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;
use arrow_schema::DataType;

use super::{check_columns, for_each_batch, projection, row_selection, StrCol};
use crate::error::{Error, Result};
use crate::schema::SCORE_COLUMNS;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};

/// The finite values of the three score columns (val, test, train), read
/// from those columns only.
///
/// # Errors
/// As [`for_each_batch`]; a score column of the wrong type is [`Error::Schema`].
pub fn read_score_values(path: &Path) -> Result<[Vec<f64>; 3]> {
    let mut out: [Vec<f64>; 3] = Default::default();
    let ctx = path.display().to_string();
    for_each_batch(path, Some(&SCORE_COLUMNS), 65536, |b| {
        check_columns(b.schema().as_ref(), &ctx, false)?;
        for (i, name) in SCORE_COLUMNS.iter().enumerate() {
            if let Some(col) = b.column_by_name(name) {
                if col.data_type() == &DataType::Float64 {
                    let a = col.as_primitive::<Float64Type>();
                    out[i].extend(a.iter().flatten().filter(|v| v.is_finite()));
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The finite `val_score` values of a file's `val` rows with their row
/// numbers (one row per model instance: its train and test rows carry the
/// same scores), only of rows whose `metric` is `metric` when given (the
/// footer did not prove a single metric). Reads those two or three columns
/// (the strings as dictionaries).
///
/// # Errors
/// As [`for_each_batch`]; [`Error::Schema`] for a mistyped column.
pub fn read_val_scores(path: &Path, metric: Option<&str>) -> Result<Vec<(u64, f64)>> {
    let ctx = path.display().to_string();
    let cols: &[&str] = if metric.is_some() {
        &["val_score", "partition", "metric"]
    } else {
        &["val_score", "partition"]
    };
    let mut out = Vec::new();
    let mut row = 0u64;
    for_each_batch(path, Some(cols), 65536, |b| {
        check_columns(b.schema().as_ref(), &ctx, false)?;
        let n = b.num_rows();
        let m = StrCol::of(&b, "metric");
        let part = StrCol::of(&b, "partition");
        if let Some(v) = b
            .column_by_name("val_score")
            .filter(|c| c.data_type() == &DataType::Float64)
        {
            let v = v.as_primitive::<Float64Type>();
            for i in 0..n {
                if v.is_valid(i)
                    && v.value(i).is_finite()
                    && part.get(i) == Some("val")
                    && metric.is_none_or(|w| m.get(i) == Some(w))
                {
                    out.push((row + i as u64, v.value(i)));
                }
            }
        }
        row += n as u64;
        Ok(())
    })?;
    Ok(out)
}

/// The rows of each metric of a file (rows without one left out): what a
/// summary needs of a file without n4a state whose column statistics do
/// not prove one metric. Reads the `metric` column alone (as a
/// dictionary).
///
/// # Errors
/// As [`for_each_batch`]; [`Error::Schema`] for a mistyped column.
pub fn read_metric_counts(path: &Path) -> Result<std::collections::BTreeMap<String, u64>> {
    let ctx = path.display().to_string();
    let mut out: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for_each_batch(path, Some(&["metric"]), 65536, |b| {
        check_columns(b.schema().as_ref(), &ctx, false)?;
        let m = StrCol::of(&b, "metric");
        for i in 0..b.num_rows() {
            if let Some(v) = m.get(i) {
                match out.get_mut(v) {
                    Some(n) => *n += 1,
                    None => {
                        out.insert(v.to_string(), 1);
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The top-list fields (id, model, config, val, test and train score, fold,
/// partition) of the given rows of a file, in the order asked, reading
/// just those rows of those columns (a parquet row selection).
///
/// # Errors
/// As [`for_each_batch`]; a row past the end is [`Error::Corrupt`].
pub fn read_top_details(path: &Path, rows: &[u64]) -> Result<Vec<crate::summary::topk::TopEntry>> {
    crate::footer::guard::guarded(path, || read_top_details_unguarded(path, rows))
}

fn read_top_details_unguarded(
    path: &Path,
    rows: &[u64],
) -> Result<Vec<crate::summary::topk::TopEntry>> {
    let mut sorted: Vec<u64> = rows.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let at = sorted.last().map_or(0, |r| r + 1);
    let file = crate::blob::Blob::open(path).map_err(|e| Error::io(path, e))?;
    let handle = file.remote_handle();
    let err = |e| Error::parquet(path, e);
    let plain = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new_with_options(file, plain).map_err(err)?;
    let total = builder.metadata().file_metadata().num_rows().max(0) as u64;
    if at > total {
        return Err(Error::corrupt(
            path,
            format!("row {} asked of a file of {total} rows", at - 1),
        ));
    }
    let mask = projection(builder.schema(), builder.parquet_schema(), &TOP_DETAILS);
    if let Some(h) = &handle {
        super::prefetch(path, h, builder.metadata(), &mask, Some(&sorted))?;
    }
    let reader = builder
        .with_projection(mask)
        .with_row_selection(row_selection(&sorted))
        .build()
        .map_err(err)?;
    let ctx = path.display().to_string();
    let mut by_row = std::collections::HashMap::new();
    let mut next = sorted.iter();
    for batch in reader {
        let b = batch.map_err(|e| Error::damaged(path, e))?;
        add_top_details(&b, &mut next, &ctx, &mut by_row)?;
    }
    rows.iter()
        .map(|r| {
            by_row
                .get(r)
                .cloned()
                .ok_or_else(|| Error::corrupt(path, format!("row {r} was not read back")))
        })
        .collect()
}

/// The columns a top entry's details are read from.
pub const TOP_DETAILS: [&str; 8] = [
    "id",
    "model_name",
    "config_name",
    "val_score",
    "test_score",
    "train_score",
    "fold_id",
    "partition",
];

/// The top entries of a batch holding [`TOP_DETAILS`] of rows `rows`
/// (ascending, one batch row each), in the order of `rows`.
///
/// # Errors
/// [`Error::Schema`] naming `context` for a mistyped column.
pub fn top_details_of(
    b: &arrow_array::RecordBatch,
    rows: &[u64],
    context: &str,
) -> Result<Vec<crate::summary::topk::TopEntry>> {
    let mut by_row = std::collections::HashMap::new();
    add_top_details(b, &mut rows.iter(), context, &mut by_row)?;
    rows.iter()
        .map(|r| {
            by_row
                .get(r)
                .cloned()
                .ok_or_else(|| Error::corrupt(context, format!("row {r} was not read back")))
        })
        .collect()
}

fn add_top_details<'a>(
    b: &arrow_array::RecordBatch,
    next: &mut impl Iterator<Item = &'a u64>,
    ctx: &str,
    by_row: &mut std::collections::HashMap<u64, crate::summary::topk::TopEntry>,
) -> Result<()> {
    check_columns(b.schema().as_ref(), ctx, false)?;
    let s = |name| StrCol::of(b, name);
    let (id, model, cfg, fold, part) = (
        s("id"),
        s("model_name"),
        s("config_name"),
        s("fold_id"),
        s("partition"),
    );
    let f = |name: &str| {
        b.column_by_name(name)
            .filter(|c| c.data_type() == &DataType::Float64)
            .map(|c| c.as_primitive::<Float64Type>())
    };
    let (val, test, train) = (f("val_score"), f("test_score"), f("train_score"));
    let num = |a: Option<&arrow_array::Float64Array>, i: usize| {
        a.and_then(|a| a.is_valid(i).then(|| a.value(i)))
            .filter(|v| v.is_finite())
    };
    for i in 0..b.num_rows() {
        let Some(&row) = next.next() else { break };
        let own = |c: &StrCol<'_>| c.get(i).map(str::to_string);
        by_row.insert(
            row,
            crate::summary::topk::TopEntry {
                id: own(&id),
                model_name: own(&model),
                config_name: own(&cfg),
                val_score: num(val, i),
                test_score: num(test, i),
                train_score: num(train, i),
                fold_id: own(&fold),
                partition: own(&part),
                dataset: None,
                row,
            },
        );
    }
    Ok(())
}
