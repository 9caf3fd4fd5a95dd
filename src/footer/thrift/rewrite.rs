//! Re-emitting a footer: with its key/value metadata replaced (what
//! `refresh` writes) and always in the form every reader our users have
//! accepts (issue 28).
//!
//! The `parquet` crate (since 54) writes two things into every footer that
//! readers of before mid-2026 reject or misread:
//!
//! - `ColumnOrder` `IEEE_754_TOTAL_ORDER` (union field 2) for FLOAT and
//!   DOUBLE columns. polars up to 1.41 (its own Thrift decoder) refuses the
//!   whole file with `Invalid thrift: bad data`. We write
//!   `TYPE_DEFINED_ORDER` (field 1), as pyarrow does; the two encodings
//!   have the same length.
//! - Chunk statistics whose minimum or maximum is NaN (only when every
//!   value of the chunk is NaN: under total order, NaN is kept out of them
//!   otherwise). Under `TYPE_DEFINED_ORDER` a NaN bound is meaningless and
//!   a reader that trusts it may skip the chunk, so such bounds are
//!   dropped (pyarrow writes none either); the null count stays.
//!
//! Everything else the crate writes is either known to every reader of
//! the matrix (`tests/compat`) or an optional field they skip (statistics'
//! `nan_count`, a row group's `ordinal`, size statistics).

use super::cursor::Cursor;
use super::{SkimError, R};

/// Thrift compact types used here.
const T_I32: u8 = 5;
const T_BINARY: u8 = 8;
const T_LIST: u8 = 9;
const T_STRUCT: u8 = 12;
/// Parquet physical types whose statistics can hold NaN.
const FLOAT: i64 = 4;
const DOUBLE: i64 = 5;

/// Re-encodes a serialized `FileMetaData` with its key/value metadata
/// (field 5) replaced by `kv`, in the compatible form above. Cost: one
/// pass over the footer; the row groups are re-emitted only when one of
/// their statistics needs it.
///
/// # Errors
/// [`SkimError`] on malformed input or trailing bytes after the struct (a
/// footer we do not fully understand is never rewritten).
pub fn replace_key_values(buf: &[u8], kv: &[(&str, &str)]) -> R<Vec<u8>> {
    rewrite(buf, Some(kv))
}

/// [`replace_key_values`] keeping the key/values as they are: the footer
/// a freshly written file gets before it is committed.
///
/// # Errors
/// As [`replace_key_values`].
pub fn make_compatible(buf: &[u8]) -> R<Vec<u8>> {
    rewrite(buf, None)
}

/// Whether a serialized `FileMetaData` is already in the compatible form
/// (so [`make_compatible`] would return it unchanged).
///
/// # Errors
/// As [`replace_key_values`].
pub fn is_compatible(buf: &[u8]) -> R<bool> {
    Ok(make_compatible(buf)? == buf)
}

fn rewrite(buf: &[u8], kv: Option<&[(&str, &str)]>) -> R<Vec<u8>> {
    let mut c = Cursor { buf, pos: 0 };
    let mut fields: Vec<(i16, u8, Vec<u8>)> = Vec::new();
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        let start = c.pos;
        c.skip(ty, 1)?;
        let body = &buf[start..c.pos];
        match (id, ty) {
            (5, _) if kv.is_some() => {}
            (4, T_LIST) => fields.push((id, ty, row_groups(body)?)),
            (7, T_LIST) => fields.push((id, ty, column_orders(body)?)),
            _ => fields.push((id, ty, body.to_vec())),
        }
    }
    if c.pos != buf.len() {
        return Err(SkimError("bytes after the FileMetaData struct"));
    }
    if let Some(kv) = kv {
        let at = fields.iter().position(|f| f.0 > 5).unwrap_or(fields.len());
        fields.insert(at, (5, T_LIST, key_value_list(kv)));
    }
    if fields.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(SkimError("field ids out of order or repeated"));
    }
    let mut out = Vec::with_capacity(buf.len() + 64);
    emit_struct(
        &mut out,
        fields.iter().map(|(i, t, b)| (*i, *t, b.as_slice())),
    );
    Ok(out)
}

/// Writes a struct's fields (ascending ids) and its stop byte.
fn emit_struct<'a>(out: &mut Vec<u8>, fields: impl Iterator<Item = (i16, u8, &'a [u8])>) {
    let mut last = 0i16;
    for (id, ty, bytes) in fields {
        let delta = i32::from(id) - i32::from(last);
        if (1..=15).contains(&delta) {
            out.push(((delta as u8) << 4) | ty);
        } else {
            out.push(ty);
            let z = ((i64::from(id) << 1) ^ (i64::from(id) >> 63)) as u64;
            put_varint(out, z);
        }
        out.extend_from_slice(bytes);
        last = id;
    }
    out.push(0);
}

