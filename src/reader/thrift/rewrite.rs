//! Re-emitting a footer with only its key/value metadata changed (what
//! `refresh` writes).

use super::cursor::Cursor;
use super::{SkimError, R};

/// Re-encodes a serialized `FileMetaData` with its key/value metadata
/// (field 5) replaced by `kv`, every other field copied byte for byte in
/// field-id order. Cost: one pass over the footer, no decoding of the
/// schema or column chunks.
///
/// # Errors
/// [`SkimError`] on malformed input or trailing bytes after the struct (a
/// footer we do not fully understand is never rewritten).
pub fn replace_key_values(buf: &[u8], kv: &[(&str, &str)]) -> R<Vec<u8>> {
    let mut c = Cursor { buf, pos: 0 };
    let mut fields: Vec<(i16, u8, &[u8])> = Vec::new();
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        let start = c.pos;
        c.skip(ty, 1)?;
        if id != 5 {
            fields.push((id, ty, &buf[start..c.pos]));
        }
    }
    if c.pos != buf.len() {
        return Err(SkimError("bytes after the FileMetaData struct"));
    }
    let mut list = Vec::with_capacity(kv.iter().map(|(k, v)| k.len() + v.len() + 16).sum());
    if kv.len() < 15 {
        list.push(((kv.len() as u8) << 4) | 12);
    } else {
        list.push(0xfc);
        put_varint(&mut list, kv.len() as u64);
    }
    for (k, v) in kv {
        for (header, bytes) in [(0x18u8, k.as_bytes()), (0x18u8, v.as_bytes())] {
            list.push(header);
            put_varint(&mut list, bytes.len() as u64);
            list.extend_from_slice(bytes);
        }
        list.push(0);
    }
    let at = fields.iter().position(|f| f.0 > 5).unwrap_or(fields.len());
    fields.insert(at, (5, 9, &list));
    if fields.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(SkimError("field ids out of order or repeated"));
    }
    let mut out = Vec::with_capacity(buf.len() + list.len());
    let mut last = 0i16;
    for (id, ty, bytes) in fields {
        let delta = i32::from(id) - i32::from(last);
        if (1..=15).contains(&delta) {
            out.push(((delta as u8) << 4) | ty);
        } else {
            out.push(ty);
            let z = ((i64::from(id) << 1) ^ (i64::from(id) >> 63)) as u64;
            put_varint(&mut out, z);
        }
        out.extend_from_slice(bytes);
        last = id;
    }
    out.push(0);
    Ok(out)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
