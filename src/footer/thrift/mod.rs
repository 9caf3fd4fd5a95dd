//! A minimal reader of the parquet footer's Thrift compact encoding that
//! takes only what a workspace summary needs: the row count, the number of
//! row groups, the key/value metadata (borrowed from the footer bytes) and
//! the chunk statistics of a few named columns (which tell a nirs4all 1.0
//! file's metric and each score column's non-null count, minimum and
//! maximum); and [`replace_key_values`], which re-emits a footer with only
//! its key/value metadata changed (what `refresh` writes).
//!
//! The parquet crate's full decode builds every column chunk's metadata and
//! statistics (about 50 µs for a 35-column file, measured by the
//! `one_footer` bench); skipping them without allocating costs a few
//! microseconds. Any malformed input is an error, never a panic (bounded
//! nesting, checked lengths); callers fall back to the parquet crate for the
//! error message.
//!
//! `cursor` reads the compact protocol, `locate` finds byte ranges in a
//! footer without a full parse, `rewrite` re-emits one with new key/values;
//! this file holds the skim itself.

mod cursor;
mod locate;
mod rewrite;

use cursor::Cursor;
pub use locate::{
    find_state_key, locate_key_values, locate_state, locate_summary, parse_counts, summary_framing,
};
pub use rewrite::{is_compatible, make_compatible, replace_key_values};

/// What [`parse_file_metadata`] extracts.
#[derive(Debug, Default, PartialEq)]
pub struct Skim<'a> {
    /// `FileMetaData.num_rows`.
    pub num_rows: i64,
    /// Length of `FileMetaData.row_groups`.
    pub num_row_groups: usize,
    /// `FileMetaData.key_value_metadata`, keys and values borrowed.
    pub key_values: Vec<(&'a [u8], Option<&'a [u8]>)>,
    /// Statistics of the columns asked for, one entry per column chunk
    /// (row group), in footer order.
    pub chunk_stats: Vec<ChunkStats<'a>>,
}

/// The statistics of one column chunk of a watched column.
#[derive(Debug, Default, PartialEq, Clone)]
pub struct ChunkStats<'a> {
    /// Index of the column in the `watch` list given to the skim.
    pub column: usize,
    /// `ColumnMetaData.num_values` (nulls included, for a flat column).
    pub num_values: i64,
    /// `Statistics.null_count`, when written.
    pub null_count: Option<i64>,
    /// `Statistics.min_value` (or the deprecated `min`), plain-encoded.
    pub min: Option<&'a [u8]>,
    /// `Statistics.max_value` (or the deprecated `max`), plain-encoded.
    pub max: Option<&'a [u8]>,
}

/// Why skimming failed (the caller falls back to the full decoder).
#[derive(Debug, PartialEq, Eq)]
pub struct SkimError(pub &'static str);

type R<T> = Result<T, SkimError>;

/// Skims a serialized `FileMetaData` (the bytes before the footer's length
/// and magic).
///
/// # Errors
/// [`SkimError`] on any malformed or truncated input.
#[cfg(test)]
pub fn parse_file_metadata(buf: &[u8]) -> R<Skim<'_>> {
    parse_with_stats(buf, &[])
}

/// [`parse_file_metadata`] plus the chunk statistics of the top-level
/// columns named in `watch` (matched on `path_in_schema`). Cost: a walk of
/// every column chunk's metadata without allocating, a few microseconds
/// for 35 columns.
///
/// # Errors
/// [`SkimError`] on any malformed or truncated input.
pub fn parse_with_stats<'a>(buf: &'a [u8], watch: &[&str]) -> R<Skim<'a>> {
    let mut c = Cursor { buf, pos: 0 };
    let mut out = Skim::default();
    let (mut seen_rows, mut seen_groups) = (false, false);
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (3, 6) => {
                out.num_rows = c.zigzag()?;
                seen_rows = true;
            }
            (4, 9) => {
                let (n, et) = c.list_header()?;
                for _ in 0..n {
                    if watch.is_empty() || et != 12 {
                        c.skip_elem(et, 1)?;
                    } else {
                        row_group(&mut c, watch, &mut out.chunk_stats, false)?;
                    }
                }
                out.num_row_groups = n;
                seen_groups = true;
            }
            (5, 9) => {
                let (n, et) = c.list_header()?;
                if et != 12 {
                    return Err(SkimError("key_value_metadata is not a list of structs"));
                }
                for _ in 0..n {
                    out.key_values.push(key_value(&mut c)?);
                }
            }
            (_, t) => c.skip(t, 1)?,
        }
    }
    if !(seen_rows && seen_groups) {
        return Err(SkimError("missing num_rows or row_groups"));
    }
    Ok(out)
}