fn key_value_list(kv: &[(&str, &str)]) -> Vec<u8> {
    let mut list = Vec::with_capacity(kv.iter().map(|(k, v)| k.len() + v.len() + 16).sum());
    list_header(&mut list, kv.len(), T_STRUCT);
    for (k, v) in kv {
        for bytes in [k.as_bytes(), v.as_bytes()] {
            list.push(0x10 | T_BINARY);
            put_varint(&mut list, bytes.len() as u64);
            list.extend_from_slice(bytes);
        }
        list.push(0);
    }
    list
}

fn list_header(out: &mut Vec<u8>, n: usize, et: u8) {
    if n < 15 {
        out.push(((n as u8) << 4) | et);
    } else {
        out.push(0xf0 | et);
        put_varint(out, n as u64);
    }
}

/// `FileMetaData.column_orders`: every `IEEE_754_TOTAL_ORDER` (an empty
/// struct in union field 2) becomes `TYPE_DEFINED_ORDER` (field 1), in
/// place: `2C 00 00` -> `1C 00 00`.
fn column_orders(body: &[u8]) -> R<Vec<u8>> {
    let mut out = body.to_vec();
    let mut c = Cursor { buf: body, pos: 0 };
    let (n, et) = c.list_header()?;
    if et != T_STRUCT {
        return Err(SkimError("column_orders is not a list of structs"));
    }
    for _ in 0..n {
        let at = c.pos;
        let mut last = 0;
        match c.field(&mut last)? {
            Some((2, T_STRUCT)) if body.get(at) == Some(&0x2c) => {
                c.skip_struct(2)?;
                if c.byte()? != 0 {
                    return Err(SkimError("a ColumnOrder union with two fields"));
                }
                out[at] = 0x10 | T_STRUCT;
            }
            Some((_, ty)) => {
                c.skip(ty, 2)?;
                if c.byte()? != 0 {
                    return Err(SkimError("a ColumnOrder union with two fields"));
                }
            }
            None => {}
        }
    }
    if c.pos != body.len() {
        return Err(SkimError("column_orders longer than its list"));
    }
    Ok(out)
}

/// `FileMetaData.row_groups`, with NaN statistics bounds of FLOAT and
/// DOUBLE chunks dropped; the bytes as they were when none has one.
fn row_groups(body: &[u8]) -> R<Vec<u8>> {
    if !has_nan_bounds(body)? {
        return Ok(body.to_vec());
    }
    let mut c = Cursor { buf: body, pos: 0 };
    let (n, et) = c.list_header()?;
    let mut out = body[..c.pos].to_vec();
    for _ in 0..n {
        if et != T_STRUCT {
            return Err(SkimError("row groups are not structs"));
        }
        let fields = struct_fields(&mut c, 2, |id, ty, b| match (id, ty) {
            (1, T_LIST) => list_of_structs(b, 3, column_chunk),
            _ => Ok(b.to_vec()),
        })?;
        emit_owned(&mut out, &fields);
    }
    Ok(out)
}

/// Whether any FLOAT or DOUBLE chunk's statistics hold a NaN bound (a
/// read-only walk: most footers have none and are copied as they are).
fn has_nan_bounds(body: &[u8]) -> R<bool> {
    let mut found = false;
    let mut c = Cursor { buf: body, pos: 0 };
    let (n, _) = c.list_header()?;
    for _ in 0..n {
        struct_fields(&mut c, 2, |id, ty, b| {
            if (id, ty) == (1, T_LIST) {
                list_of_structs(b, 3, |chunk, depth| {
                    let mut cc = Cursor { buf: chunk, pos: 0 };
                    struct_fields(&mut cc, depth, |id, ty, m| {
                        if (id, ty) == (3, T_STRUCT) {
                            found |= meta_has_nan(m)?;
                        }
                        Ok(Vec::new())
                    })?;
                    Ok(Vec::new())
                })?;
            }
            Ok(Vec::new())
        })?;
    }
    Ok(found)
}

/// Reads one struct at `c`, mapping each field's value bytes through `f`.
fn struct_fields(
    c: &mut Cursor<'_>,
    depth: u32,
    mut f: impl FnMut(i16, u8, &[u8]) -> R<Vec<u8>>,
) -> R<Vec<(i16, u8, Vec<u8>)>> {
    let mut fields = Vec::new();
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        let start = c.pos;
        c.skip(ty, depth)?;
        fields.push((id, ty, f(id, ty, &c.buf[start..c.pos])?));
    }
    Ok(fields)
}

