//! Reading the 1.2 state: a bounds-checked cursor, and views of the head
//! that borrow from the bytes (what a workspace merge reads without
//! building a `SummaryState`).

use super::{bad, CodecError, RunsPlace, RunsRef, StateHead, TextCheck, R};
use crate::metric::Direction;
use crate::summary::sketch::Sketch;
use crate::summary::topk::TopEntry;
use crate::summary::welford::Welford;
use crate::summary::{Best, MetricState, ModelState, RunState, ScoreState, SmallMap, SummaryState};
use std::collections::{BTreeMap, BTreeSet};

/// A bounds-checked cursor over the codec's bytes (varints, floats,
/// length-prefixed strings); also what the footer cache on disk reads with.
pub(crate) struct Cur<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cur<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Cur<'a> {
        Cur { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn byte(&mut self) -> R<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| CodecError("unexpected end".into()))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u(&mut self) -> R<u64> {
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

    pub(super) fn i(&mut self) -> R<i64> {
        let v = self.u()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A count of items each taking at least one byte.
    pub(crate) fn len(&mut self) -> R<usize> {
        let n = self.u()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return bad("count larger than the bytes left");
        }
        Ok(n as usize)
    }

    pub(crate) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| CodecError("unexpected end".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn f(&mut self) -> R<f64> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn of(&mut self) -> R<Option<f64>> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.f().map(Some),
            _ => bad("bad option tag"),
        }
    }

    pub(super) fn str_of(&mut self, n: usize) -> R<&'a str> {
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|_| CodecError("string not UTF-8".into()))
    }

    pub(crate) fn s(&mut self) -> R<&'a str> {
        let n = self.len()?;
        self.str_of(n)
    }

    pub(super) fn os(&mut self) -> R<Option<&'a str>> {
        match self.u()? {
            0 => Ok(None),
            n => {
                let n = usize::try_from(n - 1).map_err(|_| CodecError("length".into()))?;
                self.str_of(n).map(Some)
            }
        }
    }

    pub(super) fn dir(&mut self) -> R<Direction> {
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
        sketch.pos = crate::summary::sketch::Store::from_pairs(self.buckets(0));
        sketch.neg = crate::summary::sketch::Store::from_pairs(self.buckets(1));
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
    pub fn to_entry(self) -> Option<TopEntry> {
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
            // 1.4 entries end with the train score.
            train_score: if c.pos < self.raw.len() {
                c.of().ok()?
            } else {
                None
            },
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
    pub runs: RunsPlace,
    /// (1.5) Where the group aggregates are in the body.
    pub groups: Option<RunsRef>,
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
    /// Whether each metric carries its own statistics (1.4).
    pub by_metric: bool,
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
                entries
                    .iter()
                    .copied()
                    .filter_map(EntryView::to_entry)
                    .collect(),
            );
        }
        let mut state = SummaryState {
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
            by_metric: self.by_metric,
            groups: None,
        };
        // One metric (a 1.4 head leaves its statistics out, an older head
        // has none): its pooled statistics are that metric's.
        state.fill_single_metric();
        StateHead {
            state,
            n_runs: self.n_runs,
            n_pipelines: self.n_pipelines,
            text: self.text,
            runs: self.runs,
            groups: self.groups,
        }
    }
}

pub(super) fn get_score<'a>(c: &mut Cur<'a>) -> R<ScoreView<'a>> {
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
        if span as i64 > crate::summary::sketch::MAX_SPAN {
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

pub(super) fn get_entry<'a>(c: &mut Cur<'a>) -> R<EntryView<'a>> {
    let val_score = c.of()?;
    let row = c.u()?;
    let n = c.len()?;
    Ok(EntryView {
        val_score,
        row,
        raw: c.take(n)?,
    })
}

pub(super) fn get_counts<'a>(c: &mut Cur<'a>) -> R<Vec<(&'a str, u64)>> {
    let n = c.len()?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push((c.s()?, c.u()?));
    }
    Ok(v)
}

/// Where the runs are: a 1.2 head gives the `n4a_runs` value's length,
/// a 1.3 head their length, offset and hash in the file's body.
pub(super) fn get_runs_place(c: &mut Cur<'_>, v2: bool) -> R<RunsPlace> {
    let len = c.u()?;
    if !v2 {
        return Ok(RunsPlace::KeyValue { len });
    }
    let at = c.u()?;
    let hash = u64::from_le_bytes(c.take(8)?.try_into().expect("8 bytes"));
    Ok(RunsPlace::Body(RunsRef { at, len, hash }))
}

