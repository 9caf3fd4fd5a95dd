//! The compact binary encoding of a [`SummaryState`] (format 1.2).
//!
//! Version 1.1 stored the state as JSON inside `n4a_summary` (286 KB a
//! file for 1,900 configs, parsed whole by every reader, and stored twice).
//! Version 1.2 stores it once, in two footer key/values of base64 text
//! (parquet key/values must be UTF-8), placed around the summary so that
//! the small part a reader always needs is the footer's last key/value:
//!
//! ```text
//! n4a_runs     "N4R1" | raw_len: u32 LE | zstd(runs, pipelines)
//! n4a_summary  the JSON
//! n4a_state    "N4S1" | head
//! ```
//!
//! * **head** (`n4a_state`): everything a workspace summary, pruning and
//!   footer answers need (rows, score statistics and sketches, models,
//!   partitions, folds, task types, metrics, the top lists, the number of
//!   runs and pipelines), a check of the summary text stored beside it
//!   ([`TextCheck`]: its length, XXH3-64 hash and where its `runs` member
//!   starts) and the length of the `n4a_runs` value. A few KB, in the last
//!   bytes of the file; decoding it is a few microseconds.
//! * **runs** (`n4a_runs`): the per-config runs and the distinct pipelines,
//!   the part that grows with configs, zstd-compressed. Only appends,
//!   refresh and config pruning read it.
//!
//! Integers are LEB128 varints, floats 8 bytes little-endian, strings a
//! varint length then UTF-8 bytes; optional values carry a leading tag.
//! Any malformed input is an error, never a panic: lengths are checked
//! against the bytes left.

use std::collections::{BTreeMap, BTreeSet};

use super::sketch::Sketch;
use super::topk::TopEntry;
use super::welford::Welford;
use super::{Best, MetricState, ModelState, RunState, ScoreState, SmallMap, SummaryState};
use crate::metric::Direction;

const MAGIC: &[u8; 4] = b"N4S1";
const RUNS_MAGIC: &[u8; 4] = b"N4R1";
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
    /// Length of the `n4a_runs` value (it ends just before the summary's
    /// key/value).
    pub runs_len: u64,
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

/// The two footer values of a state: `n4a_runs` (the packed runs) and
/// `n4a_state` (the head).
#[derive(Debug, Clone)]
pub struct Values {
    /// The `n4a_runs` value.
    pub runs: String,
    /// The `n4a_state` value.
    pub state: String,
}

/// Encodes `state`, with the check of its summary text, as its two footer
/// values. Cost: O(state), plus zstd over the runs.
pub fn encode(state: &SummaryState, text: &TextCheck) -> Values {
    let b64 = &base64_simd::STANDARD;
    let mut tail = Vec::with_capacity(state.runs.len() * 48 + state.pipelines.len() * 24);
    put_tail(&mut tail, state);
    let packed = zstd::bulk::compress(&tail, TAIL_LEVEL).expect("zstd compresses in memory");
    let mut runs = Vec::with_capacity(8 + packed.len());
    runs.extend_from_slice(RUNS_MAGIC);
    runs.extend_from_slice(&(tail.len() as u32).to_le_bytes());
    runs.extend_from_slice(&packed);
    let runs = b64.encode_to_string(runs);
    let mut head = Vec::with_capacity(4096);
    head.extend_from_slice(MAGIC);
    put_head(&mut head, state, text, runs.len() as u64);
    Values {
        runs,
        state: b64.encode_to_string(head),
    }
}

/// The decoded head bytes of an `n4a_state` value.
#[derive(Debug, Clone)]
pub struct Encoded {
    head: Vec<u8>,
}

/// Base64-decodes an `n4a_state` value. Cost: linear in the value (about
/// 2 GB/s); nothing else is decoded yet.
///
/// # Errors
/// [`CodecError`] when the text is not base64 or not a state.
pub fn split(value: &[u8]) -> R<Encoded> {
    let mut bytes = base64_simd::STANDARD
        .decode_to_vec(value)
        .map_err(|e| CodecError(format!("not base64: {e}")))?;
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return bad("no N4S1 magic");
    }
    bytes.drain(..4);
    Ok(Encoded { head: bytes })
}

