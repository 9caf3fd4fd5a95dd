//! The compact binary encoding of a [`SummaryState`] (formats 1.2, 1.3).
//!
//! Version 1.1 stored the state as JSON inside `n4a_summary` (286 KB a
//! file for 1,900 configs, parsed whole by every reader, and stored twice).
//! Version 1.2 stores it once, in two footer key/values of base64 text
//! (parquet key/values must be UTF-8), placed around the summary so that
//! the small part a reader always needs is the footer's last key/value.
//! Version 1.3 moves the part that grows with configs out of the footer,
//! into the file's body just before it (raw bytes, referenced by the head:
//! no reader other than n4a's appends, refresh and config pruning ever
//! reads it), so the footer every reader decodes holds only the head:
//!
//! ```text
//! body     ... row groups | runs: "N4R3" | raw_len: u32 LE | zlen: u32 LE | zstd(runs, pipelines) | runs index
//! footer   ... ARROW:schema | n4a_summary (the JSON) | n4a_state: "N4S2" | head
//!          (1.2: n4a_runs = base64 of "N4R1" runs | n4a_summary | n4a_state "N4S1")
//! ```
//!
//! * **head** (`n4a_state`): everything a workspace summary, pruning and
//!   footer answers need (rows, score statistics and sketches, models,
//!   partitions, folds, task types, metrics, the top lists, the number of
//!   runs and pipelines), a check of the summary text stored beside it
//!   ([`TextCheck`]: its length, XXH3-64 hash and where its `runs` member
//!   starts) and where the runs are ([`RunsPlace`]: in 1.3 their offset in
//!   the file, length and XXH3-64 hash). A few KB, in the last bytes of the
//!   file; decoding it is a few microseconds.
//! * **runs**: the per-config runs and the distinct pipelines, zstd-
//!   compressed. 1.3 lays them out column by column (`N4R2`: names,
//!   counts, metrics, best scores, pipelines), which compresses 1.5x better
//!   than 1.2's run-by-run `N4R1` (still read). `N4R3` (1.3 since issue
//!   29) adds the zstd frame's length and, after it, the index of the
//!   summary text's `runs` array ([`crate::summary::runs_index`]: each
//!   entry's span and name hash, 16 bytes a run, raw), which a workspace
//!   listing its runs once reads instead of scanning the text.
//!
//! Integers are LEB128 varints, floats 8 bytes little-endian, strings a
//! varint length then UTF-8 bytes; optional values carry a leading tag.
//! Any malformed input is an error, never a panic: lengths are checked
//! against the bytes left.

use super::SummaryState;

mod groups;
mod read;
mod write;

pub(crate) use read::Cur;
use read::{get_head, get_runs_place, get_tail, get_tail_v1};
pub use read::{HeadView, ScoreView};
use write::{put_head, put_tail};
pub(crate) use write::{put_of, put_s, put_u};

const MAGIC: &[u8; 4] = b"N4S4";
const MAGIC_V3: &[u8; 4] = b"N4S3";
const MAGIC_V2: &[u8; 4] = b"N4S2";
const MAGIC_V1: &[u8; 4] = b"N4S1";
const RUNS_MAGIC: &[u8; 4] = b"N4R3";
const RUNS_MAGIC_V2: &[u8; 4] = b"N4R2";
const RUNS_MAGIC_V1: &[u8; 4] = b"N4R1";
/// zstd level of the tail: level 3 compresses config names about 3x at
/// several hundred MB/s.
const TAIL_LEVEL: i32 = 3;
/// Largest tail accepted when decompressing (a footer is capped far below).
const MAX_TAIL: usize = 1 << 30;

/// How the summary text stored beside a state is checked: a reader that
/// finds the same length and hash knows the text is the one n4a wrote
/// (valid JSON, `runs` last), and relays it without parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextCheck {
    /// Length of the summary text in bytes.
    pub len: u64,
    /// XXH3-64 of the text.
    pub hash: u64,
    /// Byte offset of `,"runs":` (the last member), if the text has runs.
    pub runs_at: Option<u64>,
}