/// What [`parse_prefix`] found before the key/value metadata.
#[derive(Debug, Default, PartialEq)]
pub struct Prefix<'a> {
    /// Row count, row groups and watched chunk statistics (no key/values).
    pub skim: Skim<'a>,
    /// Offset of the key/value list's header (just after its field
    /// header), or `None` when the footer has no key/value metadata.
    pub kv_at: Option<usize>,
}

/// Skims the start of a serialized `FileMetaData` up to its key/value
/// metadata (field 5), which it does not read: for footers whose
/// key/values are large, the caller locates them with [`locate_key_values`]
/// and reads only the values it needs.
///
/// # Errors
/// [`SkimError`] on malformed input, or when `buf` ends before field 5 (a
/// footer without key/values must be given whole).
pub fn parse_prefix<'a>(buf: &'a [u8], watch: &[&str]) -> R<Prefix<'a>> {
    let mut c = Cursor { buf, pos: 0 };
    let mut out = Prefix::default();
    let (mut seen_rows, mut seen_groups) = (false, false);
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (3, 6) => {
                out.skim.num_rows = c.zigzag()?;
                seen_rows = true;
            }
            (4, 9) => {
                let (n, et) = c.list_header()?;
                for _ in 0..n {
                    if watch.is_empty() || et != 12 {
                        c.skip_elem(et, 1)?;
                    } else {
                        row_group(&mut c, watch, &mut out.skim.chunk_stats, false)?;
                    }
                }
                out.skim.num_row_groups = n;
                seen_groups = true;
            }
            (5, 9) => {
                out.kv_at = Some(c.pos);
                break;
            }
            (id, _) if id > 5 => break,
            (_, t) => c.skip(t, 1)?,
        }
    }
    if !(seen_rows && seen_groups) {
        return Err(SkimError("missing num_rows or row_groups"));
    }
    Ok(out)
}

/// The row count, row groups and watched chunk statistics of a serialized
/// `FileMetaData`, without its key/values: with one row group the walk
/// stops after the last watched column chunk (the rest of the footer is
/// not needed once the summary was found from the end, [`locate_summary`]).
///
/// # Errors
/// [`SkimError`] on malformed input.
pub fn parse_stats_only<'a>(buf: &'a [u8], watch: &[&str]) -> R<Skim<'a>> {
    let mut c = Cursor { buf, pos: 0 };
    let mut out = Skim::default();
    let mut seen_rows = false;
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (3, 6) => {
                out.num_rows = c.zigzag()?;
                seen_rows = true;
            }
            (4, 9) => {
                let (n, et) = c.list_header()?;
                if et != 12 {
                    return Err(SkimError("row groups are not structs"));
                }
                out.num_row_groups = n;
                for _ in 0..n {
                    row_group(&mut c, watch, &mut out.chunk_stats, n == 1)?;
                }
                return if seen_rows {
                    Ok(out)
                } else {
                    Err(SkimError("row_groups before num_rows"))
                };
            }
            (_, t) => c.skip(t, 1)?,
        }
    }
    Err(SkimError("missing num_rows or row_groups"))
}

/// A `RowGroup`: its column chunks' metadata, the rest skipped; with
/// `stop_when_seen`, the walk ends (mid-struct: the caller reads nothing
/// after) once every watched column's chunk was seen.
fn row_group<'a>(
    c: &mut Cursor<'a>,
    watch: &[&str],
    out: &mut Vec<ChunkStats<'a>>,
    stop_when_seen: bool,
) -> R<()> {
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (1, 9) => {
                let (n, et) = c.list_header()?;
                for _ in 0..n {
                    if et != 12 {
                        return Err(SkimError("row group columns are not structs"));
                    }
                    column_chunk(c, watch, out)?;
                    if stop_when_seen && out.len() == watch.len() {
                        return Ok(());
                    }
                }
            }
            (_, t) => c.skip(t, 2)?,
        }
    }
    Ok(())
}

/// A `ColumnChunk`; only its `meta_data` (field 3) is looked into.
fn column_chunk<'a>(c: &mut Cursor<'a>, watch: &[&str], out: &mut Vec<ChunkStats<'a>>) -> R<()> {
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (3, 12) => {
                if let Some(s) = column_meta(c, watch)? {
                    out.push(s);
                }
            }
            (_, t) => c.skip(t, 3)?,
        }
    }
    Ok(())
}

