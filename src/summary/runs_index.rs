//! The index of a summary text's `runs` array: each entry's span and the
//! XXH3 of its name, what listing a workspace's runs once needs
//! (`workspace::merge::runs`). n4a writes it at the end of a file's runs in
//! the body (`N4R3`, see `codec`), so a listing reads 16 bytes a run
//! instead of scanning the text; for other texts it is made from the text
//! (a `memmem` pass and a hash per name).

use serde::Deserialize;

/// Each entry of a text's `runs` array: its span in the text and its
/// name's XXH3.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunsIndex {
    /// (start, end) of each entry's object, in bytes of the whole text.
    pub spans: Vec<(u32, u32)>,
    /// XXH3-64 of each entry's name (its `id`, else `name`).
    pub hashes: Vec<u64>,
}

/// `,"runs":`, the member the runs array follows (always the text's last).
pub const RUNS_KEY: &[u8] = b",\"runs\":";

/// Magic of the stored index.
const MAGIC: &[u8; 4] = b"N4X1";

impl RunsIndex {
    /// The index as stored after a file's runs: `"N4X1"`, the text's
    /// XXH3-64 (the index is for that text only), the count (u32 LE), then
    /// each entry's start and end (u32 LE) and name hash (u64 LE).
    pub fn to_bytes(&self, text_hash: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::stored_len(self.spans.len()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&text_hash.to_le_bytes());
        out.extend_from_slice(&(self.spans.len() as u32).to_le_bytes());
        for (&(s, e), &h) in self.spans.iter().zip(&self.hashes) {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&e.to_le_bytes());
            out.extend_from_slice(&h.to_le_bytes());
        }
        out
    }

    /// Bytes of a stored index of `n` entries.
    pub fn stored_len(n: usize) -> usize {
        16 + 16 * n
    }

    /// A stored index of `n` entries, if `bytes` are one made for the text
    /// of hash `text_hash` whose spans fit a text of `text_len` bytes.
    pub fn from_bytes(
        bytes: &[u8],
        n: usize,
        text_hash: u64,
        text_len: usize,
    ) -> Option<RunsIndex> {
        if bytes.len() != Self::stored_len(n) || &bytes[..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        if u64_at(4) != text_hash || u32_at(12) as usize != n {
            return None;
        }
        let mut spans = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for i in 0..n {
            let at = 16 + 16 * i;
            let (s, e) = (u32_at(at), u32_at(at + 4));
            if s >= e || e as usize > text_len {
                return None;
            }
            spans.push((s, e));
            hashes.push(u64_at(at + 8));
        }
        Some(RunsIndex { spans, hashes })
    }

    /// The index of `text`'s runs array, `runs_at` the offset of
    /// `,"runs":` in it; `None` when the array is not where it should be or
    /// does not parse as an array of objects. Cost: one `memmem` pass over
    /// the array (about 10 GB/s) and a hash per name.
    pub fn of(text: &[u8], runs_at: usize) -> Option<RunsIndex> {
        let base = runs_at + RUNS_KEY.len();
        if text.len() < base + 1 || u32::try_from(text.len()).is_err() {
            return None;
        }
        let array = &text[base..text.len() - 1];
        let spans = fast_spans(array).or_else(|| entry_spans(array))?;
        let hashes = spans
            .iter()
            .map(|&(s, e)| xxhash_rust::xxh3::xxh3_64(&name_of(&array[s..e])))
            .collect();
        Some(RunsIndex {
            spans: spans
                .into_iter()
                .map(|(s, e)| ((base + s) as u32, (base + e) as u32))
                .collect(),
            hashes,
        })
    }
}

/// The spans of a runs array written as n4a and nirs4all write it: each
/// entry an object whose first member is `id`, joined by `},{"id":"`
/// (n4a, compact) or `}, {"id": "` (Python's `json.dumps`). A quote
/// inside a string is escaped, so neither joint can occur inside one: a
/// search for the joint finds exactly the entries' boundaries (about
/// 10 GB/s). Each entry found is then checked to be one flat object
/// starting so (no other brace in it: a brace inside a string, a nested
/// object or an entry whose `id` is not a string send the array to the
/// general scan). `None` when the array does not look so (the general scan
/// then reads it).
pub(crate) fn fast_spans(a: &[u8]) -> Option<Vec<(usize, usize)>> {
    static JOINTS: std::sync::OnceLock<[(memchr::memmem::Finder<'static>, &'static [u8]); 2]> =
        std::sync::OnceLock::new();
    let joints = JOINTS.get_or_init(|| {
        [
            (
                memchr::memmem::Finder::new(b"},{\"id\":\""),
                &b"[{\"id\":\""[..],
            ),
            (
                memchr::memmem::Finder::new(b"}, {\"id\": \""),
                &b"[{\"id\": \""[..],
            ),
        ]
    });
    if a == b"[]" {
        return Some(Vec::new());
    }
    let (finder, head) = joints.iter().find(|(_, head)| a.starts_with(head))?;
    if !a.ends_with(b"}]") {
        return None;
    }
    let entry_head = &head[1..];
    let mut out = Vec::new();
    let mut start = 1;
    for j in finder.find_iter(a) {
        out.push((start, j + 1));
        // The next entry starts at its `{`.
        start = j + memchr::memchr(b'{', &a[j + 1..])? + 1;
    }
    out.push((start, a.len() - 1));
    let flat = |e: &[u8]| {
        e.len() >= 2
            && e.starts_with(entry_head)
            && e.ends_with(b"}")
            && memchr::memchr2(b'{', b'}', &e[1..e.len() - 1]).is_none()
    };
    out.iter().all(|&(s, e)| flat(&a[s..e])).then_some(out)
}

