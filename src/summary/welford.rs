//! Welford's running mean and variance, mergeable with Chan's formula.
//!
//! One pass, O(1) memory, numerically stable; two states merge exactly as if
//! their values had been pushed into one (up to float rounding), which is what
//! lets appends and workspace summaries skip old rows.

use serde::{Deserialize, Serialize};

/// Count, mean, sum of squared deviations (M2), min and max of finite values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Welford {
    /// Number of values pushed.
    pub count: u64,
    /// Running mean (0 when empty).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// Smallest value, `None` when empty.
    pub min: Option<f64>,
    /// Largest value, `None` when empty.
    pub max: Option<f64>,
}

impl Welford {
    /// Adds one finite value. O(1).
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
    }

    /// Folds `other` into `self` (Chan et al.'s parallel update). O(1).
    pub fn merge(&mut self, other: &Welford) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let n_a = self.count as f64;
        let n_b = other.count as f64;
        let n = n_a + n_b;
        let delta = other.mean - self.mean;
        self.mean += delta * n_b / n;
        self.m2 += other.m2 + delta * delta * n_a * n_b / n;
        self.count += other.count;
        self.min = min_opt(self.min, other.min);
        self.max = max_opt(self.max, other.max);
    }

    /// Sample standard deviation (ddof 1); 0.0 for one value, as nirs4all writes it.
    pub fn std(&self) -> Option<f64> {
        match self.count {
            0 => None,
            1 => Some(0.0),
            n => Some((self.m2.max(0.0) / (n - 1) as f64).sqrt()),
        }
    }

    /// The mean, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn two_pass(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var.sqrt())
    }

    proptest! {
        #[test]
        fn merged_state_equals_one_pass(
            xs in prop::collection::vec(-1e3f64..1e3, 2..200),
            cut in 0usize..200,
        ) {
            let cut = cut.min(xs.len());
            let mut one = Welford::default();
            xs.iter().for_each(|x| one.push(*x));
            let (mut a, mut b) = (Welford::default(), Welford::default());
            xs[..cut].iter().for_each(|x| a.push(*x));
            xs[cut..].iter().for_each(|x| b.push(*x));
            a.merge(&b);
            let (mean, std) = two_pass(&xs);
            prop_assert_eq!(a.count, one.count);
            prop_assert!((a.mean - one.mean).abs() <= 1e-9 * (1.0 + mean.abs()));
            prop_assert!((a.std().unwrap() - std).abs() <= 1e-9 * (1.0 + std));
            prop_assert!((one.std().unwrap() - std).abs() <= 1e-9 * (1.0 + std));
            prop_assert_eq!(a.min, one.min);
            prop_assert_eq!(a.max, one.max);
        }
    }

    #[test]
    fn single_value_has_zero_std() {
        let mut w = Welford::default();
        w.push(3.5);
        assert_eq!(w.std(), Some(0.0));
        assert_eq!(Welford::default().std(), None);
    }
}
