//! [`StateMerger`]: many states folded into one (appends, workspaces)
//! without rebuilding the top-k heaps for each, and a state head folded in
//! place.

use super::state::{
    add_counts, better, get_or_insert, insert, note_name, take_tops, union_set, union_with,
};
use super::topk::TopK;
use super::SummaryState;
use std::collections::BTreeMap;

/// Folds many states into one without rebuilding the top-k heaps for each
/// (a workspace merge adds thousands): O(size of each added state), and an
/// added top entry is cloned only if it makes the cut.
pub struct StateMerger {
    state: SummaryState,
    tops: BTreeMap<String, BTreeMap<String, TopK>>,
    ok: bool,
}

impl StateMerger {
    /// A merger starting from `state`.
    pub fn new(mut state: SummaryState) -> Self {
        state.fill_by_metric();
        let tops = take_tops(&mut state);
        StateMerger {
            state,
            tops,
            ok: true,
        }
    }

    /// Adds `other`: its top entries' row ordinals shifted by `offset` and,
    /// with `tag`, marked with that dataset.
    pub fn add(&mut self, other: &SummaryState, offset: u64, tag: Option<&str>) {
        // A state of before 1.3 with one metric: its pooled statistics are
        // that metric's (see `SummaryState::fill_by_metric`).
        let filled;
        let other = if other.by_metric {
            other
        } else {
            let mut o = other.clone();
            o.fill_by_metric();
            filled = o;
            &filled
        };
        let st = &mut self.state;
        st.rows += other.rows;
        for n in &other.dataset_names {
            note_name(&mut st.dataset_names, n);
        }
        for (mine, theirs) in st.scores_mut().into_iter().zip(other.scores()) {
            self.ok &= mine.merge(theirs);
        }
        for (k, m) in &other.models {
            let e = get_or_insert(&mut st.models, k);
            e.count += m.count;
            e.val_sum += m.val_sum;
            e.val_count += m.val_count;
        }
        add_counts(&mut st.partitions, &other.partitions);
        add_counts(&mut st.task_types, &other.task_types);
        other.folds.iter().for_each(|f| insert(&mut st.folds, f));
        union_set(&mut st.pipelines, &other.pipelines);
        for (name, m) in &other.metrics {
            match st.metrics.get_mut(name) {
                Some(e) => self.ok &= e.merge(m),
                None => {
                    st.metrics.insert(name.clone(), m.clone());
                }
            }
        }
        st.by_metric &= other.by_metric;
        let metrics = &st.metrics;
        let fold_run = |mine: &mut super::state::RunState, r: &super::state::RunState| {
            mine.n += r.n;
            for (metric, b) in r.best.iter() {
                let dir = metrics.get(metric).map(|m| m.direction);
                let e = mine.best.get_or_default(metric);
                if let Some(dir) = dir {
                    e.val = better(dir, e.val, b.val);
                    e.test = better(dir, e.test, b.test);
                }
            }
        };
        union_with(
            &mut st.runs,
            &other.runs,
            |r| {
                let mut mine = super::state::RunState::default();
                fold_run(&mut mine, r);
                mine
            },
            fold_run,
        );
        st.top_k = st.top_k.max(other.top_k);
        for (metric, parts) in &other.top {
            let Some(dir) = st.metrics.get(metric).map(|m| m.direction) else {
                continue;
            };
            let k = st.top_k;
            let per_metric = match self.tops.get_mut(metric) {
                Some(p) => p,
                None => self.tops.entry(metric.clone()).or_default(),
            };
            for (part, entries) in parts {
                let t = match per_metric.get_mut(part) {
                    Some(t) => t,
                    None => per_metric
                        .entry(part.clone())
                        .or_insert_with(|| TopK::new(k, dir)),
                };
                for e in entries {
                    let score = e.val_score.unwrap_or(f64::NAN);
                    let dataset = tag.or(e.dataset.as_deref());
                    if t.beats_worst(score, dataset, e.row + offset) {
                        let mut e = e.clone();
                        e.row += offset;
                        if let Some(d) = tag {
                            e.dataset = Some(d.to_string());
                        }
                        t.offer(e);
                    }
                }
            }
        }
    }

