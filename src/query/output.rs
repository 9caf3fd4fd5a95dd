//! Turning query answers into what people and programs read: JSON records
//! in the dashboard's data shape (`best_params` and `scores` parsed from
//! their JSON text, NaN and infinities as null) and CSV.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::summary::json::sanitize_non_finite;

/// Columns holding JSON text that records carry parsed.
pub const JSON_COLUMNS: [&str; 2] = ["best_params", "scores"];

/// JSON text parsed (bare NaN read as null); the text itself if it is not JSON.
pub fn parse_json_text(s: &str) -> Value {
    serde_json::from_str::<Value>(&sanitize_non_finite(s))
        .unwrap_or_else(|_| Value::String(s.to_string()))
}

/// Records as CSV with a header of `columns`; JSON values are written as
/// compact JSON text, null as an empty cell.
///
/// # Errors
/// [`Error::Csv`] on a write failure (of the output or the writer).
pub fn to_csv(
    records: &[Map<String, Value>],
    columns: &[String],
    out: impl std::io::Write,
) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(columns)?;
    for r in records {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match r.get(c) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
            })
            .collect();
        w.write_record(&cells)?;
    }
    w.flush().map_err(|e| Error::Csv(e.into()))
}