/// Decodes an `n4a_runs` value into `state` (a head's state, whose counts
/// say how many runs and pipelines to expect). O(configs).
///
/// # Errors
/// [`CodecError`] on malformed bytes or counts that differ.
pub fn fill_runs(value: &[u8], state: &mut SummaryState, counts: (u64, u64)) -> R<()> {
    let bytes = base64_simd::STANDARD
        .decode_to_vec(value)
        .map_err(|e| CodecError(format!("runs not base64: {e}")))?;
    if bytes.len() < 8 || &bytes[..4] != RUNS_MAGIC {
        return bad("no N4R1 magic");
    }
    let raw_len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    if raw_len > MAX_TAIL {
        return bad("runs too large");
    }
    let raw = zstd::bulk::decompress(&bytes[8..], raw_len)
        .map_err(|e| CodecError(format!("runs: {e}")))?;
    if raw.len() != raw_len {
        return bad("runs length differs from its header");
    }
    let mut c = Cur { buf: &raw, pos: 0 };
    get_tail(&mut c, state)?;
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
            buf: &self.head,
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
            runs_len: c.u()?,
        })
    }

    /// The head, borrowed: no string copied. O(head).
    ///
    /// # Errors
    /// [`CodecError`] on malformed bytes.
    pub fn view(&self) -> R<HeadView<'_>> {
        let mut c = Cur {
            buf: &self.head,
            pos: 0,
        };
        let h = get_head(&mut c)?;
        if c.pos != self.head.len() {
            return bad("bytes after the head");
        }
        Ok(h)
    }

    /// The whole state, with the `n4a_runs` value. O(state).
    ///
    /// # Errors
    /// [`CodecError`] on malformed bytes.
    pub fn state(&self, runs: &[u8]) -> R<(SummaryState, TextCheck)> {
        let h = self.head()?;
        let mut st = h.state;
        fill_runs(runs, &mut st, (h.n_runs, h.n_pipelines))?;
        Ok((st, h.text))
    }
}

// ---------------------------------------------------------------- writing