fn emit_owned(out: &mut Vec<u8>, fields: &[(i16, u8, Vec<u8>)]) {
    emit_struct(out, fields.iter().map(|(i, t, b)| (*i, *t, b.as_slice())));
}

/// A list of structs (its bytes), each element re-emitted by `f`.
fn list_of_structs(
    body: &[u8],
    depth: u32,
    mut f: impl FnMut(&[u8], u32) -> R<Vec<u8>>,
) -> R<Vec<u8>> {
    let mut c = Cursor { buf: body, pos: 0 };
    let (n, et) = c.list_header()?;
    if et != T_STRUCT {
        return Err(SkimError("a list of structs expected"));
    }
    let mut out = body[..c.pos].to_vec();
    for _ in 0..n {
        let start = c.pos;
        c.skip_struct(depth)?;
        out.extend(f(&body[start..c.pos], depth + 1)?);
    }
    Ok(out)
}

/// A `ColumnChunk` with its `meta_data` (field 3) re-emitted.
fn column_chunk(chunk: &[u8], depth: u32) -> R<Vec<u8>> {
    let mut c = Cursor { buf: chunk, pos: 0 };
    let fields = struct_fields(&mut c, depth, |id, ty, b| match (id, ty) {
        (3, T_STRUCT) => column_meta(b, depth + 1),
        _ => Ok(b.to_vec()),
    })?;
    let mut out = Vec::with_capacity(chunk.len());
    emit_owned(&mut out, &fields);
    Ok(out)
}

/// The physical type (field 1) of a `ColumnMetaData`'s bytes.
fn physical_type(meta: &[u8]) -> R<Option<i64>> {
    let mut c = Cursor { buf: meta, pos: 0 };
    let mut last = 0;
    match c.field(&mut last)? {
        Some((1, T_I32)) => Ok(Some(c.zigzag()?)),
        _ => Ok(None),
    }
}

fn meta_has_nan(meta: &[u8]) -> R<bool> {
    let Some(ty @ (FLOAT | DOUBLE)) = physical_type(meta)? else {
        return Ok(false);
    };
    let mut found = false;
    let mut c = Cursor { buf: meta, pos: 0 };
    struct_fields(&mut c, 5, |id, t, b| {
        if (id, t) == (12, T_STRUCT) {
            found |= stats_bounds_nan(b, ty)?;
        }
        Ok(Vec::new())
    })?;
    Ok(found)
}

/// A `ColumnMetaData` whose statistics (field 12) lose NaN bounds.
fn column_meta(meta: &[u8], depth: u32) -> R<Vec<u8>> {
    let ty = physical_type(meta)?;
    let mut c = Cursor { buf: meta, pos: 0 };
    let fields = struct_fields(&mut c, depth, |id, t, b| match (id, t, ty) {
        (12, T_STRUCT, Some(ty @ (FLOAT | DOUBLE))) if stats_bounds_nan(b, ty)? => {
            let mut sc = Cursor { buf: b, pos: 0 };
            let kept: Vec<_> = struct_fields(&mut sc, depth + 1, |_, _, v| Ok(v.to_vec()))?
                .into_iter()
                // max, min, max_value, min_value, is_max/min_value_exact
                .filter(|(id, _, _)| !matches!(id, 1 | 2 | 5..=8))
                .collect();
            let mut out = Vec::new();
            emit_owned(&mut out, &kept);
            Ok(out)
        }
        _ => Ok(b.to_vec()),
    })?;
    let mut out = Vec::with_capacity(meta.len());
    emit_owned(&mut out, &fields);
    Ok(out)
}