impl TextCheck {
    /// The check of `text`. Cost: one XXH3 pass (about 10 GB/s).
    pub fn of(text: &str) -> TextCheck {
        TextCheck {
            len: text.len() as u64,
            hash: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
            runs_at: text.rfind(",\"runs\":").map(|i| i as u64),
        }
    }

    /// True when `text` is the text this check was made of.
    pub fn matches(&self, text: &[u8]) -> bool {
        self.len == text.len() as u64
            && self.runs_at.is_none_or(|at| {
                text.get(at as usize..)
                    .is_some_and(|t| t.starts_with(b",\"runs\":"))
            })
            && xxhash_rust::xxh3::xxh3_64(text) == self.hash
    }
}

/// The first fields of a state head ([`Encoded::prefix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatePrefix {
    pub text: TextCheck,
    pub rows: u64,
    pub n_runs: u64,
    pub n_pipelines: u64,
    /// Where the runs are.
    pub runs: RunsPlace,
}

/// Where a state's runs are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunsPlace {
    /// 1.2: the base64 `n4a_runs` key/value of this length, which ends just
    /// before the summary's key/value.
    KeyValue {
        /// Length of the `n4a_runs` value.
        len: u64,
    },
    /// 1.3: raw bytes in the file's body ([`encode_runs`]).
    Body(RunsRef),
}

/// Where 1.3 runs were written: their offset in the file, length and
/// XXH3-64 hash (checked when read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunsRef {
    /// Offset in the file.
    pub at: u64,
    /// Length in bytes.
    pub len: u64,
    /// XXH3-64 of the bytes.
    pub hash: u64,
}

impl RunsRef {
    /// The reference of `blob` written at `at`.
    pub fn of(blob: &[u8], at: u64) -> RunsRef {
        RunsRef {
            at,
            len: blob.len() as u64,
            hash: xxhash_rust::xxh3::xxh3_64(blob),
        }
    }
}

/// A decoded state head: the state without runs and pipelines (those
/// fields are empty), their counts, and the summary text's check.
#[derive(Debug, Clone, PartialEq)]
pub struct StateHead {
    /// The state; `runs` and `pipelines` are empty (see [`fill_runs`]).
    pub state: SummaryState,
    /// Distinct configs (runs) in the full state.
    pub n_runs: u64,
    /// Distinct pipelines in the full state.
    pub n_pipelines: u64,
    /// The check of the summary text written with this state.
    pub text: TextCheck,
    /// Where the runs are.
    pub runs: RunsPlace,
    /// (1.5) Where the group aggregates are, if stored.
    pub groups: Option<RunsRef>,
}

/// Why a state could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type R<T> = std::result::Result<T, CodecError>;

fn bad<T>(what: &str) -> R<T> {
    Err(CodecError(what.to_string()))
}

/// The runs and pipelines of `state` as 1.3 writes them into the file's
/// body: `"N4R3"`, the raw length and the compressed length (u32 LE), zstd
/// of the columnar layout, then `index` (the stored index of the summary
/// text's runs array, [`crate::summary::runs_index::RunsIndex::to_bytes`]).
/// Cost: O(configs), plus zstd (about 1 ms for 2,000 configs).
pub fn encode_runs(state: &SummaryState, index: &[u8]) -> Vec<u8> {
    let mut tail = Vec::with_capacity(state.runs.len() * 48 + state.pipelines.len() * 24);
    put_tail(&mut tail, state);
    let packed = zstd::bulk::compress(&tail, TAIL_LEVEL).expect("zstd compresses in memory");
    let mut runs = Vec::with_capacity(12 + packed.len() + index.len());
    runs.extend_from_slice(RUNS_MAGIC);
    runs.extend_from_slice(&(tail.len() as u32).to_le_bytes());
    runs.extend_from_slice(&(packed.len() as u32).to_le_bytes());
    runs.extend_from_slice(&packed);
    runs.extend_from_slice(index);
    runs
}

