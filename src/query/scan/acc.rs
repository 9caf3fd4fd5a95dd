//! A group's accumulator (count, finite count, sum, min, max, closest to
//! zero) and the shapes a file's groups take: shared by the scan's folds
//! (`group`, `split`) and the stored aggregates (`stored`), which come
//! first in the flow.

use crate::metric::Direction;

/// Count, finite count, sum, min and max of one group, and the finite
/// score closest to zero (first seen) for that direction's best.
#[derive(Debug, Clone, Copy)]
pub(super) struct Acc {
    pub(super) count: u64,
    pub(super) n: u64,
    pub(super) sum: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) zero: f64,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            count: 0,
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            zero: f64::NAN,
        }
    }
}

impl Acc {
    /// Adds one row's score (NaN for null).
    #[inline]
    pub(super) fn add(&mut self, v: f64, toward_zero: bool) {
        self.count += 1;
        if v.is_finite() {
            self.n += 1;
            self.sum += v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            if toward_zero && (self.zero.is_nan() || v.abs() < self.zero.abs()) {
                self.zero = v;
            }
        }
    }

    pub(super) fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.n += o.n;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if self.zero.is_nan() || o.zero.abs() < self.zero.abs() {
            self.zero = o.zero;
        }
    }

    pub(super) fn best(&self, dir: Option<Direction>) -> Option<f64> {
        (self.n > 0).then_some(())?;
        match dir? {
            Direction::Maximize => Some(self.max),
            Direction::Minimize => Some(self.min),
            Direction::TowardZero => Some(self.zero),
        }
    }
}

/// One file's groups: (key, accumulator), sorted by key.
pub(super) type Groups = Vec<(Option<String>, Acc)>;

/// Which rows one grouping of a split group-by holds: (metric, partition),
/// each `None` where not split on (or for the rows without one).
pub(crate) type SplitKey = (Option<String>, Option<String>);