pub(super) fn get_head<'a>(c: &mut Cur<'a>, layout: super::Layout) -> R<HeadView<'a>> {
    let v3 = layout.per_metric();
    let len = c.u()?;
    let hash = u64::from_le_bytes(c.take(8)?.try_into().expect("8 bytes"));
    let runs_at = c.u()?.checked_sub(1);
    let rows = c.u()?;
    let n_runs = c.u()?;
    let n_pipelines = c.u()?;
    let runs = get_runs_place(c, layout.runs_in_body())?;
    let n = c.len()?;
    let mut dataset_names = Vec::with_capacity(n);
    for _ in 0..n {
        dataset_names.push(c.s()?);
    }
    let scores = [get_score(c)?, get_score(c)?, get_score(c)?];
    let models = get_models(c)?;
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
        let mut m = MetricState::new(c.dir()?);
        m.count = count;
        if v3 && n > 1 {
            for s in &mut m.scores {
                *s = get_score(c)?.to_state();
            }
            m.models = get_models(c)?
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        }
        metrics.push((name, m));
    }
    let by_metric = if v3 { c.byte()? != 0 } else { false };
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
    // 1.5: where the group aggregates are, last.
    let groups = if layout == super::Layout::V4 && c.byte()? != 0 {
        let len = c.u()?;
        let at = c.u()?;
        let hash = u64::from_le_bytes(c.take(8)?.try_into().expect("8 bytes"));
        Some(RunsRef { at, len, hash })
    } else {
        None
    };
    Ok(HeadView {
        text: TextCheck { len, hash, runs_at },
        runs,
        groups,
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
        by_metric,
        top_k,
        top,
    })
}

fn get_models<'a>(c: &mut Cur<'a>) -> R<Vec<(&'a str, ModelState)>> {
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
    Ok(models)
}

/// The runs column by column (`N4R2`, see `write::put_tail`).
pub(super) fn get_tail(c: &mut Cur<'_>, st: &mut SummaryState) -> R<()> {
    let n = c.len()?;
    let names = (0..n).map(|_| c.s()).collect::<R<Vec<_>>>()?;
    let counts = (0..n).map(|_| c.u()).collect::<R<Vec<_>>>()?;
    let nm = c.len()?;
    let metrics = (0..nm).map(|_| c.s()).collect::<R<Vec<_>>>()?;
    let mut per_run = Vec::with_capacity(n);
    let mut total = 0usize;
    for _ in 0..n {
        let nb = c.len()?;
        let idx = (0..nb)
            .map(|_| {
                let i = c.len()?;
                metrics
                    .get(i)
                    .copied()
                    .ok_or_else(|| CodecError("metric index out of range".into()))
            })
            .collect::<R<Vec<_>>>()?;
        total += nb;
        per_run.push(idx);
    }
    let tags = c.take(total)?;
    let mut tag = tags.iter();
    let mut runs = Vec::with_capacity(n);
    for ((name, count), idx) in names.into_iter().zip(counts).zip(per_run) {
        let mut best: SmallMap<Best> = SmallMap::default();
        for metric in idx {
            let t = *tag.next().expect("one tag per best");
            if t > 3 {
                return bad("bad presence byte");
            }
            let val = if t & 1 == 1 { Some(c.f()?) } else { None };
            let test = if t & 2 == 2 { Some(c.f()?) } else { None };
            *best.get_or_default(metric) = Best { val, test };
        }
        runs.push((name.to_string(), RunState { n: count, best }));
    }
    st.runs = runs.into_iter().collect();
    get_pipelines(c, st)
}

fn get_pipelines(c: &mut Cur<'_>, st: &mut SummaryState) -> R<()> {
    let n = c.len()?;
    let mut pipelines = Vec::with_capacity(n);
    for _ in 0..n {
        pipelines.push(c.s()?.to_string());
    }
    st.pipelines = pipelines.into_iter().collect();
    Ok(())
}

/// The runs run by run, as 1.2 wrote them (`N4R1`).
pub(super) fn get_tail_v1(c: &mut Cur<'_>, st: &mut SummaryState) -> R<()> {
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
    get_pipelines(c, st)
}