/// A `ColumnMetaData`: the statistics when its path is watched.
fn column_meta<'a>(c: &mut Cursor<'a>, watch: &[&str]) -> R<Option<ChunkStats<'a>>> {
    let mut last = 0;
    let mut column = None;
    let mut stats = ChunkStats::default();
    let mut legacy: (Option<&'a [u8]>, Option<&'a [u8]>) = (None, None);
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (3, 9) => {
                let (n, et) = c.list_header()?;
                for i in 0..n {
                    if et != 8 {
                        return Err(SkimError("path_in_schema is not a list of strings"));
                    }
                    let part = c.binary()?;
                    if i == 0 && n == 1 {
                        column = watch.iter().position(|w| w.as_bytes() == part);
                    }
                }
            }
            (5, 6) => stats.num_values = c.zigzag()?,
            (12, 12) if column.is_some() => {
                let mut last = 0;
                while let Some((sid, sty)) = c.field(&mut last)? {
                    match (sid, sty) {
                        (1, 8) => legacy.1 = Some(c.binary()?),
                        (2, 8) => legacy.0 = Some(c.binary()?),
                        (3, 6) => stats.null_count = Some(c.zigzag()?),
                        (5, 8) => stats.max = Some(c.binary()?),
                        (6, 8) => stats.min = Some(c.binary()?),
                        (_, t) => c.skip(t, 5)?,
                    }
                }
            }
            (_, t) => c.skip(t, 4)?,
        }
    }
    Ok(column.map(|i| {
        stats.column = i;
        stats.min = stats.min.or(legacy.0);
        stats.max = stats.max.or(legacy.1);
        stats
    }))
}

fn key_value<'a>(c: &mut Cursor<'a>) -> R<(&'a [u8], Option<&'a [u8]>)> {
    let (mut key, mut value) = (None, None);
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (1, 8) => key = Some(c.binary()?),
            (2, 8) => value = Some(c.binary()?),
            (_, t) => c.skip(t, 2)?,
        }
    }
    Ok((key.ok_or(SkimError("key without name"))?, value))
}

#[cfg(test)]
mod tests {
    use super::locate::STATE_FRAMING;
    use super::*;

