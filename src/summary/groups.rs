//! Per-key aggregates of a file's rows (format 1.5): for each (metric,
//! partition) the rows' count and, per score (val, test, train), the
//! finite scores' count, sum, min, max and the one closest to zero; in
//! total and per model name and per fold id. What a group-by by model,
//! fold, dataset, partition or metric within one metric (and partition)
//! adds up over files, so such a group-by is answered from each file's
//! aggregates without reading its rows.
//!
//! Kept incrementally by the [`super::SummaryBuilder`] (an append adds
//! its rows to the stored aggregates: no rescan), stored in the file's
//! body beside the runs (bytes: `codec::encode_groups`) and read only by
//! group-bys (a summary never reads them). Bounded: a (metric, partition) with more than [`MAX_KEYS`]
//! models or folds drops the aggregates (the file's group-bys are then
//! scanned), so they stay a few KB a file.
//!
//! Sums follow row order within a file; a group-by adds files' sums in
//! dataset order, where a scan adds rows in banks: means agree to about
//! 1e-15 relative, not bit for bit.

use std::collections::BTreeMap;

/// Distinct models (or folds) a (metric, partition) may hold before the
/// aggregates are dropped.
pub const MAX_KEYS: usize = 256;

/// One score's aggregate over finite values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreAgg {
    /// Finite values.
    pub n: u64,
    /// Their sum, in row order.
    pub sum: f64,
    /// Smallest (infinity while `n` is 0).
    pub min: f64,
    /// Largest (-infinity while `n` is 0).
    pub max: f64,
    /// The value closest to zero, first seen (NaN while `n` is 0).
    pub zero: f64,
}

impl Default for ScoreAgg {
    fn default() -> Self {
        ScoreAgg {
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            zero: f64::NAN,
        }
    }
}

impl ScoreAgg {
    #[inline]
    fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.n += 1;
            self.sum += v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            if self.zero.is_nan() || v.abs() < self.zero.abs() {
                self.zero = v;
            }
        }
    }
}

/// Rows of a group and their scores' aggregates (val, test, train).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Agg {
    /// Rows, null and non-finite scores included.
    pub count: u64,
    /// val, test, train.
    pub scores: [ScoreAgg; 3],
}

impl Agg {
    #[inline]
    fn add(&mut self, scores: &[Option<f64>; 3]) {
        self.count += 1;
        for (a, v) in self.scores.iter_mut().zip(scores) {
            if let Some(v) = v {
                a.add(*v);
            }
        }
    }
}

/// The rows of one (metric, partition): in total, by model and by fold
/// (a null key is `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    #[allow(missing_docs)]
    pub total: Agg,
    #[allow(missing_docs)]
    pub models: BTreeMap<Option<String>, Agg>,
    #[allow(missing_docs)]
    pub folds: BTreeMap<Option<String>, Agg>,
}

/// (metric, partition), `None` for null.
pub type CellKey = (Option<String>, Option<String>);

/// A file's aggregates by (metric, partition).
#[derive(Debug, Clone, Default)]
pub struct Groups {
    #[allow(missing_docs)]
    pub cells: BTreeMap<CellKey, Cell>,
}

/// Equal when every key and every number is, bit for bit (a group
/// without a finite score holds NaN as its closest to zero, equal to
/// itself here): what `refresh --verify` compares.
impl PartialEq for Groups {
    fn eq(&self, other: &Self) -> bool {
        let agg = |a: &Agg, b: &Agg| {
            a.count == b.count
                && a.scores.iter().zip(&b.scores).all(|(x, y)| {
                    x.n == y.n
                        && [x.sum, x.min, x.max, x.zero]
                            .iter()
                            .zip([y.sum, y.min, y.max, y.zero])
                            .all(|(p, q)| p.to_bits() == q.to_bits())
                })
        };
        let keyed = |a: &BTreeMap<Option<String>, Agg>, b: &BTreeMap<Option<String>, Agg>| {
            a.len() == b.len() && a.iter().zip(b).all(|((k, x), (l, y))| k == l && agg(x, y))
        };
        self.cells.len() == other.cells.len()
            && self.cells.iter().zip(&other.cells).all(|((k, x), (l, y))| {
                k == l
                    && agg(&x.total, &y.total)
                    && keyed(&x.models, &y.models)
                    && keyed(&x.folds, &y.folds)
            })
    }
}

/// Builds [`Groups`] row by row. Rows come grouped by config (one model,
/// the folds and partitions cycling): each lookup tries the last hit
/// first, then a short linear search, so a row costs a few string
/// comparisons and no allocation once its keys were seen.
#[derive(Debug, Clone, Default)]
pub struct GroupsBuilder {
    cells: Vec<(CellKey, Slots, Slots, Agg)>,
    last: usize,
    /// Too many keys: no aggregates for this file.
    dropped: bool,
}

#[derive(Debug, Clone, Default)]
struct Slots {
    slots: Vec<(Option<String>, Agg)>,
    last: usize,
}

impl Slots {
    #[inline]
    fn get(&mut self, key: Option<&str>) -> Option<&mut Agg> {
        if self
            .slots
            .get(self.last)
            .is_none_or(|(k, _)| k.as_deref() != key)
        {
            match self.slots.iter().position(|(k, _)| k.as_deref() == key) {
                Some(i) => self.last = i,
                None => {
                    if self.slots.len() >= MAX_KEYS {
                        return None;
                    }
                    self.slots.push((key.map(str::to_string), Agg::default()));
                    self.last = self.slots.len() - 1;
                }
            }
        }
        Some(&mut self.slots[self.last].1)
    }

