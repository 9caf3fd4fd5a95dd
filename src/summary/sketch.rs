//! A mergeable quantile sketch with a relative-error guarantee (DDSketch).
//!
//! Exact quartiles need every value; past the exact limit (1 million rows a
//! file by default) and for workspace-wide merges, n4a answers from this
//! sketch instead. Each value `v` falls in bucket `ceil(ln|v| / ln γ)` with
//! `γ = (1 + α) / (1 − α)`; a bucket is represented by `2γ^i / (γ + 1)`, which
//! is within `α·|v|` of every value in it. So for any rank, the value returned
//! is within relative error `α` of the true value at that rank, whatever the
//! data, and two sketches merge exactly by adding bucket counts.
//!
//! Memory: one counter per occupied bucket. Scores spanning 1e-6..1e6 with
//! α = 0.01 occupy at most ~1,400 buckets per sign; the store is capped at
//! [`MAX_BUCKETS`] per sign by folding the smallest magnitudes together, which
//! only loosens the bound for values below the folded threshold (recorded in
//! `collapsed`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Relative accuracy used by n4a's summaries.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// Cap on buckets per sign.
pub const MAX_BUCKETS: usize = 2048;
/// Magnitudes below this count as zero.
const MIN_MAGNITUDE: f64 = 1e-12;

/// A DDSketch over finite values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// Relative accuracy α.
    pub alpha: f64,
    /// Count of values with magnitude below 1e-12.
    pub zero: u64,
    /// Buckets of positive values, by index.
    #[serde(with = "columns")]
    pub pos: BTreeMap<i32, u64>,
    /// Buckets of negative values, by index of the magnitude.
    #[serde(with = "columns")]
    pub neg: BTreeMap<i32, u64>,
    /// True once buckets were folded to respect [`MAX_BUCKETS`].
    #[serde(default)]
    pub collapsed: bool,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new(DEFAULT_ALPHA)
    }
}

impl Sketch {
    /// An empty sketch with relative accuracy `alpha`.
    pub fn new(alpha: f64) -> Self {
        Sketch {
            alpha,
            zero: 0,
            pos: BTreeMap::new(),
            neg: BTreeMap::new(),
            collapsed: false,
        }
    }

    fn ln_gamma(&self) -> f64 {
        ((1.0 + self.alpha) / (1.0 - self.alpha)).ln()
    }

    fn index(&self, magnitude: f64) -> i32 {
        (magnitude.ln() / self.ln_gamma()).ceil() as i32
    }

    fn value(&self, index: i32) -> f64 {
        let g = self.ln_gamma().exp();
        2.0 * (index as f64 * self.ln_gamma()).exp() / (g + 1.0)
    }

    /// Number of values in the sketch.
    pub fn count(&self) -> u64 {
        self.zero + self.pos.values().sum::<u64>() + self.neg.values().sum::<u64>()
    }

    /// Adds one finite value. O(log buckets).
    pub fn push(&mut self, v: f64) {
        if v.abs() < MIN_MAGNITUDE {
            self.zero += 1;
        } else if v > 0.0 {
            let i = self.index(v);
            *self.pos.entry(i).or_default() += 1;
            self.cap();
        } else {
            let i = self.index(-v);
            *self.neg.entry(i).or_default() += 1;
            self.cap();
        }
    }

    /// Adds `other`'s counts. Sketches of different α cannot merge; n4a
    /// always writes [`DEFAULT_ALPHA`], so a mismatch means a foreign file and
    /// the caller falls back to leaving quartiles out.
    pub fn merge(&mut self, other: &Sketch) -> bool {
        if (self.alpha - other.alpha).abs() > 1e-15 {
            return false;
        }
        self.zero += other.zero;
        for (i, c) in &other.pos {
            *self.pos.entry(*i).or_default() += c;
        }
        for (i, c) in &other.neg {
            *self.neg.entry(*i).or_default() += c;
        }
        self.collapsed |= other.collapsed;
        self.cap();
        true
    }

    fn cap(&mut self) {
        for store in [&mut self.pos, &mut self.neg] {
            while store.len() > MAX_BUCKETS {
                let (_, c) = store.pop_first().expect("non-empty");
                *store.first_entry().expect("more than one").get_mut() += c;
                self.collapsed = true;
            }
        }
    }

    /// The value at 0-based `rank` in ascending order, within relative
    /// error α of the true one. `None` when `rank` is out of range.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        let mut seen = 0u64;
        for (i, c) in self.neg.iter().rev() {
            seen += c;
            if rank < seen {
                return Some(-self.value(*i));
            }
        }
        seen += self.zero;
        if rank < seen {
            return Some(0.0);
        }
        for (i, c) in &self.pos {
            seen += c;
            if rank < seen {
                return Some(self.value(*i));
            }
        }
        None
    }
}

/// Buckets as two parallel integer arrays, `{"index": [..], "count": [..]}`:
/// several times faster to decode than a JSON object keyed by strings.
mod columns {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Columns {
        index: Vec<i32>,
        count: Vec<u64>,
    }

    pub fn serialize<S: Serializer>(m: &BTreeMap<i32, u64>, s: S) -> Result<S::Ok, S::Error> {
        Columns {
            index: m.keys().copied().collect(),
            count: m.values().copied().collect(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<i32, u64>, D::Error> {
        let c = Columns::deserialize(d)?;
        if c.index.len() != c.count.len() {
            return Err(serde::de::Error::custom(
                "sketch index and count lengths differ",
            ));
        }
        Ok(c.index.into_iter().zip(c.count).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_rank_is_within_relative_error(
            xs in prop::collection::vec(prop_oneof![-1e4f64..1e4, -1.0f64..1.0, Just(0.0)], 1..400),
        ) {
            let mut s = Sketch::default();
            xs.iter().for_each(|x| s.push(*x));
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            for (rank, truth) in sorted.iter().enumerate() {
                let est = s.value_at_rank(rank as u64).unwrap();
                let bound = DEFAULT_ALPHA * truth.abs() + MIN_MAGNITUDE;
                prop_assert!((est - truth).abs() <= bound * (1.0 + 1e-9), "rank {} est {} truth {}", rank, est, truth);
            }
        }

        #[test]
        fn merge_equals_one_sketch(xs in prop::collection::vec(-1e3f64..1e3, 0..200), cut in 0usize..200) {
            let cut = cut.min(xs.len());
            let mut one = Sketch::default();
            xs.iter().for_each(|x| one.push(*x));
            let (mut a, mut b) = (Sketch::default(), Sketch::default());
            xs[..cut].iter().for_each(|x| a.push(*x));
            xs[cut..].iter().for_each(|x| b.push(*x));
            prop_assert!(a.merge(&b));
            prop_assert_eq!(a, one);
        }
    }

    #[test]
    fn buckets_are_capped() {
        let mut s = Sketch::default();
        for i in 0..100_000 {
            s.push(1e-9 * 1.05f64.powi(i % 900));
        }
        assert!(s.pos.len() <= MAX_BUCKETS);
        assert_eq!(s.count(), 100_000);
    }
}
