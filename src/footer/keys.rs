//! The key/values of a footer n4a writes (format 1.3), for every writer
//! (new files, appends, `refresh`):
//!
//! ```text
//! <other key/values, in their order>  ARROW:schema  n4a_summary  n4a_state
//! ```
//!
//! `ARROW:schema` is written as pyarrow writes it (issue 28): the Arrow
//! schema of the file (the original file's when it had one, else
//! nirs4all's types: `large_string`, `large_list`) with the schema-level
//! metadata inside it, `n4a_summary` included. pyarrow shows only that
//! inner metadata as `schema_arrow.metadata` once `ARROW:schema` exists, so
//! the summary must be inside for nirs4all's loader and its dashboard; and
//! the types inside keep every reader's view of a refreshed or appended
//! file equal to the original's, so tables of old and new files
//! concatenate. The summary stays a plain key/value too (DuckDB's
//! `parquet_kv_metadata`, polars' `read_parquet_metadata`), and n4a's
//! state keys stay last, where readers find them from the file's end.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

use crate::schema::{ARROW_SCHEMA_KEY, RUNS_KEY, STATE_KEY, SUMMARY_KEY};

/// Decodes a base64 `ARROW:schema` value (an IPC schema message, with or
/// without the continuation marker).
///
/// # Errors
/// A message saying why it is not one.
pub(crate) fn decode_arrow_schema(encoded: &str) -> std::result::Result<Schema, String> {
    let bytes = base64_simd::STANDARD
        .decode_to_vec(encoded)
        .map_err(|e| format!("ARROW:schema is not base64: {e}"))?;
    let slice = if bytes.len() > 8 && bytes[..4] == [0xff; 4] {
        &bytes[8..]
    } else {
        &bytes[..]
    };
    let msg = arrow_ipc::root_as_message(slice)
        .map_err(|e| format!("ARROW:schema is not an Arrow IPC message: {e}"))?;
    let fb = msg
        .header_as_schema()
        .ok_or("ARROW:schema is not an Arrow schema message")?;
    arrow_ipc::convert::try_fb_to_schema(fb).map_err(|e| format!("ARROW:schema: {e}"))
}

/// nirs4all's Arrow types for a schema: strings as `large_string`, lists
/// as `large_list` (what polars and pyarrow gave nirs4all's files).
pub(crate) fn nirs4all_types(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema.fields().iter().map(|f| large(f)).collect();
    Schema::new(fields)
}

fn large(f: &Field) -> Field {
    let ty = match f.data_type() {
        DataType::Utf8 | DataType::Utf8View => DataType::LargeUtf8,
        DataType::Binary | DataType::BinaryView => DataType::LargeBinary,
        DataType::List(item) | DataType::LargeList(item) => {
            DataType::LargeList(Arc::new(large(item)))
        }
        other => other.clone(),
    };
    Field::new(f.name(), ty, f.is_nullable())
}

/// The footer being replaced: its key/values (in order) and its
/// `ARROW:schema`, decoded, when it had a readable one.
#[derive(Debug, Default, Clone)]
pub(crate) struct OldKeys {
    plain: Vec<(String, String)>,
    arrow: Option<Schema>,
}

impl OldKeys {
    /// From a footer's key/value metadata (absent values read as empty).
    pub(crate) fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Self {
        let mut out = OldKeys::default();
        for (k, v) in pairs {
            let v = v.unwrap_or_default();
            if k == ARROW_SCHEMA_KEY {
                out.arrow = decode_arrow_schema(v).ok();
            } else {
                out.plain.push((k.to_string(), v.to_string()));
            }
        }
        out
    }

    /// From parsed parquet metadata.
    pub(crate) fn of(meta: &parquet::file::metadata::ParquetMetaData) -> Self {
        let kv = meta.file_metadata().key_value_metadata();
        Self::from_pairs(
            kv.into_iter()
                .flatten()
                .map(|k| (k.key.as_str(), k.value.as_deref())),
        )
    }

    /// The old `ARROW:schema` if it describes `columns` (same names, same
    /// order), else `fallback` in nirs4all's types.
    fn fields_for(&self, fallback: &Schema) -> Schema {
        let same = |s: &Schema| {
            s.fields().len() == fallback.fields().len()
                && s.fields()
                    .iter()
                    .zip(fallback.fields())
                    .all(|(a, b)| a.name() == b.name())
        };
        match &self.arrow {
            Some(s) if same(s) => Schema::new(s.fields().clone()),
            _ => nirs4all_types(fallback),
        }
    }
}

/// Whether `key` is one of n4a's own keys (rewritten on every write).
fn is_ours(key: &str) -> bool {
    key == SUMMARY_KEY || key == STATE_KEY || key == RUNS_KEY || key == ARROW_SCHEMA_KEY
}

