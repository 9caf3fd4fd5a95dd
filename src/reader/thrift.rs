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

const MAX_DEPTH: u32 = 32;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> R<u8> {
        let b = *self.buf.get(self.pos).ok_or(SkimError("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn varint(&mut self) -> R<u64> {
        // Field ids, lengths and most values fit in one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        let mut out = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(SkimError("varint too long"))
    }

    fn zigzag(&mut self) -> R<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(SkimError("length overflow"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(SkimError("unexpected end"))?;
        self.pos = end;
        Ok(s)
    }

    fn binary(&mut self) -> R<&'a [u8]> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| SkimError("length overflow"))?)
    }

    /// Reads a field header; `None` at the struct's stop.
    fn field(&mut self, last: &mut i16) -> R<Option<(i16, u8)>> {
        let b = self.byte()?;
        let ty = b & 0x0f;
        if ty == 0 {
            return Ok(None);
        }
        let delta = b >> 4;
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| SkimError("field id"))?
        } else {
            last.checked_add(i16::from(delta))
                .ok_or(SkimError("field id"))?
        };
        *last = id;
        Ok(Some((id, ty)))
    }

    fn list_header(&mut self) -> R<(usize, u8)> {
        let b = self.byte()?;
        let size = match b >> 4 {
            15 => usize::try_from(self.varint()?).map_err(|_| SkimError("list size"))?,
            n => usize::from(n),
        };
        // Each element takes at least one byte.
        if size > self.buf.len() - self.pos {
            return Err(SkimError("list longer than the footer"));
        }
        Ok((size, b & 0x0f))
    }

    /// Skips a varint without decoding it.
    #[inline]
    fn skip_varint(&mut self) -> R<()> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.iter().take(10).position(|b| b & 0x80 == 0) {
            Some(i) => {
                self.pos += i + 1;
                Ok(())
            }
            None => Err(SkimError("varint too long or cut")),
        }
    }

    fn skip(&mut self, ty: u8, depth: u32) -> R<()> {
        if depth > MAX_DEPTH {
            return Err(SkimError("nesting too deep"));
        }
        match ty {
            1 | 2 => Ok(()),
            3 => self.byte().map(drop),
            4..=6 => self.skip_varint(),
            7 => self.take(8).map(drop),
            8 => self.binary().map(drop),
            9 | 10 => {
                let (n, et) = self.list_header()?;
                match et {
                    // Lists of integers (encodings, histograms): varints.
                    4..=6 => (0..n).try_for_each(|_| self.skip_varint()),
                    _ => (0..n).try_for_each(|_| self.skip_elem(et, depth + 1)),
                }
            }
            11 => {
                let n = usize::try_from(self.varint()?).map_err(|_| SkimError("map size"))?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.skip_elem(kv >> 4, depth + 1)?;
                    self.skip_elem(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.skip_struct(depth),
            _ => Err(SkimError("unknown type")),
        }
    }

    /// Skips a struct's fields to its stop byte: field ids are not needed,
    /// only each field's type (most of a footer is skipped this way).
    fn skip_struct(&mut self, depth: u32) -> R<()> {
        loop {
            let b = self.byte()?;
            let ty = b & 0x0f;
            if ty == 0 {
                return Ok(());
            }
            if b >> 4 == 0 {
                // A long-form header: the field id follows as a varint.
                self.skip_varint()?;
            }
            self.skip(ty, depth + 1)?;
        }
    }

    /// Booleans inside collections take one byte each.
    fn skip_elem(&mut self, ty: u8, depth: u32) -> R<()> {
        if ty == 1 || ty == 2 {
            self.byte().map(drop)
        } else {
            self.skip(ty, depth)
        }
    }
}

/// Skims a serialized `FileMetaData` (the bytes before the footer's length
/// and magic).
///
/// # Errors
/// [`SkimError`] on any malformed or truncated input.
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
const STATE_FRAMING: &[u8] = b"\x18\x09n4a_state\x18";

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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
