//! Pruning predicates: whether a file can hold a matching row, from its
//! summary state (facets, score ranges) or, for files without state, from
//! its column statistics. False only when no row can match.

use super::filter::Filters;
use crate::footer::info::{ColumnFacts, MetricFact};
use crate::summary::SummaryState;

/// False when the state's head proves no row of the file can match (the
/// config filter is checked against the whole state by the caller).
pub(super) fn may_match(st: &SummaryState, f: &Filters) -> bool {
    let keys = |field: &str| -> Option<Vec<&String>> {
        Some(match field {
            "model_name" => st.models.keys().collect(),
            "partition" => st.partitions.keys().collect(),
            "task_type" => st.task_types.keys().collect(),
            "metric" => st.metrics.keys().collect(),
            "fold_id" => st.folds.iter().collect(),
            // Configs live in the state's packed part: see `plan`.
            _ => return None,
        })
    };
    for (field, wanted) in &f.values {
        if let Some(present) = keys(field) {
            if !wanted.iter().any(|w| present.contains(&w)) {
                return false;
            }
        }
    }
    f.ranges.iter().all(|r| {
        let s = match r.column.as_str() {
            "val_score" => &st.val_score,
            "test_score" => &st.test_score,
            _ => &st.train_score,
        };
        if s.inf_count > 0 {
            return true;
        }
        match (s.welford.min, s.welford.max) {
            (Some(lo), Some(hi)) => r.overlaps(lo, hi),
            _ => false,
        }
    })
}

/// False when a file's column statistics prove no row can match (for
/// files without state, nirs4all's among them): a metric filter against
/// the one metric the file holds, a score range against the column's
/// minimum and maximum.
pub(super) fn facts_may_match(facts: &ColumnFacts, f: &Filters) -> bool {
    if let Some(wanted) = f.get("metric") {
        match &facts.metric {
            MetricFact::One { name, .. } if !wanted.contains(name) => return false,
            MetricFact::None => return false,
            _ => {}
        }
    }
    f.ranges.iter().all(|r| {
        let i = match r.column.as_str() {
            "val_score" => 0,
            "test_score" => 1,
            _ => 2,
        };
        match facts.scores[i] {
            None => true,
            Some(sf) => match (sf.min, sf.max) {
                (Some(lo), Some(hi)) => r.overlaps(lo, hi),
                // No number at all (nulls and NaN only): no range matches.
                _ => false,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footer::info::ScoreFact;
    use crate::schema::Prediction;
    use crate::summary::{RowView, SummaryBuilder, SummaryOptions};

    /// The state of rows of model PLS, partition val, metric mse, with val
    /// scores 0.2 and 0.5.
    fn state() -> SummaryState {
        let mut b = SummaryBuilder::new(SummaryOptions::default());
        for (i, v) in [0.2, 0.5].into_iter().enumerate() {
            let p = Prediction {
                model_name: Some("PLS".into()),
                partition: Some("val".into()),
                metric: Some("mse".into()),
                fold_id: Some("0".into()),
                val_score: Some(v),
                ..Default::default()
            };
            b.observe(i, &RowView::of(&p)).unwrap();
        }
        b.state()
    }

    fn filters(field: &str, v: &str) -> Filters {
        Filters::default().with(field, [v]).unwrap()
    }

    #[test]
    fn a_state_prunes_absent_facets_and_disjoint_ranges_only() {
        let st = state();
        assert!(may_match(&st, &filters("model_name", "PLS")));
        assert!(!may_match(&st, &filters("model_name", "RF")));
        assert!(!may_match(&st, &filters("partition", "test")));
        assert!(!may_match(&st, &filters("fold_id", "3")));
        // A config is not in the head: never pruned here.
        assert!(may_match(&st, &filters("config_name", "anything")));
        let range = |e: &str| Filters::default().with_where(e).unwrap();
        assert!(may_match(&st, &range("val_score<0.3")));
        assert!(!may_match(&st, &range("val_score<0.1")));
        assert!(!may_match(&st, &range("val_score>0.6")));
        // No test scores at all: no test range can match.
        assert!(!may_match(&st, &range("test_score>0")));
    }

    #[test]
    fn column_statistics_prune_by_the_one_metric_and_score_bounds() {
        let facts = ColumnFacts {
            metric: MetricFact::One {
                name: "mse".into(),
                rows: 2,
            },
            scores: [
                Some(ScoreFact {
                    non_null: 2,
                    min: Some(0.2),
                    max: Some(0.5),
                }),
                None,
                None,
            ],
        };
        assert!(facts_may_match(&facts, &filters("metric", "mse")));
        assert!(!facts_may_match(&facts, &filters("metric", "r2")));
        let range = |e: &str| Filters::default().with_where(e).unwrap();
        assert!(facts_may_match(&facts, &range("val_score>=0.5")));
        assert!(!facts_may_match(&facts, &range("val_score>0.5")));
        // No statistics for test scores: cannot prune.
        assert!(facts_may_match(&facts, &range("test_score>100")));
        let unknown = ColumnFacts::default();
        assert!(facts_may_match(&unknown, &filters("metric", "r2")));
    }
}
