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

use serde::{Deserialize, Serialize};

/// Relative accuracy used by n4a's summaries.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// Cap on buckets per sign.
pub const MAX_BUCKETS: usize = 2048;
/// Magnitudes below this count as zero.
const MIN_MAGNITUDE: f64 = 1e-12;
/// Widest index span a decoded sketch may have (wider than any α ≥ 0.001
/// produces for finite values), so a corrupt footer cannot make a store
/// allocate without bound.
pub const MAX_SPAN: i64 = 1 << 16;

/// Bucket counts by index, stored densely from the lowest index seen: a
/// push or a merge is an array add (scores span a few hundred buckets), not
/// a tree insertion. Finite magnitudes from 1e-12 to f64::MAX have indexes
/// from about -1,400 to 35,500 at α = 0.01, so a store never spans more
/// than [`MAX_SPAN`] buckets (8 bytes each).
#[derive(Debug, Clone, Default)]
pub struct Store {
    offset: i32,
    counts: Vec<u64>,
    occupied: usize,
}

impl PartialEq for Store {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Store {
    /// A store of these `(index, count)` buckets (zero counts skipped).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (i32, u64)>) -> Store {
        let mut s = Store::default();
        for (i, c) in pairs {
            s.add(i, c);
        }
        s
    }

    /// Occupied buckets.
    pub fn len(&self) -> usize {
        self.occupied
    }

    /// True when no bucket is occupied.
    pub fn is_empty(&self) -> bool {
        self.occupied == 0
    }

    /// The occupied buckets, by ascending index.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(j, c)| (self.offset + j as i32, *c))
    }

    /// Sum of the counts.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `c` to bucket `i`. Amortised O(1) (the array grows to cover `i`).
    pub fn add(&mut self, i: i32, c: u64) {
        if c == 0 {
            return;
        }
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(0);
        } else if i < self.offset {
            let grow = (self.offset - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = i;
        } else if (i - self.offset) as usize >= self.counts.len() {
            self.counts.resize((i - self.offset) as usize + 1, 0);
        }
        let slot = &mut self.counts[(i - self.offset) as usize];
        if *slot == 0 {
            self.occupied += 1;
        }
        *slot += c;
    }

    /// Adds a dense run of counts, one a slot from index `first` over
    /// `span` slots (an encoded store): the array grows once, then each
    /// count is an add. O(span).
    pub fn add_dense(&mut self, first: i32, span: usize, counts: impl Iterator<Item = u64>) {
        let Some(slots) = self.slots(first, span) else {
            return;
        };
        let mut newly = 0;
        for (slot, c) in slots.iter_mut().zip(counts) {
            if c > 0 {
                if *slot == 0 {
                    newly += 1;
                }
                *slot += c;
            }
        }
        self.occupied += newly;
    }

    /// [`Self::add_dense`] of counts below 128 stored one byte each: a
    /// loop without decoding or branches. O(span).
    pub fn add_dense_bytes(&mut self, first: i32, counts: &[u8]) {
        let Some(slots) = self.slots(first, counts.len()) else {
            return;
        };
        let mut newly = 0;
        for (slot, &c) in slots.iter_mut().zip(counts) {
            newly += usize::from((*slot == 0) & (c != 0));
            *slot += u64::from(c);
        }
        self.occupied += newly;
    }

    /// The `span` slots from index `first`, the array grown to hold them;
    /// `None` for an empty span.
    fn slots(&mut self, first: i32, span: usize) -> Option<&mut [u64]> {
        if span == 0 {
            return None;
        }
        let last = first + span as i32 - 1;
        if self.counts.is_empty() {
            self.offset = first;
        }
        if first < self.offset {
            let grow = (self.offset - first) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = first;
        }
        let need = (last - self.offset) as usize + 1;
        if self.counts.len() < need {
            self.counts.resize(need, 0);
        }
        let base = (first - self.offset) as usize;
        Some(&mut self.counts[base..base + span])
    }

    /// Adds every bucket of `other`. O(span of both).
    pub fn merge(&mut self, other: &Store) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.offset = other.offset;
        }
        let lo = self.offset.min(other.offset);
        let hi =
            (self.offset + self.counts.len() as i32).max(other.offset + other.counts.len() as i32);
        if lo < self.offset {
            let grow = (self.offset - lo) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = lo;
        }
        self.counts.resize((hi - self.offset) as usize, 0);
        let base = (other.offset - self.offset) as usize;
        for (slot, c) in self.counts[base..].iter_mut().zip(&other.counts) {
            if *c > 0 {
                if *slot == 0 {
                    self.occupied += 1;
                }
                *slot += c;
            }
        }
    }

    /// Folds the lowest occupied buckets into the next until at most `max`
    /// are occupied; returns whether anything was folded.
    fn cap(&mut self, max: usize) -> bool {
        let mut folded = false;
        while self.occupied > max {
            let first = self.counts.iter().position(|c| *c > 0).expect("occupied");
            let next = first
                + 1
                + self.counts[first + 1..]
                    .iter()
                    .position(|c| *c > 0)
                    .expect("more than one occupied");
            let c = std::mem::take(&mut self.counts[first]);
            self.counts[next] += c;
            self.occupied -= 1;
            folded = true;
        }
        if folded {
            let lead = self.counts.iter().position(|c| *c > 0).unwrap_or(0);
            self.counts.drain(..lead);
            self.offset += lead as i32;
        }
        folded
    }
}