    /// Adds a state head read in place ([`super::codec::HeadView`]): as
    /// [`Self::add`] without runs and pipelines, and without copying a
    /// string that does not stay (a top entry is copied only if it makes
    /// the cut).
    pub fn add_view(&mut self, other: &super::codec::HeadView<'_>, tag: Option<&str>) {
        if !other.by_metric {
            // A head of before 1.3: owned, its per-metric statistics filled
            // where they can be (one metric).
            let head = other.to_head();
            return self.add(&head.state, 0, tag);
        }
        let st = &mut self.state;
        st.rows += other.rows;
        for n in &other.dataset_names {
            note_name(&mut st.dataset_names, n);
        }
        for (mine, theirs) in st.scores_mut().into_iter().zip(&other.scores) {
            self.ok &= merge_score_view(mine, theirs);
        }
        for (k, m) in &other.models {
            let e = get_or_insert(&mut st.models, k);
            e.count += m.count;
            e.val_sum += m.val_sum;
            e.val_count += m.val_count;
        }
        for (k, c) in &other.partitions {
            *get_or_insert(&mut st.partitions, k) += c;
        }
        for (k, c) in &other.task_types {
            *get_or_insert(&mut st.task_types, k) += c;
        }
        other.folds.iter().for_each(|f| insert(&mut st.folds, f));
        // A 1.3 head of one metric leaves that metric's statistics out:
        // they are the pooled ones.
        let single = other.metrics.len() == 1;
        for (name, m) in &other.metrics {
            let e = match st.metrics.get_mut(*name) {
                Some(e) => e,
                None => st
                    .metrics
                    .entry(name.to_string())
                    .or_insert_with(|| super::MetricState::new(m.direction)),
            };
            if single {
                e.count += m.count;
                for (mine, theirs) in e.scores.iter_mut().zip(&other.scores) {
                    self.ok &= merge_score_view(mine, theirs);
                }
                for (k, mm) in &other.models {
                    let x = get_or_insert(&mut e.models, k);
                    x.count += mm.count;
                    x.val_sum += mm.val_sum;
                    x.val_count += mm.val_count;
                }
            } else {
                self.ok &= e.merge(m);
            }
        }
        st.by_metric &= other.by_metric;
        st.top_k = st.top_k.max(other.top_k);
        let k = st.top_k;
        for (metric, part, entries) in &other.top {
            let Some(dir) = st.metrics.get(*metric).map(|m| m.direction) else {
                continue;
            };
            let per_metric = match self.tops.get_mut(*metric) {
                Some(p) => p,
                None => self.tops.entry(metric.to_string()).or_default(),
            };
            let t = match per_metric.get_mut(*part) {
                Some(t) => t,
                None => per_metric
                    .entry(part.to_string())
                    .or_insert_with(|| TopK::new(k, dir)),
            };
            for e in entries {
                let score = e.val_score.unwrap_or(f64::NAN);
                // A 1.2 head's entries carry no dataset (one file's rows):
                // the tag is the file's.
                if t.beats_worst(score, tag, e.row) {
                    if let Some(mut owned) = e.to_entry() {
                        if let Some(d) = tag {
                            owned.dataset = Some(d.to_string());
                        }
                        t.offer(owned);
                    }
                }
            }
        }
    }

    /// The merged state, and whether every sketch merged (same α).
    pub fn finish(mut self) -> (SummaryState, bool) {
        self.state.top = self
            .tops
            .iter()
            .map(|(m, parts)| {
                let p = parts.iter().map(|(k, t)| (k.clone(), t.sorted())).collect();
                (m.clone(), p)
            })
            .collect();
        (self.state, self.ok)
    }
}

/// Folds a score's statistics read in place into `mine`; false when the
/// sketches cannot merge (different α).
fn merge_score_view(mine: &mut super::ScoreState, theirs: &super::codec::ScoreView<'_>) -> bool {
    mine.welford.merge(&theirs.welford);
    mine.nan_count += theirs.nan_count;
    mine.inf_count += theirs.inf_count;
    if (mine.sketch.alpha - theirs.alpha).abs() > 1e-15 {
        return false;
    }
    mine.sketch.zero += theirs.zero;
    mine.sketch.collapsed |= theirs.collapsed;
    for (store, run) in [
        (&mut mine.sketch.pos, theirs.run(0)),
        (&mut mine.sketch.neg, theirs.run(1)),
    ] {
        match run.single_bytes() {
            Some(bytes) => store.add_dense_bytes(run.first(), bytes),
            None => store.add_dense(run.first(), run.span(), run.counts()),
        }
    }
    mine.sketch.fold_to_cap();
    true
}
