//! Writing the state (1.2, 1.3): LEB128 varints, little-endian floats,
//! length-prefixed strings, the head and the runs.

use super::{RunsPlace, RunsRef, TextCheck};
use crate::metric::Direction;
use crate::summary::topk::TopEntry;
use crate::summary::{ScoreState, SummaryState};
use std::collections::BTreeMap;

pub(crate) fn put_u(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn put_i(out: &mut Vec<u8>, v: i64) {
    put_u(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(super) fn put_f(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_of(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(x) => {
            out.push(1);
            put_f(out, x);
        }
        None => out.push(0),
    }
}

pub(crate) fn put_s(out: &mut Vec<u8>, s: &str) {
    put_u(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn put_os(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            put_u(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
        None => out.push(0),
    }
}

pub(super) fn dir_code(d: Direction) -> u8 {
    match d {
        Direction::Maximize => 0,
        Direction::Minimize => 1,
        Direction::TowardZero => 2,
    }
}

pub(super) fn put_score(out: &mut Vec<u8>, s: &ScoreState) {
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

pub(super) fn put_entry(out: &mut Vec<u8>, e: &TopEntry) {
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
    // 1.4: the train score last (an older entry ends before it).
    put_of(&mut rest, e.train_score);
    put_u(out, rest.len() as u64);
    out.extend_from_slice(&rest);
}

fn put_models(out: &mut Vec<u8>, models: &BTreeMap<String, crate::summary::ModelState>) {
    put_u(out, models.len() as u64);
    for (name, m) in models {
        put_s(out, name);
        put_u(out, m.count);
        put_f(out, m.val_sum);
        put_u(out, m.val_count);
    }
}

pub(super) fn put_counts(out: &mut Vec<u8>, m: &BTreeMap<String, u64>) {
    put_u(out, m.len() as u64);
    for (k, v) in m {
        put_s(out, k);
        put_u(out, *v);
    }
}

pub(super) fn put_head(
    out: &mut Vec<u8>,
    st: &SummaryState,
    text: &TextCheck,
    runs: &RunsPlace,
    layout: super::Layout,
) {
    put_head_upto_groups(out, st, text, runs, layout);
}

/// 1.5's last field: where the group aggregates are (a tag, then their
/// length, offset and XXH3-64).
pub(super) fn put_groups_place(out: &mut Vec<u8>, groups: Option<&RunsRef>) {
    match groups {
        Some(r) => {
            out.push(1);
            put_u(out, r.len);
            put_u(out, r.at);
            out.extend_from_slice(&r.hash.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn put_head_upto_groups(
    out: &mut Vec<u8>,
    st: &SummaryState,
    text: &TextCheck,
    runs: &RunsPlace,
    layout: super::Layout,
) {
    put_u(out, text.len);
    out.extend_from_slice(&text.hash.to_le_bytes());
    put_u(out, text.runs_at.map_or(0, |a| a + 1));
    put_u(out, st.rows);
    put_u(out, st.runs.len() as u64);
    put_u(out, st.pipelines.len() as u64);
    match runs {
        RunsPlace::KeyValue { len } => put_u(out, *len),
        RunsPlace::Body(r) => {
            put_u(out, r.len);
            put_u(out, r.at);
            out.extend_from_slice(&r.hash.to_le_bytes());
        }
    }
    put_u(out, st.dataset_names.len() as u64);
    st.dataset_names.iter().for_each(|n| put_s(out, n));
    for s in st.scores() {
        put_score(out, s);
    }
    put_models(out, &st.models);
    put_counts(out, &st.partitions);
    put_u(out, st.folds.len() as u64);
    st.folds.iter().for_each(|f| put_s(out, f));
    put_counts(out, &st.task_types);
    let v3 = layout.per_metric();
    put_u(out, st.metrics.len() as u64);
    for (name, m) in &st.metrics {
        put_s(out, name);
        put_u(out, m.count);
        out.push(dir_code(m.direction));
        if v3 && st.metrics.len() > 1 {
            // 1.4: the metric's own statistics and model sums (with one
            // metric they are the pooled ones: left out, filled on read).
            m.scores.iter().for_each(|s| put_score(out, s));
            put_models(out, &m.models);
        }
    }
    if v3 {
        out.push(u8::from(st.by_metric));
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

/// The runs and pipelines, column by column (format 1.3, `N4R2`): the
/// names, the row counts, a metric table and each run's metric indexes,
/// a presence byte per best, then the best scores' bytes, then the
/// pipelines. Like values side by side compress about 1.5x better than
/// run by run (`N4R1`, [`put_tail_v1`]): on `big`'s 1,890 configs the
/// zstd-3 value went from 31.3 KB to 21.7 KB.
pub(super) fn put_tail(out: &mut Vec<u8>, st: &SummaryState) {
    put_u(out, st.runs.len() as u64);
    for name in st.runs.keys() {
        put_s(out, name);
    }
    for r in st.runs.values() {
        put_u(out, r.n);
    }
    let mut metrics: Vec<&str> = st
        .runs
        .values()
        .flat_map(|r| r.best.iter().map(|(m, _)| m.as_str()))
        .collect();
    metrics.sort_unstable();
    metrics.dedup();
    put_u(out, metrics.len() as u64);
    metrics.iter().for_each(|m| put_s(out, m));
    for r in st.runs.values() {
        put_u(out, r.best.iter().count() as u64);
        for (m, _) in r.best.iter() {
            let at = metrics.binary_search(&m.as_str()).expect("collected above");
            put_u(out, at as u64);
        }
    }
    let bests = || st.runs.values().flat_map(|r| r.best.iter().map(|(_, b)| b));
    for b in bests() {
        out.push(u8::from(b.val.is_some()) | (u8::from(b.test.is_some()) << 1));
    }
    for b in bests() {
        b.val.into_iter().chain(b.test).for_each(|x| put_f(out, x));
    }
    put_u(out, st.pipelines.len() as u64);
    st.pipelines.iter().for_each(|p| put_s(out, p));
}

/// The runs as 1.2 wrote them (`N4R1`), run by run; kept to test that
/// those values still decode.
#[cfg(test)]
pub(super) fn put_tail_v1(out: &mut Vec<u8>, st: &SummaryState) {
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