/// Where a value falls in a [`Sketch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Magnitude below 1e-12.
    Zero,
    /// A positive value's bucket index.
    Pos(i32),
    /// A negative value's magnitude's bucket index.
    Neg(i32),
}

/// A DDSketch over finite values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// Relative accuracy α.
    pub alpha: f64,
    /// Count of values with magnitude below 1e-12.
    pub zero: u64,
    /// Buckets of positive values, by index.
    #[serde(with = "columns")]
    pub pos: Store,
    /// Buckets of negative values, by index of the magnitude.
    #[serde(with = "columns")]
    pub neg: Store,
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
            pos: Store::default(),
            neg: Store::default(),
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
        self.zero + self.pos.total() + self.neg.total()
    }

    /// Adds one finite value. O(1) amortised.
    pub fn push(&mut self, v: f64) {
        let b = self.bucket(v);
        self.push_bucket(b);
    }

    /// The bucket a finite value falls in (one logarithm).
    pub fn bucket(&self, v: f64) -> Bucket {
        if v.abs() < MIN_MAGNITUDE {
            Bucket::Zero
        } else if v > 0.0 {
            Bucket::Pos(self.index(v))
        } else {
            Bucket::Neg(self.index(-v))
        }
    }

    /// Adds one value known by its bucket.
    pub fn push_bucket(&mut self, b: Bucket) {
        match b {
            Bucket::Zero => self.zero += 1,
            Bucket::Pos(i) => {
                self.pos.add(i, 1);
                self.cap();
            }
            Bucket::Neg(i) => {
                self.neg.add(i, 1);
                self.cap();
            }
        }
    }

    /// Adds `other`'s counts. Sketches of different α cannot merge; n4a
    /// always writes [`DEFAULT_ALPHA`], so a mismatch means a foreign file and
    /// the caller falls back to leaving quartiles out. O(buckets).
    pub fn merge(&mut self, other: &Sketch) -> bool {
        if (self.alpha - other.alpha).abs() > 1e-15 {
            return false;
        }
        self.zero += other.zero;
        self.pos.merge(&other.pos);
        self.neg.merge(&other.neg);
        self.collapsed |= other.collapsed;
        self.cap();
        true
    }

    /// Folds buckets past [`MAX_BUCKETS`] (after adding to the stores
    /// directly).
    pub fn fold_to_cap(&mut self) {
        self.cap();
    }

    fn cap(&mut self) {
        for store in [&mut self.pos, &mut self.neg] {
            if store.len() > MAX_BUCKETS {
                self.collapsed |= store.cap(MAX_BUCKETS);
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
                return Some(-self.value(i));
            }
        }
        seen += self.zero;
        if rank < seen {
            return Some(0.0);
        }
        for (i, c) in self.pos.iter() {
            seen += c;
            if rank < seen {
                return Some(self.value(i));
            }
        }
        None
    }
}

/// Buckets as two parallel integer arrays, `{"index": [..], "count": [..]}`:
/// several times faster to decode than a JSON object keyed by strings.
mod columns {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Store;

    #[derive(Serialize, Deserialize)]
    struct Columns {
        index: Vec<i32>,
        count: Vec<u64>,
    }

    pub fn serialize<S: Serializer>(m: &Store, s: S) -> Result<S::Ok, S::Error> {
        Columns {
            index: m.iter().map(|(i, _)| i).collect(),
            count: m.iter().map(|(_, c)| c).collect(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Store, D::Error> {
        let c = Columns::deserialize(d)?;
        if c.index.len() != c.count.len() {
            return Err(serde::de::Error::custom(
                "sketch index and count lengths differ",
            ));
        }
        if c.index.windows(2).any(|w| w[0] >= w[1]) {
            return Err(serde::de::Error::custom("sketch indexes not increasing"));
        }
        if let (Some(lo), Some(hi)) = (c.index.first(), c.index.last()) {
            if i64::from(*hi) - i64::from(*lo) > super::MAX_SPAN {
                return Err(serde::de::Error::custom("sketch indexes span too wide"));
            }
        }
        Ok(Store::from_pairs(c.index.into_iter().zip(c.count)))
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
        fn byte_counts_add_as_decoded_counts_do(
            runs in prop::collection::vec((-40i32..40, prop::collection::vec(0u8..128, 0..30)), 1..6),
        ) {
            let (mut bytes, mut decoded) = (Store::default(), Store::default());
            for (first, counts) in &runs {
                bytes.add_dense_bytes(*first, counts);
                decoded.add_dense(*first, counts.len(), counts.iter().map(|&c| u64::from(c)));
            }
            prop_assert_eq!(bytes.len(), decoded.len());
            prop_assert_eq!(bytes.iter().collect::<Vec<_>>(), decoded.iter().collect::<Vec<_>>());
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
            s.push(1e-9 * 1.05f64.powi(i % 3000));
        }
        assert!(s.pos.len() <= MAX_BUCKETS);
        assert!(s.collapsed, "3,000 distinct buckets folded to the cap");
        assert_eq!(s.count(), 100_000);
    }
}