    fn of(map: &BTreeMap<Option<String>, Agg>) -> Slots {
        Slots {
            slots: map.iter().map(|(k, a)| (k.clone(), *a)).collect(),
            last: 0,
        }
    }

    fn to_map(&self) -> BTreeMap<Option<String>, Agg> {
        self.slots.iter().cloned().collect()
    }
}

impl GroupsBuilder {
    /// Continues from stored aggregates; `None` (a file written before
    /// 1.5, or whose aggregates were dropped) gives a builder that stays
    /// empty ([`Self::groups`] is `None`): its old rows are not in it.
    pub fn from_groups(g: Option<&Groups>) -> GroupsBuilder {
        let Some(g) = g else {
            return GroupsBuilder {
                dropped: true,
                ..GroupsBuilder::default()
            };
        };
        GroupsBuilder {
            cells: g
                .cells
                .iter()
                .map(|(k, c)| {
                    (
                        k.clone(),
                        Slots::of(&c.models),
                        Slots::of(&c.folds),
                        c.total,
                    )
                })
                .collect(),
            last: 0,
            dropped: false,
        }
    }

    /// Adds one row. O(keys seen) at worst, O(1) for a row whose keys
    /// repeat the previous row's.
    #[inline]
    pub fn add(
        &mut self,
        metric: Option<&str>,
        partition: Option<&str>,
        model: Option<&str>,
        fold: Option<&str>,
        scores: &[Option<f64>; 3],
    ) {
        if self.dropped {
            return;
        }
        let hit = |(k, ..): &(CellKey, Slots, Slots, Agg)| {
            k.0.as_deref() == metric && k.1.as_deref() == partition
        };
        if !self.cells.get(self.last).is_some_and(hit) {
            match self.cells.iter().position(hit) {
                Some(i) => self.last = i,
                None => {
                    self.cells.push((
                        (metric.map(str::to_string), partition.map(str::to_string)),
                        Slots::default(),
                        Slots::default(),
                        Agg::default(),
                    ));
                    self.last = self.cells.len() - 1;
                }
            }
        }
        let (_, models, folds, total) = &mut self.cells[self.last];
        total.add(scores);
        match (models.get(model), folds.get(fold)) {
            (Some(m), Some(f)) => {
                m.add(scores);
                f.add(scores);
            }
            _ => {
                self.dropped = true;
                self.cells = Vec::new();
            }
        }
    }

    /// The aggregates so far; `None` once dropped.
    pub fn groups(&self) -> Option<Groups> {
        if self.dropped {
            return None;
        }
        Some(Groups {
            cells: self
                .cells
                .iter()
                .map(|(k, m, f, t)| {
                    (
                        k.clone(),
                        Cell {
                            total: *t,
                            models: m.to_map(),
                            folds: f.to_map(),
                        },
                    )
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_add_up_and_continue() {
        let mut b = GroupsBuilder::from_groups(Some(&Groups::default()));
        let rows = [
            (
                Some("mse"),
                Some("val"),
                Some("PLS"),
                Some("0"),
                [Some(1.0), None, Some(f64::NAN)],
            ),
            (
                Some("mse"),
                Some("val"),
                Some("PLS"),
                Some("1"),
                [Some(-0.5), Some(2.0), Some(3.0)],
            ),
            (Some("mse"), None, None, None, [None, None, None]),
            (
                None,
                Some("test"),
                Some("RF"),
                Some("0"),
                [Some(4.0), Some(f64::INFINITY), None],
            ),
        ];
        for (m, p, model, fold, s) in &rows {
            b.add(*m, *p, *model, *fold, s);
        }
        let g = b.groups().unwrap();
        let cell = &g.cells[&(Some("mse".into()), Some("val".into()))];
        assert_eq!(cell.total.count, 2);
        assert_eq!(cell.total.scores[0].sum, 0.5);
        assert_eq!(cell.total.scores[0].zero, -0.5);
        assert_eq!(cell.models[&Some("PLS".into())].scores[2].n, 1);
        assert_eq!(g.cells[&(None, Some("test".into()))].total.scores[1].n, 0);
        assert_eq!(g, g.clone(), "NaN closest-to-zero values compare equal");
        // An append continues the aggregates.
        let mut more = GroupsBuilder::from_groups(Some(&g));
        more.add(
            Some("mse"),
            Some("val"),
            Some("PLS"),
            Some("0"),
            &[Some(2.0), None, None],
        );
        let g2 = more.groups().unwrap();
        let cell = &g2.cells[&(Some("mse".into()), Some("val".into()))];
        assert_eq!((cell.total.count, cell.total.scores[0].sum), (3, 2.5));
        // A file of before 1.5 stays without aggregates.
        let mut none = GroupsBuilder::from_groups(None);
        none.add(
            Some("mse"),
            Some("val"),
            None,
            None,
            &[Some(1.0), None, None],
        );
        assert!(none.groups().is_none());
    }

    #[test]
    fn too_many_models_drop_the_aggregates() {
        let mut b = GroupsBuilder::from_groups(Some(&Groups::default()));
        for i in 0..=MAX_KEYS {
            b.add(
                Some("mse"),
                Some("val"),
                Some(&format!("m{i}")),
                None,
                &[Some(1.0), None, None],
            );
        }
        assert!(b.groups().is_none());
    }
}