fn put_u(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_i(out: &mut Vec<u8>, v: i64) {
    put_u(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_f(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_of(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(x) => {
            out.push(1);
            put_f(out, x);
        }
        None => out.push(0),
    }
}

fn put_s(out: &mut Vec<u8>, s: &str) {
    put_u(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_os(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            put_u(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
        None => out.push(0),
    }
}

fn dir_code(d: Direction) -> u8 {
    match d {
        Direction::Maximize => 0,
        Direction::Minimize => 1,
        Direction::TowardZero => 2,
    }
}

fn put_score(out: &mut Vec<u8>, s: &ScoreState) {
    let w = &s.welford;
    put_u(out, w.count);
    put_f(out, w.mean);
    put_f(out, w.m2);
    put_of(out, w.min);
    put_of(out, w.max);
    put_u(out, s.nan_count);
    put_u(out, s.inf_count);
    let k = &s.sketch;
    put_f(out, k.alpha);
    put_u(out, k.zero);
    out.push(u8::from(k.collapsed));
    for store in [&k.pos, &k.neg] {
        // Dense: the occupied count, the span of slots from the lowest to
        // the highest index, the lowest index, the counts' byte length,
        // then one count a slot (empty slots are one zero byte). A merge
        // adds the run slot by slot; a reader skips it by its length.
        let pairs: Vec<(i32, u64)> = store.iter().collect();
        put_u(out, pairs.len() as u64);
        let (Some(&(lo, _)), Some(&(hi, _))) = (pairs.first(), pairs.last()) else {
            put_u(out, 0);
            continue;
        };
        let span = (i64::from(hi) - i64::from(lo) + 1) as usize;
        put_u(out, span as u64);
        put_i(out, i64::from(lo));
        let mut counts = Vec::with_capacity(span + 8);
        let mut at = i64::from(lo);
        for (i, c) in pairs {
            while at < i64::from(i) {
                counts.push(0);
                at += 1;
            }
            put_u(&mut counts, c);
            at += 1;
        }
        put_u(out, counts.len() as u64);
        out.extend_from_slice(&counts);
    }
}

fn put_entry(out: &mut Vec<u8>, e: &TopEntry) {
    // What a merge ranks by first; the rest behind its length, read only
    // for an entry that makes the cut.
    put_of(out, e.val_score);
    put_u(out, e.row);
    let mut rest = Vec::with_capacity(96);
    put_os(&mut rest, e.id.as_deref());
    put_os(&mut rest, e.model_name.as_deref());
    put_os(&mut rest, e.config_name.as_deref());
    put_of(&mut rest, e.test_score);
    put_os(&mut rest, e.fold_id.as_deref());
    put_os(&mut rest, e.partition.as_deref());
    put_os(&mut rest, e.dataset.as_deref());
    put_u(out, rest.len() as u64);
    out.extend_from_slice(&rest);
}

fn put_counts(out: &mut Vec<u8>, m: &BTreeMap<String, u64>) {
    put_u(out, m.len() as u64);
    for (k, v) in m {
        put_s(out, k);
        put_u(out, *v);
    }
}

fn put_head(out: &mut Vec<u8>, st: &SummaryState, text: &TextCheck, runs_len: u64) {
    put_u(out, text.len);
    out.extend_from_slice(&text.hash.to_le_bytes());
    put_u(out, text.runs_at.map_or(0, |a| a + 1));
    put_u(out, st.rows);
    put_u(out, st.runs.len() as u64);
    put_u(out, st.pipelines.len() as u64);
    put_u(out, runs_len);
    put_u(out, st.dataset_names.len() as u64);
    st.dataset_names.iter().for_each(|n| put_s(out, n));
    for s in st.scores() {
        put_score(out, s);
    }
    put_u(out, st.models.len() as u64);
    for (name, m) in &st.models {
        put_s(out, name);
        put_u(out, m.count);
        put_f(out, m.val_sum);
        put_u(out, m.val_count);
    }
    put_counts(out, &st.partitions);
    put_u(out, st.folds.len() as u64);
    st.folds.iter().for_each(|f| put_s(out, f));
    put_counts(out, &st.task_types);
    put_u(out, st.metrics.len() as u64);
    for (name, m) in &st.metrics {
        put_s(out, name);
        put_u(out, m.count);
        out.push(dir_code(m.direction));
    }
    put_u(out, st.top_k as u64);
    put_u(out, st.top.len() as u64);
    for (metric, parts) in &st.top {
        put_s(out, metric);
        put_u(out, parts.len() as u64);
        for (part, entries) in parts {
            put_s(out, part);
            put_u(out, entries.len() as u64);
            entries.iter().for_each(|e| put_entry(out, e));
        }
    }
}

fn put_tail(out: &mut Vec<u8>, st: &SummaryState) {
    put_u(out, st.runs.len() as u64);
    for (name, r) in &st.runs {
        put_s(out, name);
        put_u(out, r.n);
        put_u(out, r.best.iter().count() as u64);
        for (metric, b) in r.best.iter() {
            put_s(out, metric);
            put_of(out, b.val);
            put_of(out, b.test);
        }
    }
    put_u(out, st.pipelines.len() as u64);
    st.pipelines.iter().for_each(|p| put_s(out, p));
}

// ---------------------------------------------------------------- reading

struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn byte(&mut self) -> R<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| CodecError("unexpected end".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn u(&mut self) -> R<u64> {
        // Most values (counts, lengths, bucket steps) fit in one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        bad("varint too long")
    }

    fn i(&mut self) -> R<i64> {
        let v = self.u()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A count of items each taking at least one byte.
    fn len(&mut self) -> R<usize> {
        let n = self.u()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return bad("count larger than the bytes left");
        }
        Ok(n as usize)
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| CodecError("unexpected end".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn f(&mut self) -> R<f64> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn of(&mut self) -> R<Option<f64>> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.f().map(Some),
            _ => bad("bad option tag"),
        }
    }

    fn str_of(&mut self, n: usize) -> R<&'a str> {
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| CodecError("string not UTF-8".into()))
    }

    fn s(&mut self) -> R<&'a str> {
        let n = self.len()?;
        self.str_of(n)
    }

    fn os(&mut self) -> R<Option<&'a str>> {
        match self.u()? {
            0 => Ok(None),
            n => {
                let n = usize::try_from(n - 1).map_err(|_| CodecError("length".into()))?;
                self.str_of(n).map(Some)
            }
        }
    }

    fn dir(&mut self) -> R<Direction> {
        match self.byte()? {
            0 => Ok(Direction::Maximize),
            1 => Ok(Direction::Minimize),
            2 => Ok(Direction::TowardZero),
            _ => bad("bad direction"),
        }
    }
}

/// A score column's state, borrowed from head bytes.
#[derive(Debug, Clone)]
pub struct ScoreView<'a> {
    /// Welford state over finite values.
    pub welford: Welford,
    /// NaN values seen.
    pub nan_count: u64,
    /// ±inf values seen.
    pub inf_count: u64,
    /// The sketch's α.
    pub alpha: f64,
    /// The sketch's zero count.
    pub zero: u64,
    /// Whether the sketch folded buckets.
    pub collapsed: bool,
    /// Positive and negative buckets, still encoded: their counts' bytes,
    /// span and lowest index.
    buckets: [DenseRun<'a>; 2],
}

/// A store's counts as encoded: one varint a slot from `first`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenseRun<'a> {
    bytes: &'a [u8],
    span: usize,
    first: i32,
}

