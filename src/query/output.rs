//! Turning query answers into what people and programs read: JSON records
//! in the dashboard's data shape (`best_params` and `scores` parsed from
//! their JSON text, NaN and infinities as null) and CSV.

use polars::prelude::{AnyValue, DataFrame};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::summary::json::sanitize_non_finite;

/// Columns holding JSON text that records carry parsed.
pub const JSON_COLUMNS: [&str; 2] = ["best_params", "scores"];

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Row `i` of `df` as a JSON object with `columns`, in that order.
///
/// # Errors
/// [`Error::Polars`] for a missing column.
pub fn row_to_json(df: &DataFrame, i: usize, columns: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for name in columns {
        let c = df
            .column(name.as_str())
            .map_err(|e| Error::Polars(e.to_string()))?;
        let av = c.get(i).map_err(|e| Error::Polars(e.to_string()))?;
        let v = match av {
            AnyValue::Null => Value::Null,
            AnyValue::String(s) => text(name, s),
            AnyValue::StringOwned(ref s) => text(name, s.as_str()),
            AnyValue::Float64(v) => number(v),
            AnyValue::Float32(v) => number(f64::from(v)),
            AnyValue::Int64(v) => Value::from(v),
            AnyValue::Int32(v) => Value::from(v),
            AnyValue::UInt32(v) => Value::from(v),
            AnyValue::UInt64(v) => Value::from(v),
            AnyValue::Boolean(b) => Value::from(b),
            other => Value::String(other.to_string()),
        };
        out.insert(name.clone(), v);
    }
    Ok(out)
}

fn text(column: &str, s: &str) -> Value {
    if JSON_COLUMNS.contains(&column) {
        parse_json_text(s)
    } else {
        Value::String(s.to_string())
    }
}

/// JSON text parsed (bare NaN read as null); the text itself if it is not JSON.
pub fn parse_json_text(s: &str) -> Value {
    serde_json::from_str::<Value>(&sanitize_non_finite(s))
        .unwrap_or_else(|_| Value::String(s.to_string()))
}

/// Records as CSV with a header of `columns`; JSON values are written as
/// compact JSON text, null as an empty cell.
///
/// # Errors
/// [`Error::Io`] on a write failure.
pub fn to_csv(
    records: &[Map<String, Value>],
    columns: &[String],
    out: impl std::io::Write,
) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let io = |e: csv::Error| Error::io("<output>", std::io::Error::other(e.to_string()));
    w.write_record(columns).map_err(io)?;
    for r in records {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match r.get(c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            })
            .collect();
        w.write_record(&cells).map_err(io)?;
    }
    w.flush().map_err(|e| Error::io("<output>", e))
}
