//! Finding byte ranges in a footer without a full parse: the summary text,
//! the state key/value, every key/value's range, the row count; what lets
//! a reader take a large footer's small part from the end of the file.

use super::cursor::Cursor;
use super::rewrite::put_varint;
use super::{SkimError, R};

/// Where a summary text is in a footer whose `n4a_summary` key/value can
/// be found by its framing (`0x18 0x0b "n4a_summary" 0x18 varint(len)`,
/// which cannot occur in JSON or base64), the text a JSON object ending
/// where its key/value struct ends: the text's range.
pub fn locate_summary(footer: &[u8]) -> Option<std::ops::Range<usize>> {
    const KEY: &[u8] = b"\x18\x0bn4a_summary\x18";
    let hit = memchr::memmem::find(footer, KEY)?;
    let mut c = Cursor {
        buf: footer,
        pos: hit + KEY.len(),
    };
    let n = usize::try_from(c.varint().ok()?).ok()?;
    let start = c.pos;
    let end = start.checked_add(n)?;
    let ok = footer.get(end) == Some(&0)
        && footer.get(start) == Some(&b'{')
        && footer.get(end.checked_sub(1)?) == Some(&b'}');
    ok.then_some(start..end)
}

/// The row count and the number of row groups of a serialized
/// `FileMetaData`, read from its start without walking the row groups (the
/// `row_groups` list header gives their number). `footer_len` bounds the
/// count.
///
/// `seen_schema` is the serialized schema of the footer parsed before (empty
/// at first): a workspace's files share one schema, and bytes equal to a
/// complete list parse to the same end, so a `memcmp` replaces the walk.
/// It is replaced when this footer's schema differs.
///
/// # Errors
/// [`SkimError`] on malformed input, or when `buf` ends before the
/// `row_groups` header.
pub fn parse_counts(buf: &[u8], footer_len: usize, seen_schema: &mut Vec<u8>) -> R<(i64, usize)> {
    let mut c = Cursor { buf, pos: 0 };
    let mut rows = None;
    let mut last = 0;
    while let Some((id, ty)) = c.field(&mut last)? {
        match (id, ty) {
            (2, 9) => {
                let start = c.pos;
                if !seen_schema.is_empty() && buf[start..].starts_with(seen_schema) {
                    c.pos += seen_schema.len();
                } else {
                    c.skip(ty, 1)?;
                    seen_schema.clear();
                    seen_schema.extend_from_slice(&buf[start..c.pos]);
                }
            }
            (3, 6) => rows = Some(c.zigzag()?),
            (4, 9) => {
                let b = c.byte()?;
                let n = match b >> 4 {
                    15 => usize::try_from(c.varint()?).map_err(|_| SkimError("list size"))?,
                    n => usize::from(n),
                };
                if n > footer_len {
                    return Err(SkimError("more row groups than footer bytes"));
                }
                return rows
                    .map(|r| (r, n))
                    .ok_or(SkimError("row_groups before num_rows"));
            }
            (id, _) if id > 4 => break,
            (_, t) => c.skip(t, 1)?,
        }
    }
    Err(SkimError("missing num_rows or row_groups"))
}

/// The state key's framing, `0x18 0x09 "n4a_state" 0x18`.
pub(super) const STATE_FRAMING: &[u8] = b"\x18\x09n4a_state\x18";

/// Where [`STATE_FRAMING`] starts in `window`, if it occurs. The pattern
/// is unique in a footer: it cannot occur in JSON text or base64, and a
/// footer has one such key.
///
/// Fast path: the state is the footer's last key/value, and nothing after
/// its key (base64, `created_by`, the column orders' small integers) holds
/// a `_`, so the last `_` (a backward SIMD scan over the few KB of the
/// head) is the key's when the footer is n4a's. Anything else (nirs4all's
/// footers, a key/value another tool added after ours) falls back to a
/// forward SIMD search over the whole window.
pub fn find_state_key(window: &[u8]) -> Option<usize> {
    const UNDERSCORE_AT: usize = 5;
    if let Some(u) = memchr::memrchr(b'_', window) {
        if let Some(at) = u.checked_sub(UNDERSCORE_AT) {
            if window[at..].starts_with(STATE_FRAMING) {
                return Some(at);
            }
        }
    }
    memchr::memmem::find(window, STATE_FRAMING)
}