impl<'a> DenseRun<'a> {
    /// The lowest index.
    pub fn first(&self) -> i32 {
        self.first
    }

    /// Slots from the lowest to the highest occupied index.
    pub fn span(&self) -> usize {
        self.span
    }

    /// The counts as one byte each, when every count is below 128 (a file's
    /// sketch usually: its counts come from one file's rows): the form a
    /// merge adds without decoding.
    pub fn single_bytes(&self) -> Option<&'a [u8]> {
        (self.bytes.len() == self.span && self.bytes.iter().all(|&b| b < 0x80))
            .then_some(self.bytes)
    }

    /// The counts, one a slot (zero for an empty one). A malformed count
    /// ends the run early (the head was checked when read).
    pub fn counts(&self) -> impl Iterator<Item = u64> + 'a {
        let mut c = Cur {
            buf: self.bytes,
            pos: 0,
        };
        (0..self.span).map_while(move |_| c.u().ok())
    }
}

impl<'a> ScoreView<'a> {
    /// The encoded counts of the positive (0) or negative (1) store.
    pub fn run(&self, store: usize) -> DenseRun<'a> {
        self.buckets[store]
    }

    /// The `(index, count)` buckets of the positive (0) or negative (1)
    /// store, decoded as they are iterated.
    pub fn buckets(&self, store: usize) -> impl Iterator<Item = (i32, u64)> + 'a {
        let run = self.buckets[store];
        run.counts()
            .enumerate()
            .filter(|(_, c)| *c > 0)
            .map(move |(j, c)| (run.first + j as i32, c))
    }

    /// The owned state.
    pub fn to_state(&self) -> ScoreState {
        let mut sketch = Sketch::new(self.alpha);
        sketch.zero = self.zero;
        sketch.collapsed = self.collapsed;
        sketch.pos = super::sketch::Store::from_pairs(self.buckets(0));
        sketch.neg = super::sketch::Store::from_pairs(self.buckets(1));
        ScoreState {
            welford: self.welford.clone(),
            nan_count: self.nan_count,
            inf_count: self.inf_count,
            sketch,
        }
    }
}