/// The `n4a_state` value (base64 of `"N4S4"` and the head) of `state`,
/// with the check of its summary text and where its runs and group
/// aggregates were written. Cost: O(head).
pub fn encode_head(
    state: &SummaryState,
    text: &TextCheck,
    runs: RunsRef,
    groups: Option<RunsRef>,
) -> String {
    let mut head = Vec::with_capacity(4096);
    head.extend_from_slice(MAGIC);
    put_head(&mut head, state, text, &RunsPlace::Body(runs), Layout::V4);
    write::put_groups_place(&mut head, groups.as_ref());
    base64_simd::STANDARD.encode_to_string(head)
}

/// What n4a 1.4 wrote as `n4a_state` (`"N4S3"`, no group aggregates):
/// for tests that need a 1.4 footer.
#[cfg(test)]
pub(crate) fn encode_head_v3(state: &SummaryState, text: &TextCheck, runs: RunsRef) -> String {
    let mut head = MAGIC_V3.to_vec();
    put_head(&mut head, state, text, &RunsPlace::Body(runs), Layout::V3);
    base64_simd::STANDARD.encode_to_string(head)
}

/// The 1.2 values (`n4a_runs`, `n4a_state`) of `state`: what n4a 1.2
/// wrote, for tests that need a 1.2 footer.
#[cfg(test)]
pub(crate) fn encode_v1(state: &SummaryState, text: &TextCheck) -> (String, String) {
    let b64 = &base64_simd::STANDARD;
    let mut tail = Vec::new();
    write::put_tail_v1(&mut tail, state);
    let packed = zstd::bulk::compress(&tail, TAIL_LEVEL).expect("zstd compresses in memory");
    let mut runs = RUNS_MAGIC_V1.to_vec();
    runs.extend_from_slice(&(tail.len() as u32).to_le_bytes());
    runs.extend_from_slice(&packed);
    let runs = b64.encode_to_string(runs);
    let mut head = MAGIC_V1.to_vec();
    put_head(
        &mut head,
        state,
        text,
        &RunsPlace::KeyValue {
            len: runs.len() as u64,
        },
        Layout::V1,
    );
    (runs, b64.encode_to_string(head))
}

/// The decoded head bytes of an `n4a_state` value.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The magic (`N4S4` for 1.5, `N4S3` for 1.4, `N4S2` for 1.3, `N4S1`
    /// for 1.2), then
    /// the head.
    bytes: bytes::Bytes,
}

/// Which head layout: what each format version's head holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// 1.2 (`N4S1`): the runs in the `n4a_runs` key/value.
    V1,
    /// 1.3 (`N4S2`): the runs in the body.
    V2,
    /// 1.4 (`N4S3`): and each metric's own statistics and model sums (when
    /// a file holds several), whether they are known, and top entries'
    /// train scores.
    V3,
    /// 1.5 (`N4S4`): and where the group aggregates are ([`crate::summary::groups`]).
    V4,
}

impl Layout {
    /// Each metric carries its own statistics (1.4 on).
    pub(crate) fn per_metric(self) -> bool {
        matches!(self, Layout::V3 | Layout::V4)
    }

    /// The runs are in the file's body (1.3 on).
    pub(crate) fn runs_in_body(self) -> bool {
        self != Layout::V1
    }
}

impl Encoded {
    fn layout(&self) -> Layout {
        match &self.bytes[..4] {
            m if m == MAGIC => Layout::V4,
            m if m == MAGIC_V3 => Layout::V3,
            m if m == MAGIC_V2 => Layout::V2,
            _ => Layout::V1,
        }
    }

    fn head_bytes(&self) -> &[u8] {
        &self.bytes[4..]
    }
}