    fn fixture_path(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name)
    }

    /// Moved from the integration tests when `thrift` became
    /// crate-private (issue 13).
    #[test]
    fn footer_rewrite_with_the_same_key_values_is_byte_identical() {
        let ws = tempfile::tempdir().unwrap();
        let (name, rows) = crate::generate::dataset_rows(0, 100, 1, false);
        let mut w =
            crate::writer::PredictionWriter::create(ws.path(), &name, Default::default()).unwrap();
        rows.into_iter().for_each(|p| w.write_owned(p).unwrap());
        w.finish().unwrap();
        let ours = ws.path().join(format!("{name}.meta.parquet"));
        for p in [
            fixture_path("corn_moisture.meta.parquet"),
            fixture_path("grain_class.meta.parquet"),
            fixture_path("old_layout.meta.parquet"),
            ours,
        ] {
            let f = std::fs::File::open(&p).unwrap();
            let len = f.metadata().unwrap().len();
            let (bytes, _) = crate::footer::footer_bytes(&f, &p, len).unwrap();
            let skim = parse_file_metadata(&bytes).unwrap();
            let kv: Vec<(&str, &str)> = skim
                .key_values
                .iter()
                .map(|(k, v)| {
                    (
                        std::str::from_utf8(k).unwrap(),
                        std::str::from_utf8(v.unwrap()).unwrap(),
                    )
                })
                .collect();
            let again = replace_key_values(&bytes, &kv).unwrap();
            assert_eq!(again, bytes, "{}", p.display());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 1u64;
        for len in 0..400 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let _ = parse_file_metadata(&buf);
        }
        assert!(parse_file_metadata(&[]).is_err());
    }

    #[test]
    fn hand_built_struct() {
        // num_rows (field 3, i64) = 5, row_groups (field 4) = empty list of
        // structs, key_value_metadata (field 5) = [{key "k", value "v"}].
        let buf = [
            0x36, 10, 0x19, 0x0c, 0x19, 0x1c, 0x18, 1, b'k', 0x18, 1, b'v', 0, 0,
        ];
        let s = parse_file_metadata(&buf).unwrap();
        assert_eq!(s.num_rows, 5);
        assert_eq!(s.num_row_groups, 0);
        assert_eq!(s.key_values, vec![(&b"k"[..], Some(&b"v"[..]))]);
    }

    #[test]
    fn key_values_are_replaced_and_inserted_in_field_order() {
        let buf = [
            0x36, 10, 0x19, 0x0c, 0x19, 0x1c, 0x18, 1, b'k', 0x18, 1, b'v', 0, 0,
        ];
        // Same pairs: the same bytes.
        assert_eq!(replace_key_values(&buf, &[("k", "v")]).unwrap(), buf);
        let out = replace_key_values(&buf, &[("a", "1"), ("k", "2")]).unwrap();
        let s = parse_file_metadata(&out).unwrap();
        assert_eq!(s.num_rows, 5);
        assert_eq!(
            s.key_values,
            vec![(&b"a"[..], Some(&b"1"[..])), (&b"k"[..], Some(&b"2"[..]))]
        );
        // No field 5 at all (num_rows, row_groups, then created_by, field
        // 6): ours goes between, and field 6's header delta is recomputed.
        let bare = [0x36, 10, 0x19, 0x0c, 0x28, 1, b'x', 0];
        let out = replace_key_values(&bare, &[("k", "v")]).unwrap();
        let s = parse_file_metadata(&out).unwrap();
        assert_eq!(s.key_values, vec![(&b"k"[..], Some(&b"v"[..]))]);
        assert!(out.ends_with(&[0x18, 1, b'x', 0]));
        // Many pairs use the long list header.
        let many: Vec<(String, String)> = (0..20)
            .map(|i| (format!("k{i}"), "v".repeat(200)))
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let s_out = replace_key_values(&buf, &refs).unwrap();
        assert_eq!(parse_file_metadata(&s_out).unwrap().key_values.len(), 20);
        assert!(replace_key_values(&[0x36, 10, 0x19, 0x0c, 0, 7], &[]).is_err());
    }

    #[test]
    fn state_key_is_found_from_the_end_or_anywhere() {
        let base = [
            0x36, 10, 0x19, 0x0c, 0x19, 0x1c, 0x18, 1, b'k', 0x18, 1, b'v', 0, 0,
        ];
        let with = |pairs: &[(&str, &str)]| replace_key_values(&base, pairs).unwrap();
        let ours = with(&[("n4a_summary", "{}"), ("n4a_state", "QUJD")]);
        let at = find_state_key(&ours).expect("last key/value");
        let (range, text_end) = locate_state(&ours, 0, at).unwrap();
        assert_eq!(&ours[range], b"QUJD");
        assert_eq!(&ours[text_end - 2..text_end], b"{}");
        // A key/value after ours holds a `_`: the backward scan misses,
        // the forward search finds the same place.
        let later = with(&[("n4a_state", "QUJD"), ("x_y", "z")]);
        let at = find_state_key(&later).unwrap();
        assert!(later[at..].starts_with(STATE_FRAMING));
        assert_eq!(find_state_key(&with(&[("n4a_summary", "{}")])), None);
        // A hit that is not the framing is refused.
        assert_eq!(locate_state(&ours, 0, 0), None);
    }

    #[test]
    fn same_schema_bytes_skip_the_walk_and_a_new_schema_replaces_them() {
        // schema (field 2): one element named `name`; num_rows = 5; no
        // row groups.
        let footer = |name: &[u8]| {
            let mut b = vec![0x29, 0x1c, 0x48, name.len() as u8];
            b.extend_from_slice(name);
            b.extend_from_slice(&[0x00, 0x16, 10, 0x19, 0x0c, 0x00]);
            b
        };
        let mut seen = Vec::new();
        let a = footer(b"a");
        assert_eq!(parse_counts(&a, a.len(), &mut seen).unwrap(), (5, 0));
        assert_eq!(seen, a[1..6]);
        assert_eq!(parse_counts(&a, a.len(), &mut seen).unwrap(), (5, 0));
        let b = footer(b"bcd");
        assert_eq!(parse_counts(&b, b.len(), &mut seen).unwrap(), (5, 0));
        assert_eq!(seen, b[1..8]);
        // One more element: the list header differs, the schema is walked.
        let mut c = footer(b"bcd");
        c[1] = 0x2c;
        c.splice(8..8, [0x48, 1, b'e', 0x00]);
        assert_eq!(parse_counts(&c, c.len(), &mut seen).unwrap(), (5, 0));
    }

    /// A footer written by the `parquet` crate, of random row groups,
    /// nulls, values and key/values: the footer bytes and the crate's own
    /// decoding of them.
    fn random_footer(
        groups: &[Vec<(Option<f64>, Option<String>)>],
        kv: &[(String, Option<String>)],
    ) -> (Vec<u8>, parquet::file::metadata::ParquetMetaData) {
        use arrow_array::{Float64Array, RecordBatch, StringArray};
        use arrow_schema::{DataType, Field, Schema};
        use parquet::file::properties::WriterProperties;
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("val_score", DataType::Float64, true),
            Field::new("other", DataType::Float64, true),
            Field::new("metric", DataType::Utf8, true),
        ]));
        let kvs = kv
            .iter()
            .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
            .collect();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(kvs))
            .build();
        let mut buf = Vec::new();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(&mut buf, schema.clone(), Some(props)).unwrap();
        for g in groups {
            let vals: Float64Array = g.iter().map(|(v, _)| *v).collect();
            let other: Float64Array = g.iter().map(|(v, _)| v.map(|x| -x)).collect();
            let names: StringArray = g.iter().map(|(_, m)| m.as_deref()).collect();
            let b = RecordBatch::try_new(
                schema.clone(),
                vec![
                    std::sync::Arc::new(vals),
                    std::sync::Arc::new(other),
                    std::sync::Arc::new(names),
                ],
            )
            .unwrap();
            w.write(&b).unwrap();
            w.flush().unwrap();
        }
        w.close().unwrap();
        let n = buf.len();
        let len = u32::from_le_bytes(buf[n - 8..n - 4].try_into().unwrap()) as usize;
        let footer = buf[n - 8 - len..n - 8].to_vec();
        let meta = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(buf))
            .unwrap();
        (footer, meta)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The skim decodes what the `parquet` crate wrote the way the
        /// crate's own decoder does: row and row-group counts, key/values,
        /// and each watched chunk's value count, null count and bounds.
        #[test]
        fn the_skim_agrees_with_the_parquet_crate(
            groups in proptest::collection::vec(
                proptest::collection::vec(
                    (
                        proptest::option::weighted(0.8, -1e6f64..1e6),
                        proptest::option::weighted(0.7, "[a-z_]{0,12}"),
                    ),
                    1..40,
                ),
                1..5,
            ),
            kv in proptest::collection::vec(
                ("[a-zA-Z_:]{1,16}", proptest::option::weighted(0.8, "[ -~]{0,40}")),
                0..6,
            ),
        ) {
            let (footer, meta) = random_footer(&groups, &kv);
            let watch = ["val_score", "metric"];
            let skim = parse_with_stats(&footer, &watch).unwrap();
            let fm = meta.file_metadata();
            proptest::prop_assert_eq!(skim.num_rows, fm.num_rows());
            proptest::prop_assert_eq!(skim.num_row_groups, meta.num_row_groups());
            let theirs: Vec<(Vec<u8>, Option<Vec<u8>>)> = fm
                .key_value_metadata()
                .map(|v| {
                    v.iter()
                        .map(|k| (k.key.clone().into_bytes(), k.value.clone().map(String::into_bytes)))
                        .collect()
                })
                .unwrap_or_default();
            let mine: Vec<(Vec<u8>, Option<Vec<u8>>)> = skim
                .key_values
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect();
            proptest::prop_assert_eq!(mine, theirs);
            let mut expected = Vec::new();
            for rg in meta.row_groups() {
                for (i, name) in watch.iter().enumerate() {
                    let col = rg
                        .columns()
                        .iter()
                        .find(|c| c.column_path().string() == *name)
                        .unwrap();
                    let st = col.statistics();
                    expected.push((
                        i,
                        col.num_values(),
                        st.and_then(|s| s.null_count_opt()).map(|n| n as i64),
                        st.and_then(|s| s.min_bytes_opt()).map(<[u8]>::to_vec),
                        st.and_then(|s| s.max_bytes_opt()).map(<[u8]>::to_vec),
                    ));
                }
            }
            let got: Vec<_> = skim
                .chunk_stats
                .iter()
                .map(|c| (c.column, c.num_values, c.null_count, c.min.map(<[u8]>::to_vec), c.max.map(<[u8]>::to_vec)))
                .collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