/// Where n4a 1.2 wrote its two key/values, found from the end of a footer
/// without parsing what comes before: the last key/value is `n4a_state`,
/// the one before `n4a_summary`. `window` holds the footer's bytes from
/// offset `window_at` to its end, and its state key at `hit` (from
/// [`find_state_key`]). Returns the state value's range (in the footer)
/// when its framing is found, and where the summary text would end; the
/// summary's framing is checked against [`summary_framing`] once the state
/// says the text's length.
///
/// Safe against look-alikes: the pattern (`0x18 0x09 "n4a_state" 0x18`, a
/// Thrift string field header, the key, the value's header) cannot occur
/// in JSON text or base64, and every byte around it is checked.
pub fn locate_state(
    window: &[u8],
    window_at: usize,
    hit: usize,
) -> Option<(std::ops::Range<usize>, usize)> {
    if !window.get(hit..)?.starts_with(STATE_FRAMING) {
        return None;
    }
    // Preceded by the end of the summary's KeyValue struct.
    if hit == 0 || window[hit - 1] != 0 {
        return None;
    }
    let mut c = Cursor {
        buf: window,
        pos: hit + STATE_FRAMING.len(),
    };
    let n = usize::try_from(c.varint().ok()?).ok()?;
    let start = c.pos;
    let end = start.checked_add(n)?;
    // Followed by the end of its own KeyValue struct.
    if window.get(end) != Some(&0) {
        return None;
    }
    // The summary text, if framed as n4a writes it, ends at `hit - 1`.
    Some((window_at + start..window_at + end, window_at + hit - 1))
}

/// The framing expected just before a summary text of `len` bytes that
/// ends at the state's KeyValue struct: `0x18 0x0b "n4a_summary" 0x18
/// varint(len)`. Returns the bytes to compare with what precedes the text.
pub fn summary_framing(len: usize) -> Vec<u8> {
    let mut out = b"\x18\x0bn4a_summary\x18".to_vec();
    put_varint(&mut out, len as u64);
    out
}

/// One key/value entry located in a footer, its value not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvAt {
    /// The key.
    pub key: Vec<u8>,
    /// Where the value lies in the footer (offset, length), if it has one.
    pub value: Option<(usize, usize)>,
}

/// Walks the key/value list whose header is at `at` in a footer of `len`
/// bytes, reading keys and lengths through `fetch(offset, n)` (which may
/// return fewer bytes near the end) and skipping over values. Cost: a few
/// small fetches per entry, whatever the values' sizes.
///
/// # Errors
/// [`SkimError`] on malformed input or an unexpected field.
pub fn locate_key_values<'f>(
    at: usize,
    len: usize,
    fetch: &mut dyn FnMut(usize, usize) -> R<std::borrow::Cow<'f, [u8]>>,
) -> R<Vec<KvAt>> {
    let window = |fetch: &mut dyn FnMut(usize, usize) -> R<std::borrow::Cow<'f, [u8]>>,
                  pos: usize| {
        if pos >= len {
            return Err(SkimError("key/values run past the footer"));
        }
        fetch(pos, 24.min(len - pos))
    };
    let head = window(fetch, at)?;
    let mut c = Cursor { buf: &head, pos: 0 };
    let (n, et) = {
        let b = c.byte()?;
        let size = match b >> 4 {
            15 => usize::try_from(c.varint()?).map_err(|_| SkimError("list size"))?,
            n => usize::from(n),
        };
        (size, b & 0x0f)
    };
    if et != 12 {
        return Err(SkimError("key_value_metadata is not a list of structs"));
    }
    if n > len - at {
        return Err(SkimError("list longer than the footer"));
    }
    let mut pos = at + c.pos;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut entry = KvAt {
            key: Vec::new(),
            value: None,
        };
        let mut last = 0i16;
        let mut have_key = false;
        loop {
            let w = window(fetch, pos)?;
            let mut c = Cursor { buf: &w, pos: 0 };
            let Some((id, ty)) = c.field(&mut last)? else {
                pos += c.pos;
                break;
            };
            if ty != 8 || !(id == 1 || id == 2) {
                return Err(SkimError("unexpected field in a key/value entry"));
            }
            let n = usize::try_from(c.varint()?).map_err(|_| SkimError("length overflow"))?;
            let start = pos + c.pos;
            let end = start.checked_add(n).filter(|e| *e <= len);
            let end = end.ok_or(SkimError("value runs past the footer"))?;
            if id == 1 {
                entry.key = fetch(start, n)?.into_owned();
                if entry.key.len() != n {
                    return Err(SkimError("key cut short"));
                }
                have_key = true;
            } else {
                entry.value = Some((start, n));
            }
            pos = end;
        }
        if !have_key {
            return Err(SkimError("key without name"));
        }
        out.push(entry);
    }
    Ok(out)
}