/// Base64-decodes an `n4a_state` value. Cost: linear in the value (about
/// 2 GB/s); nothing else is decoded yet.
///
/// # Errors
/// [`CodecError`] when the text is not base64 or not a state.
pub fn split(value: &[u8]) -> R<Encoded> {
    let bytes = base64_simd::STANDARD
        .decode_to_vec(value)
        .map_err(|e| CodecError(format!("not base64: {e}")))?;
    Encoded::from_decoded(bytes.into())
}

impl Encoded {
    /// A state from its decoded bytes (what [`Encoded::decoded`] gives):
    /// the footer cache on disk keeps them so, saving the base64, and
    /// lends them (a slice of its mapping, no copy).
    ///
    /// # Errors
    /// [`CodecError`] when the bytes do not start with a state's magic.
    pub(crate) fn from_decoded(bytes: bytes::Bytes) -> R<Encoded> {
        match bytes.get(..4) {
            Some(m) if m == MAGIC || m == MAGIC_V3 || m == MAGIC_V2 || m == MAGIC_V1 => {
                Ok(Encoded { bytes })
            }
            _ => bad("no N4S4, N4S3, N4S2 or N4S1 magic"),
        }
    }

    /// The decoded bytes: magic, then head.
    pub(crate) fn decoded(&self) -> &[u8] {
        &self.bytes
    }
}

/// Decodes a 1.2 `n4a_runs` value (base64) into `state` (a head's state,
/// whose counts say how many runs and pipelines to expect). O(configs).
///
/// # Errors
/// [`CodecError`] on malformed bytes or counts that differ.
pub fn fill_runs(value: &[u8], state: &mut SummaryState, counts: (u64, u64)) -> R<()> {
    let bytes = base64_simd::STANDARD
        .decode_to_vec(value)
        .map_err(|e| CodecError(format!("runs not base64: {e}")))?;
    fill_runs_bytes(&bytes, state, counts)
}

/// Decodes 1.3 runs read from the file's body (checked against the head's
/// length and hash) into `state`. O(configs).
///
/// # Errors
/// [`CodecError`] when the bytes are not the ones the head names, or on
/// malformed bytes or counts that differ.
pub fn fill_runs_body(
    blob: &[u8],
    expect: &RunsRef,
    state: &mut SummaryState,
    counts: (u64, u64),
) -> R<()> {
    if blob.len() as u64 != expect.len || xxhash_rust::xxh3::xxh3_64(blob) != expect.hash {
        return bad("the runs in the file are not the ones the state names");
    }
    fill_runs_bytes(blob, state, counts)
}

/// 1.5's group aggregates as stored in the file's body (`"N4G1"`, before
/// the runs). Cost: O(keys), a few KB.
pub fn encode_groups(g: &crate::summary::groups::Groups) -> Vec<u8> {
    groups::encode(g)
}

/// Decodes 1.5 group aggregates read from the file's body, checked
/// against the head's length and hash. O(bytes).
///
/// # Errors
/// [`CodecError`] when the bytes are not the ones the head names or do
/// not decode.
pub fn decode_groups(blob: &[u8], expect: &RunsRef) -> R<crate::summary::groups::Groups> {
    if blob.len() as u64 != expect.len || xxhash_rust::xxh3::xxh3_64(blob) != expect.hash {
        return bad("the group aggregates in the file are not the ones the state names");
    }
    groups::decode(blob).map_err(|e| CodecError(format!("group aggregates: {}", e.0)))
}

