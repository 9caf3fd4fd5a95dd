//! Which way is "better" for each metric.
//!
//! nirs4all ranks every metric by its maximum, so with `mse` (its regression
//! default) the "top" predictions it reports are the worst ones. n4a ranks by
//! the metric's direction, from a built-in table of nirs4all's metrics plus
//! whatever the caller supplies, and refuses a metric it cannot place.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The direction in which a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher is better (r2, accuracy, ...).
    Maximize,
    /// Lower is better (mse, rmse, ...).
    Minimize,
    /// Closest to zero is better (bias).
    TowardZero,
}

impl Direction {
    /// A key that sorts ascending from best to worst: `-v`, `v` or `|v|`.
    pub fn rank_key(self, v: f64) -> f64 {
        match self {
            Direction::Maximize => -v,
            Direction::Minimize => v,
            Direction::TowardZero => v.abs(),
        }
    }

    /// Compares two scores so that the better one sorts first.
    pub fn compare(self, a: f64, b: f64) -> Ordering {
        self.rank_key(a).total_cmp(&self.rank_key(b))
    }

    /// True when `a` is strictly better than `b`.
    pub fn is_better(self, a: f64, b: f64) -> bool {
        self.compare(a, b) == Ordering::Less
    }

    /// Parses `max`/`maximize`/`higher`, `min`/`minimize`/`lower`, `zero`.
    pub fn parse(s: &str) -> Option<Direction> {
        match s.to_ascii_lowercase().as_str() {
            "max" | "maximize" | "higher" | "higher_is_better" => Some(Direction::Maximize),
            "min" | "minimize" | "lower" | "lower_is_better" => Some(Direction::Minimize),
            "zero" | "toward_zero" | "closest_to_zero" => Some(Direction::TowardZero),
            _ => None,
        }
    }

    /// The name written into summaries (`maximize`, `minimize`, `toward_zero`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Maximize => "maximize",
            Direction::Minimize => "minimize",
            Direction::TowardZero => "toward_zero",
        }
    }

    /// What the direction means, for people: `higher is better`, `lower is
    /// better`, `nearer zero is better`.
    pub fn in_words(self) -> &'static str {
        match self {
            Direction::Maximize => "higher is better",
            Direction::Minimize => "lower is better",
            Direction::TowardZero => "nearer zero is better",
        }
    }
}

/// nirs4all's metrics and their directions. `bias` is best at zero.
const BUILTIN: &[(&str, Direction)] = &[
    ("r2", Direction::Maximize),
    ("rmse", Direction::Minimize),
    ("mse", Direction::Minimize),
    ("sep", Direction::Minimize),
    ("mae", Direction::Minimize),
    ("rpd", Direction::Maximize),
    ("bias", Direction::TowardZero),
    ("consistency", Direction::Maximize),
    ("nrmse", Direction::Minimize),
    ("nmse", Direction::Minimize),
    ("nmae", Direction::Minimize),
    ("pearson_r", Direction::Maximize),
    ("spearman_r", Direction::Maximize),
    ("accuracy", Direction::Maximize),
    ("balanced_accuracy", Direction::Maximize),
    ("precision", Direction::Maximize),
    ("balanced_precision", Direction::Maximize),
    ("recall", Direction::Maximize),
    ("balanced_recall", Direction::Maximize),
    ("f1", Direction::Maximize),
    ("specificity", Direction::Maximize),
];

/// The built-in direction of a nirs4all metric, if it is one.
pub fn builtin_direction(metric: &str) -> Option<Direction> {
    BUILTIN
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(metric))
        .map(|(_, d)| *d)
}

/// The built-in metric table plus caller-supplied directions.
///
/// Cheap to clone; a lookup is a scan of 21 entries then a map probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directions {
    extra: BTreeMap<String, Direction>,
}

impl Directions {
    /// The built-in table only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or overrides the direction of `metric`.
    #[must_use]
    pub fn with(mut self, metric: impl Into<String>, direction: Direction) -> Self {
        self.extra.insert(metric.into(), direction);
        self
    }

    /// The direction the caller supplied for `metric`, if any (the table
    /// not consulted).
    pub fn supplied(&self, metric: &str) -> Option<Direction> {
        self.extra.get(metric).copied()
    }

    /// The direction of `metric`: a caller-supplied one first, then the table.
    ///
    /// # Errors
    /// [`Error::UnknownMetricDirection`] when neither knows the metric.
    pub fn get(&self, metric: &str) -> Result<Direction> {
        self.extra
            .get(metric)
            .copied()
            .or_else(|| builtin_direction(metric))
            .ok_or_else(|| Error::UnknownMetricDirection {
                metric: metric.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_covers_nirs4all_metrics() {
        assert_eq!(BUILTIN.len(), 21);
        assert_eq!(builtin_direction("mse"), Some(Direction::Minimize));
        assert_eq!(builtin_direction("R2"), Some(Direction::Maximize));
        assert_eq!(builtin_direction("bias"), Some(Direction::TowardZero));
        assert_eq!(builtin_direction("log_loss"), None);
    }

    #[test]
    fn unknown_metric_is_an_error_not_a_guess() {
        let err = Directions::new().get("log_loss").unwrap_err();
        assert!(err
            .to_string()
            .contains("\"log_loss\" has no known direction"));
        let d = Directions::new().with("log_loss", Direction::Minimize);
        assert_eq!(d.get("log_loss").unwrap(), Direction::Minimize);
    }

    #[test]
    fn rank_keys_put_best_first() {
        assert!(Direction::Minimize.is_better(0.1, 0.2));
        assert!(Direction::Maximize.is_better(0.9, 0.2));
        assert!(Direction::TowardZero.is_better(-0.05, 0.2));
        assert!(!Direction::TowardZero.is_better(0.2, 0.2));
    }
}