/// Whether a `Statistics` struct (its bytes) has a NaN min or max.
fn stats_bounds_nan(stats: &[u8], ty: i64) -> R<bool> {
    let mut c = Cursor { buf: stats, pos: 0 };
    let mut nan = false;
    let mut last = 0;
    while let Some((id, t)) = c.field(&mut last)? {
        if matches!(id, 1 | 2 | 5 | 6) && t == T_BINARY {
            let v = c.binary()?;
            nan |= match (ty, v.len()) {
                (DOUBLE, 8) => f64::from_le_bytes(v.try_into().expect("8 bytes")).is_nan(),
                (FLOAT, 4) => f32::from_le_bytes(v.try_into().expect("4 bytes")).is_nan(),
                _ => false,
            };
        } else {
            c.skip(t, 6)?;
        }
    }
    Ok(nan)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::basic::ColumnOrder;
    use parquet::file::metadata::ParquetMetaDataReader;
    use std::sync::Arc;

    /// A file written by the parquet crate with a DOUBLE column of `values`
    /// and a string column; its serialized footer and the whole file.
    fn written(values: Vec<Option<f64>>) -> (Vec<u8>, Vec<u8>) {
        use arrow_array::{Float64Array, RecordBatch, StringArray};
        let n = values.len();
        let batch = RecordBatch::try_from_iter([
            (
                "s",
                Arc::new(StringArray::from(vec!["a"; n])) as arrow_array::ArrayRef,
            ),
            ("x", Arc::new(Float64Array::from(values)) as _),
        ])
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let n = buf.len();
        let len = u32::from_le_bytes(buf[n - 8..n - 4].try_into().unwrap()) as usize;
        (buf[n - 8 - len..n - 8].to_vec(), buf)
    }

    fn decode(footer: &[u8], file: &[u8]) -> parquet::file::metadata::ParquetMetaData {
        let mut f = file[..file.len() - 8 - footer_len(file)].to_vec();
        f.extend_from_slice(footer);
        f.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        f.extend_from_slice(b"PAR1");
        ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(f))
            .unwrap()
    }

    fn footer_len(file: &[u8]) -> usize {
        let n = file.len();
        u32::from_le_bytes(file[n - 8..n - 4].try_into().unwrap()) as usize
    }

    #[test]
    fn issue_28_double_columns_get_type_defined_order() {
        let (footer, file) = written(vec![Some(1.0), Some(f64::NAN), None, Some(-2.0)]);
        let before = decode(&footer, &file);
        assert_eq!(
            before.file_metadata().column_order(1),
            ColumnOrder::IEEE_754_TOTAL_ORDER,
            "what the parquet crate writes"
        );
        let out = make_compatible(&footer).unwrap();
        assert_eq!(out.len(), footer.len(), "patched in place");
        let after = decode(&out, &file);
        assert!(matches!(
            after.file_metadata().column_order(1),
            ColumnOrder::TYPE_DEFINED_ORDER(_)
        ));
        assert_eq!(
            after.file_metadata().column_order(0),
            before.file_metadata().column_order(0)
        );
        // NaN is not a bound here (numbers are there): stats kept.
        let stats = after.row_group(0).column(1).statistics().unwrap();
        assert!(stats.min_bytes_opt().is_some());
        assert_eq!(make_compatible(&out).unwrap(), out, "idempotent");
        assert!(is_compatible(&out).unwrap());
        assert!(!is_compatible(&footer).unwrap());
    }

    #[test]
    fn issue_28_nan_bounds_are_dropped_and_the_rest_kept() {
        let (footer, file) = written(vec![Some(f64::NAN), None, Some(f64::NAN)]);
        let before = decode(&footer, &file);
        let s = before.row_group(0).column(1).statistics().unwrap();
        assert!(s.min_bytes_opt().is_some(), "the crate writes NaN bounds");
        let out = make_compatible(&footer).unwrap();
        let after = decode(&out, &file);
        let s = after.row_group(0).column(1).statistics().unwrap();
        assert!(s.min_bytes_opt().is_none() && s.max_bytes_opt().is_none());
        assert_eq!(s.null_count_opt(), Some(1), "the null count stays");
        assert_eq!(
            after.row_group(0).column(0).statistics(),
            before.row_group(0).column(0).statistics(),
            "other columns untouched"
        );
        assert_eq!(after.file_metadata().num_rows(), 3);
        assert_eq!(make_compatible(&out).unwrap(), out, "idempotent");
    }

    #[test]
    fn issue_28_key_values_are_replaced_in_the_compatible_form() {
        let (footer, file) = written(vec![Some(1.0)]);
        let out = replace_key_values(&footer, &[("k", "v")]).unwrap();
        let after = decode(&out, &file);
        let kv = after.file_metadata().key_value_metadata().unwrap();
        assert_eq!(
            (kv[0].key.as_str(), kv[0].value.as_deref()),
            ("k", Some("v"))
        );
        assert!(matches!(
            after.file_metadata().column_order(1),
            ColumnOrder::TYPE_DEFINED_ORDER(_)
        ));
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        let (footer, _) = written(vec![Some(1.0)]);
        for cut in 0..footer.len() {
            let _ = make_compatible(&footer[..cut]);
        }
        let mut seed = 7u64;
        for _ in 0..2000 {
            let mut f = footer.clone();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let at = (seed >> 33) as usize % f.len();
            f[at] = (seed >> 13) as u8;
            let _ = make_compatible(&f);
        }
    }
}