/// The key/values of a footer n4a writes: `old`'s other key/values and
/// schema metadata (first the plain ones, then those only inside its
/// `ARROW:schema`), `extra` (set by the caller; replacing an old value of
/// the same key), `ARROW:schema` (the old file's fields when they describe
/// `columns`, else `columns` in nirs4all's types, with every schema-level
/// key/value and the summary inside), then n4a's `entries` in their order
/// (`n4a_summary`, `n4a_state`; empty for an arrays file). A 1.2
/// `n4a_runs` key/value is dropped (1.3 keeps the runs in the body).
/// Cost: the summary text copied and base64-encoded once more (a footer
/// holds it twice, as nirs4all's did).
pub(crate) fn compose(
    old: &OldKeys,
    extra: &[(String, String)],
    columns: &Schema,
    entries: &[(String, String)],
) -> Vec<(String, String)> {
    let mut others: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: &str| {
        if is_ours(k) {
            return;
        }
        match others.iter_mut().find(|(kk, _)| kk == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => others.push((k.to_string(), v.to_string())),
        }
    };
    for (k, v) in &old.plain {
        put(k, v);
    }
    if let Some(s) = &old.arrow {
        let mut inner: Vec<_> = s.metadata().iter().collect();
        inner.sort();
        for (k, v) in inner {
            if !old.plain.iter().any(|(pk, _)| pk == k) {
                put(k, v);
            }
        }
    }
    for (k, v) in extra {
        put(k, v);
    }
    let mut inner: HashMap<String, String> = others.iter().cloned().collect();
    if let Some((_, text)) = entries.iter().find(|(k, _)| k == SUMMARY_KEY) {
        inner.insert(SUMMARY_KEY.to_string(), text.clone());
    }
    let arrow = old.fields_for(columns).with_metadata(inner);
    let mut kv = others;
    kv.push((
        ARROW_SCHEMA_KEY.to_string(),
        parquet::arrow::encode_arrow_schema(&arrow),
    ));
    kv.extend(entries.iter().cloned());
    kv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("val_score", DataType::Float64, true),
        ])
    }

    fn entries() -> Vec<(String, String)> {
        vec![
            (SUMMARY_KEY.into(), "{\"n4a_version\":\"1.3\"}".into()),
            (STATE_KEY.into(), "S".into()),
        ]
    }

    #[test]
    fn new_files_get_nirs4all_types_and_the_summary_inside() {
        let kv = compose(&OldKeys::default(), &[], &ours(), &entries());
        let keys: Vec<_> = kv.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [ARROW_SCHEMA_KEY, SUMMARY_KEY, STATE_KEY],
            "n4a's keys last, ARROW:schema before them"
        );
        let s = decode_arrow_schema(&kv[0].1).unwrap();
        assert_eq!(s.field(0).data_type(), &DataType::LargeUtf8);
        assert_eq!(s.field(1).data_type(), &DataType::Float64);
        assert_eq!(
            s.metadata().get(SUMMARY_KEY).map(String::as_str),
            Some("{\"n4a_version\":\"1.3\"}")
        );
        assert!(!s.metadata().contains_key(STATE_KEY));
    }

    #[test]
    fn an_old_arrow_schema_keeps_its_types_and_other_metadata() {
        let old_schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("val_score", DataType::Float64, true),
        ])
        .with_metadata(HashMap::from([
            ("pandas".to_string(), "{}".to_string()),
            (SUMMARY_KEY.to_string(), "old".to_string()),
        ]));
        let enc = parquet::arrow::encode_arrow_schema(&old_schema);
        let old = OldKeys::from_pairs([
            ("ARROW:schema", Some(enc.as_str())),
            (RUNS_KEY, Some("1.2 runs")),
            (SUMMARY_KEY, Some("old")),
            ("x", Some("1")),
        ]);
        let kv = compose(&old, &[("y".into(), "2".into())], &ours(), &entries());
        let keys: Vec<_> = kv.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["x", "pandas", "y", ARROW_SCHEMA_KEY, SUMMARY_KEY, STATE_KEY]
        );
        let s = decode_arrow_schema(&kv[3].1).unwrap();
        assert_eq!(s.field(0).data_type(), &DataType::Utf8, "the old type kept");
        assert_eq!(s.metadata().get("pandas").unwrap(), "{}");
        assert_eq!(s.metadata().get("x").unwrap(), "1");
        assert_eq!(
            s.metadata().get(SUMMARY_KEY).unwrap(),
            "{\"n4a_version\":\"1.3\"}"
        );
    }

    #[test]
    fn an_old_arrow_schema_of_other_columns_is_replaced() {
        let other = Schema::new(vec![Field::new("id", DataType::Utf8, true)]);
        let enc = parquet::arrow::encode_arrow_schema(&other);
        let old = OldKeys::from_pairs([("ARROW:schema", Some(enc.as_str()))]);
        let kv = compose(&old, &[], &ours(), &[]);
        let s = decode_arrow_schema(&kv[0].1).unwrap();
        assert_eq!(s.fields().len(), 2);
        assert_eq!(s.field(0).data_type(), &DataType::LargeUtf8);
        assert!(s.metadata().is_empty(), "an arrays file: no summary");
    }

    #[test]
    fn lists_become_large_lists() {
        let s = Schema::new(vec![Field::new(
            "array_data",
            DataType::List(Arc::new(Field::new("element", DataType::Float64, true))),
            true,
        )]);
        let l = nirs4all_types(&s);
        let DataType::LargeList(item) = l.field(0).data_type() else {
            panic!("{:?}", l.field(0).data_type())
        };
        assert_eq!(item.name(), "element");
    }
}