/// The spans of the objects of a JSON array's bytes, strings skipped
/// (a name may hold braces); `None` when the bytes are not such an array.
pub(crate) fn entry_spans(a: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut depth = 0usize;
    let mut start = 0;
    while let Some(off) = memchr::memchr3(b'"', b'{', b'}', &a[i..]) {
        let j = i + off;
        match a[j] {
            b'"' => {
                // Skip the string: to the next quote not escaped.
                let mut k = j + 1;
                loop {
                    let q = k + memchr::memchr2(b'"', b'\\', a.get(k..)?)?;
                    if a[q] == b'\\' {
                        k = q + 2;
                    } else {
                        k = q + 1;
                        break;
                    }
                }
                i = k;
                continue;
            }
            b'{' => {
                if depth == 0 {
                    start = j;
                }
                depth += 1;
            }
            _ => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    out.push((start, j + 1));
                }
            }
        }
        i = j + 1;
    }
    (depth == 0).then_some(out)
}

/// The bytes of an entry's `id` (else `name`) string value, unescaped
/// only when it holds an escape; empty when it has neither. nirs4all's
/// runs carry the config name in both, `id` first.
pub(crate) fn name_of(entry: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // The common case, at the entry's start: `{"id":"` or `{"id": "`.
    let quick = entry
        .strip_prefix(b"{\"id\":\"")
        .or_else(|| entry.strip_prefix(b"{\"id\": \""));
    if let Some(body) = quick {
        if let Some(end) = memchr::memchr2(b'"', b'\\', body) {
            if body[end] == b'"' {
                return std::borrow::Cow::Borrowed(&body[..end]);
            }
        }
    }
    static KEYS: std::sync::OnceLock<[memchr::memmem::Finder<'static>; 2]> =
        std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [
            memchr::memmem::Finder::new(b"\"id\""),
            memchr::memmem::Finder::new(b"\"name\""),
        ]
    });
    for key in keys {
        let Some(k) = key.find(entry) else {
            continue;
        };
        let rest = &entry[k + key.needle().len()..];
        let Some(q) = rest.iter().position(|b| !matches!(b, b' ' | b':')) else {
            continue;
        };
        if rest[q] != b'"' {
            continue;
        }
        let body = &rest[q + 1..];
        let Some(end) = memchr::memchr2(b'"', b'\\', body) else {
            continue;
        };
        if body[end] == b'"' {
            return std::borrow::Cow::Borrowed(&body[..end]);
        }
        // An escape: decode the string.
        let mut de = serde_json::Deserializer::from_slice(&rest[q..]);
        if let Ok(s) = String::deserialize(&mut de) {
            return std::borrow::Cow::Owned(s.into_bytes());
        }
    }
    std::borrow::Cow::Borrowed(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_whatever_their_strings_hold() {
        let a = br#"[{"id":"a}","name":"a}","n":1},{"id":"b\"{","name":"b\"{"}, {"id": "c"}]"#;
        let spans = entry_spans(a).unwrap();
        assert_eq!(spans.len(), 3);
        assert_eq!(name_of(&a[spans[0].0..spans[0].1]).as_ref(), b"a}");
        assert_eq!(name_of(&a[spans[1].0..spans[1].1]).as_ref(), b"b\"{");
        assert_eq!(name_of(&a[spans[2].0..spans[2].1]).as_ref(), b"c");
        assert!(entry_spans(b"[{\"id\":\"x\"").is_none());
    }

    #[test]
    fn a_stored_index_reads_back_only_for_its_text() {
        let text =
            br#"{"n4a_version":"1.3","runs":[{"id":"a","name":"a"},{"id":"b{","name":"b{"}]}"#;
        let at = text
            .windows(RUNS_KEY.len())
            .position(|w| w == RUNS_KEY)
            .unwrap();
        let ix = RunsIndex::of(text, at).unwrap();
        assert_eq!(ix.spans.len(), 2);
        let (s, e) = ix.spans[1];
        assert_eq!(&text[s as usize..e as usize], br#"{"id":"b{","name":"b{"}"#);
        assert_eq!(ix.hashes[1], xxhash_rust::xxh3::xxh3_64(b"b{"));
        let bytes = ix.to_bytes(7);
        assert_eq!(bytes.len(), RunsIndex::stored_len(2));
        assert_eq!(
            RunsIndex::from_bytes(&bytes, 2, 7, text.len()),
            Some(ix.clone())
        );
        // Another text's, another count, spans past the text, not an index.
        assert_eq!(RunsIndex::from_bytes(&bytes, 2, 8, text.len()), None);
        assert_eq!(
            RunsIndex::from_bytes(&bytes[..bytes.len() - 16], 1, 7, text.len()),
            None
        );
        assert_eq!(RunsIndex::from_bytes(&bytes, 2, 7, 10), None);
        assert_eq!(
            RunsIndex::from_bytes(&vec![0u8; bytes.len()], 2, 7, text.len()),
            None
        );
    }
}