/// One top entry, borrowed from head bytes: its score and row read, its
/// strings left encoded until the entry is kept ([`Self::to_entry`]).
#[derive(Debug, Clone, Copy)]
pub struct EntryView<'a> {
    /// The ranked score.
    pub val_score: Option<f64>,
    /// Row ordinal within its file.
    pub row: u64,
    raw: &'a [u8],
}

impl EntryView<'_> {
    /// The owned entry; `None` when a string is not UTF-8.
    pub fn to_entry(&self) -> Option<TopEntry> {
        let mut c = Cur {
            buf: self.raw,
            pos: 0,
        };
        let own = |s: Option<&str>| s.map(str::to_string);
        Some(TopEntry {
            id: own(c.os().ok()?),
            model_name: own(c.os().ok()?),
            config_name: own(c.os().ok()?),
            test_score: c.of().ok()?,
            fold_id: own(c.os().ok()?),
            partition: own(c.os().ok()?),
            dataset: own(c.os().ok()?),
            val_score: self.val_score,
            row: self.row,
        })
    }
}

/// A state head decoded without copying a string: what a workspace merge
/// folds (thousands of heads, each used once) without allocating per
/// name or per top entry.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct HeadView<'a> {
    pub text: TextCheck,
    pub rows: u64,
    pub n_runs: u64,
    pub n_pipelines: u64,
    pub dataset_names: Vec<&'a str>,
    /// val, test, train.
    pub scores: [ScoreView<'a>; 3],
    pub models: Vec<(&'a str, ModelState)>,
    pub partitions: Vec<(&'a str, u64)>,
    pub folds: Vec<&'a str>,
    pub task_types: Vec<(&'a str, u64)>,
    pub metrics: Vec<(&'a str, MetricState)>,
    pub top_k: usize,
    /// (metric, partition, entries best first).
    pub top: Vec<(&'a str, &'a str, Vec<EntryView<'a>>)>,
}

impl HeadView<'_> {
    /// The owned head.
    pub fn to_head(&self) -> StateHead {
        let own = |v: &[(&str, u64)]| v.iter().map(|(k, c)| (k.to_string(), *c)).collect();
        let mut top: BTreeMap<String, BTreeMap<String, Vec<TopEntry>>> = BTreeMap::new();
        for (m, p, entries) in &self.top {
            top.entry(m.to_string()).or_default().insert(
                p.to_string(),
                entries.iter().filter_map(EntryView::to_entry).collect(),
            );
        }
        StateHead {
            state: SummaryState {
                rows: self.rows,
                dataset_names: self.dataset_names.iter().map(|s| s.to_string()).collect(),
                val_score: self.scores[0].to_state(),
                test_score: self.scores[1].to_state(),
                train_score: self.scores[2].to_state(),
                models: self
                    .models
                    .iter()
                    .map(|(k, m)| (k.to_string(), m.clone()))
                    .collect(),
                partitions: own(&self.partitions),
                folds: self.folds.iter().map(|s| s.to_string()).collect(),
                task_types: own(&self.task_types),
                runs: BTreeMap::new(),
                pipelines: BTreeSet::new(),
                metrics: self
                    .metrics
                    .iter()
                    .map(|(k, m)| (k.to_string(), m.clone()))
                    .collect(),
                top_k: self.top_k,
                top,
            },
            n_runs: self.n_runs,
            n_pipelines: self.n_pipelines,
            text: self.text,
        }
    }
}

fn get_score<'a>(c: &mut Cur<'a>) -> R<ScoreView<'a>> {
    let welford = Welford {
        count: c.u()?,
        mean: c.f()?,
        m2: c.f()?,
        min: c.of()?,
        max: c.of()?,
    };
    let nan_count = c.u()?;
    let inf_count = c.u()?;
    let alpha = c.f()?;
    let zero = c.u()?;
    let collapsed = c.byte()? != 0;
    let mut buckets = [DenseRun::default(); 2];
    for slot in &mut buckets {
        let _occupied = c.u()?;
        let span = usize::try_from(c.u()?).map_err(|_| CodecError("span".into()))?;
        if span == 0 {
            continue;
        }
        if span as i64 > super::sketch::MAX_SPAN {
            return bad("bucket indexes span too wide");
        }
        let first = i32::try_from(c.i()?).map_err(|_| CodecError("bucket index".into()))?;
        if i64::from(first) + span as i64 > i64::from(i32::MAX) {
            return bad("bucket index");
        }
        let n = c.len()?;
        if n < span {
            return bad("bucket counts shorter than their span");
        }
        *slot = DenseRun {
            bytes: c.take(n)?,
            span,
            first,
        };
    }
    Ok(ScoreView {
        welford,
        nan_count,
        inf_count,
        alpha,
        zero,
        collapsed,
        buckets,
    })
}

fn get_entry<'a>(c: &mut Cur<'a>) -> R<EntryView<'a>> {
    let val_score = c.of()?;
    let row = c.u()?;
    let n = c.len()?;
    Ok(EntryView {
        val_score,
        row,
        raw: c.take(n)?,
    })
}