fn fill_runs_bytes(bytes: &[u8], state: &mut SummaryState, counts: (u64, u64)) -> R<()> {
    let (columnar, sized) = match bytes.get(..4) {
        Some(m) if m == RUNS_MAGIC => (true, true),
        Some(m) if m == RUNS_MAGIC_V2 => (true, false),
        Some(m) if m == RUNS_MAGIC_V1 => (false, false),
        _ => return bad("no N4R3, N4R2 or N4R1 magic"),
    };
    let header = if sized { 12 } else { 8 };
    if bytes.len() < header {
        return bad("runs shorter than their header");
    }
    let u32_at =
        |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes")) as usize;
    let raw_len = u32_at(4);
    if raw_len > MAX_TAIL {
        return bad("runs too large");
    }
    // N4R3: the zstd frame's length (the runs index follows it).
    let packed = if sized {
        let zlen = u32_at(8);
        match bytes.get(12..12 + zlen) {
            Some(p) => p,
            None => return bad("runs shorter than their zstd frame"),
        }
    } else {
        &bytes[8..]
    };
    let raw =
        zstd::bulk::decompress(packed, raw_len).map_err(|e| CodecError(format!("runs: {e}")))?;
    if raw.len() != raw_len {
        return bad("runs length differs from its header");
    }
    let mut c = Cur { buf: &raw, pos: 0 };
    if columnar {
        get_tail(&mut c, state)?;
    } else {
        get_tail_v1(&mut c, state)?;
    }
    if c.pos != raw.len() {
        return bad("bytes after the runs");
    }
    if (state.runs.len() as u64, state.pipelines.len() as u64) != counts {
        return bad("run or pipeline count differs from the head");
    }
    Ok(())
}

impl Encoded {
    /// Decodes the head. O(head).
    ///
    /// # Errors
    /// [`CodecError`] on malformed bytes.
    pub fn head(&self) -> R<StateHead> {
        self.view().map(|v| v.to_head())
    }

    /// The first fields of the head: the summary text's check, the rows and
    /// the run and pipeline counts. O(1): what a footer read needs before
    /// the head is merged (and fully checked) later.
    ///
    /// # Errors
    /// [`CodecError`] on malformed bytes.
    pub fn prefix(&self) -> R<StatePrefix> {
        let mut c = Cur {
            buf: self.head_bytes(),
            pos: 0,
        };
        let len = c.u()?;
        let hash = u64::from_le_bytes(c.take(8)?.try_into().expect("8 bytes"));
        let runs_at = c.u()?.checked_sub(1);
        Ok(StatePrefix {
            text: TextCheck { len, hash, runs_at },
            rows: c.u()?,
            n_runs: c.u()?,
            n_pipelines: c.u()?,
            runs: get_runs_place(&mut c, self.layout().runs_in_body())?,
        })
    }

    /// Where the group aggregates are (1.5), if stored. O(head).
    ///
    /// # Errors
    /// [`CodecError`] on malformed bytes.
    pub fn groups_place(&self) -> R<Option<RunsRef>> {
        if self.layout() != Layout::V4 {
            return Ok(None);
        }
        self.view().map(|v| v.groups)
    }

    /// The head, borrowed: no string copied. O(head).
    ///
    /// # Errors
    /// [`CodecError`] on malformed bytes.
    pub fn view(&self) -> R<HeadView<'_>> {
        let mut c = Cur {
            buf: self.head_bytes(),
            pos: 0,
        };
        let h = get_head(&mut c, self.layout())?;
        if c.pos != self.head_bytes().len() {
            return bad("bytes after the head");
        }
        Ok(h)
    }

    /// The whole state, with its runs: the `n4a_runs` value of a 1.2
    /// footer, or the bytes a 1.3 head names in the file's body
    /// ([`StatePrefix::runs`]). O(state).
    ///
    /// # Errors
    /// [`CodecError`] on malformed bytes.
    pub fn state(&self, runs: &[u8]) -> R<(SummaryState, TextCheck)> {
        let h = self.head()?;
        let mut st = h.state;
        let counts = (h.n_runs, h.n_pipelines);
        match &h.runs {
            RunsPlace::KeyValue { .. } => fill_runs(runs, &mut st, counts)?,
            RunsPlace::Body(r) => fill_runs_body(runs, r, &mut st, counts)?,
        }
        Ok((st, h.text))
    }
}

#[cfg(test)]
mod tests;