fn get_counts<'a>(c: &mut Cur<'a>) -> R<Vec<(&'a str, u64)>> {
    let n = c.len()?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push((c.s()?, c.u()?));
    }
    Ok(v)
}

fn get_head<'a>(c: &mut Cur<'a>) -> R<HeadView<'a>> {
    let len = c.u()?;
    let hash = u64::from_le_bytes(c.take(8)?.try_into().expect("8 bytes"));
    let runs_at = c.u()?.checked_sub(1);
    let rows = c.u()?;
    let n_runs = c.u()?;
    let n_pipelines = c.u()?;
    let _runs_len = c.u()?;
    let n = c.len()?;
    let mut dataset_names = Vec::with_capacity(n);
    for _ in 0..n {
        dataset_names.push(c.s()?);
    }
    let scores = [get_score(c)?, get_score(c)?, get_score(c)?];
    let n = c.len()?;
    let mut models = Vec::with_capacity(n);
    for _ in 0..n {
        let name = c.s()?;
        models.push((
            name,
            ModelState {
                count: c.u()?,
                val_sum: c.f()?,
                val_count: c.u()?,
            },
        ));
    }
    let partitions = get_counts(c)?;
    let n = c.len()?;
    let mut folds = Vec::with_capacity(n);
    for _ in 0..n {
        folds.push(c.s()?);
    }
    let task_types = get_counts(c)?;
    let n = c.len()?;
    let mut metrics = Vec::with_capacity(n);
    for _ in 0..n {
        let name = c.s()?;
        let count = c.u()?;
        metrics.push((
            name,
            MetricState {
                count,
                direction: c.dir()?,
            },
        ));
    }
    let top_k = usize::try_from(c.u()?).map_err(|_| CodecError("top_k".into()))?;
    let n = c.len()?;
    let mut top = Vec::new();
    for _ in 0..n {
        let metric = c.s()?;
        let np = c.len()?;
        for _ in 0..np {
            let part = c.s()?;
            let ne = c.len()?;
            let mut entries = Vec::with_capacity(ne);
            for _ in 0..ne {
                entries.push(get_entry(c)?);
            }
            top.push((metric, part, entries));
        }
    }
    Ok(HeadView {
        text: TextCheck { len, hash, runs_at },
        rows,
        n_runs,
        n_pipelines,
        dataset_names,
        scores,
        models,
        partitions,
        folds,
        task_types,
        metrics,
        top_k,
        top,
    })
}

fn get_tail(c: &mut Cur<'_>, st: &mut SummaryState) -> R<()> {
    let n = c.len()?;
    let mut runs = Vec::with_capacity(n);
    for _ in 0..n {
        let name = c.s()?;
        let count = c.u()?;
        let nb = c.len()?;
        let mut best = SmallMap::default();
        for _ in 0..nb {
            let metric = c.s()?;
            let b = best.get_or_default(metric);
            *b = Best {
                val: c.of()?,
                test: c.of()?,
            };
        }
        runs.push((name.to_string(), RunState { n: count, best }));
    }
    st.runs = runs.into_iter().collect();
    let n = c.len()?;
    let mut pipelines = Vec::with_capacity(n);
    for _ in 0..n {
        pipelines.push(c.s()?.to_string());
    }
    st.pipelines = pipelines.into_iter().collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{RowView, SummaryBuilder, SummaryOptions};

    fn sample() -> SummaryState {
        let mut b = SummaryBuilder::new(SummaryOptions::default());
        for i in 0..300u32 {
            let cfg = format!("cfg{}", i % 17);
            let id = format!("id{i}");
            let model = ["PLS", "RF", "SVR"][i as usize % 3];
            let part = ["train", "val", "test"][i as usize % 3];
            let metric = if i % 5 == 0 { "r2" } else { "mse" };
            let v = (f64::from(i) * 0.37).sin() * 3.0;
            b.observe(
                i as usize,
                &RowView {
                    id: Some(&id),
                    dataset_name: Some("ds"),
                    config_name: Some(&cfg),
                    pipeline_uid: Some(&cfg),
                    model_name: Some(model),
                    fold_id: Some("0"),
                    partition: Some(part),
                    metric: Some(metric),
                    task_type: Some("regression"),
                    scores: [Some(v), (i % 7 != 0).then_some(-v), Some(f64::NAN)],
                },
            )
            .unwrap();
        }
        b.state()
    }

    #[test]
    fn round_trip_is_exact() {
        let st = sample();
        let check = TextCheck::of(r#"{"a":1,"runs":[]}"#);
        let values = encode(&st, &check);
        let enc = split(values.state.as_bytes()).unwrap();
        let (back, text) = enc.state(values.runs.as_bytes()).unwrap();
        assert_eq!(enc.prefix().unwrap().runs_len, values.runs.len() as u64);
        assert_eq!(back, st);
        assert_eq!(text, check);
        let head = enc.head().unwrap();
        assert_eq!(head.n_runs, 17);
        assert!(head.state.runs.is_empty());
        assert_eq!(head.state.top, st.top);
    }

    #[test]
    fn text_check_sees_changes() {
        let t = r#"{"a":1,"runs":[{"id":"x"}]}"#;
        let c = TextCheck::of(t);
        assert_eq!(c.runs_at, Some(6));
        assert!(c.matches(t.as_bytes()));
        assert!(!c.matches(br#"{"a":2,"runs":[{"id":"x"}]}"#));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let st = sample();
        let values = encode(&st, &TextCheck::default());
        let b64 = &base64_simd::STANDARD;
        let bytes = b64.decode_to_vec(&values.state).unwrap();
        let runs = b64.decode_to_vec(&values.runs).unwrap();
        let mut seed = 7u64;
        for _ in 0..2000 {
            let mut b = bytes.clone();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (seed >> 33) as usize % b.len();
            b[at] ^= (seed >> 17) as u8 | 1;
            if (seed >> 9).is_multiple_of(4) {
                b.truncate(at);
            }
            let text = b64.encode_to_string(&b);
            if let Ok(e) = split(text.as_bytes()) {
                let _ = e.state(values.runs.as_bytes());
                let _ = e.view();
            }
            let mut r = runs.clone();
            let n = r.len();
            r[at % n] ^= (seed >> 23) as u8 | 1;
            let mut fresh = SummaryState::default();
            let _ = fill_runs(b64.encode_to_string(&r).as_bytes(), &mut fresh, (17, 17));
        }
        assert!(split(b"not base64 !").is_err());
        assert!(split(b"AAAA").is_err());
    }
}
