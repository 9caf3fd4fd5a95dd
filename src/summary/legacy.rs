//! Summaries without n4a's mergeable state: nirs4all's own 1.0 footers
//! (every `.meta.parquet` workspace in the wild) and any summary whose
//! state is missing or does not match its file.
//!
//! What such a summary can give a workspace summary, and how exactly:
//!
//! * totals, per-model and per-partition/task-type counts, folds: exact;
//! * `stats` min and max: exact (nirs4all does not round them); mean and
//!   std: exact up to float rounding when combined with each column's
//!   non-null count (the caller takes it from the parquet column
//!   statistics), the pooled variance formula being Chan's merge;
//! * per-model `avg_val_score`: rounded by nirs4all to 4 decimals, so a
//!   count-weighted merge is approximate (error below 5e-5);
//! * `runs[].best_*` and `top_predictions`: nirs4all ranks by the maximum
//!   whatever the metric, so they are right (rounded) only for metrics
//!   where higher is better. For the others they are the worst values, and
//!   [`relay_text`] removes them from what n4a relays instead of passing
//!   them on as bests.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::ObjectText;
use super::welford::Welford;
use super::{Facets, ScoreSummary, Stats};
use crate::metric::Direction;

/// The typed parts of a summary without state that a merge uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LegacySummary {
    /// `total_predictions`.
    pub total_predictions: u64,
    /// `stats` (val, test, train).
    pub stats: Stats,
    /// `facets`.
    pub facets: Facets,
}

impl LegacySummary {
    /// Decodes the parts from a summary's raw top-level members.
    ///
    /// # Errors
    /// A JSON shape error in `total_predictions`, `stats` or `facets`.
    pub fn from_fields(fields: &[(String, Box<RawValue>)]) -> serde_json::Result<Self> {
        let mut out = LegacySummary::default();
        for (k, v) in fields {
            match k.as_str() {
                "total_predictions" => out.total_predictions = serde_json::from_str(v.get())?,
                "stats" => out.stats = serde_json::from_str(v.get())?,
                "facets" => out.facets = serde_json::from_str(v.get())?,
                _ => {}
            }
        }
        Ok(out)
    }
}

/// A Welford state rebuilt from a stored `(count, mean, std, min, max)`:
/// `M2 = std² (n − 1)`. `None` when the mean is missing (nirs4all writes
/// NaN, read as null, when a column holds NaN) or `count` is zero.
pub fn welford_of(s: &ScoreSummary, count: u64) -> Option<Welford> {
    let mean = s.mean?;
    if count == 0 || !mean.is_finite() {
        return None;
    }
    let std = s.std.filter(|v| v.is_finite()).unwrap_or(0.0);
    Some(Welford {
        count,
        mean,
        m2: std * std * (count - 1) as f64,
        min: s.min,
        max: s.max,
    })
}

/// How n4a reads a summary without state: the file's one metric (from the
/// parquet column statistics) and its direction, when known.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyRanking {
    /// The file's only metric, if the footer proves there is one.
    pub metric: Option<String>,
    /// Its direction, if the metric is known and has one.
    pub direction: Option<Direction>,
}

impl LegacyRanking {
    /// True when nirs4all's maximum-ranked lists are the bests: one metric,
    /// higher is better.
    pub fn stored_bests_hold(&self) -> bool {
        self.direction == Some(Direction::Maximize)
    }
}

#[derive(Deserialize, serde::Serialize)]
struct Run<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(default)]
    n_predictions: u64,
}

/// The text n4a relays for a summary without state (a dataset entry of
/// the workspace summary): every member as stored, `runs` moved last (so
/// a light answer can cut it), plus n4a's `ranking` and, where the stored
/// bests are not bests, `top_predictions` emptied, `runs[].best_*` set to
/// null and `n4a_note` saying why. Returns the text and the byte offset of
/// `,"runs":` in it.
///
/// # Errors
/// A JSON shape error in `runs`.
pub fn relay_text(
    fields: &[(String, Box<RawValue>)],
    ranking: &LegacyRanking,
) -> serde_json::Result<(String, Option<usize>)> {
    let len: usize = fields
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let mut out = ObjectText::with_capacity(len + 256);
    let holds = ranking.stored_bests_hold();
    for (k, v) in fields {
        match k.as_str() {
            "runs" | "ranking" | "n4a_note" | "state" => {}
            "top_predictions" if !holds => out.member(k, "[]"),
            _ => out.member(k, v.get()),
        }
    }
    let r = serde_json::json!({
        "metric": ranking.metric,
        "direction": ranking.direction.map(Direction::as_str),
    });
    out.member("ranking", &r.to_string());
    if !holds {
        let why = match (&ranking.metric, ranking.direction) {
            (Some(m), Some(d)) => format!(
                "written without n4a state: its top_predictions and runs best scores are maxima, \
                 which for {m} ({}) are the worst, so n4a leaves them out; `n4a refresh` computes them",
                d.as_str()
            ),
            (Some(m), None) => format!(
                "written without n4a state, for metric {m} of unknown direction: its stored bests are \
                 maxima, left out; `n4a refresh --direction {m}=max|min|zero` computes them"
            ),
            _ => "written without n4a state and its metric is not known from the footer: its stored \
                  bests are maxima over every metric, left out; `n4a refresh` computes them"
                .to_string(),
        };
        out.member("n4a_note", &serde_json::to_string(&why)?);
    }
    let mut runs_at = None;
    if let Some((_, v)) = fields.iter().find(|(k, _)| k == "runs") {
        // Some other member always comes first (`ranking`): `,"runs":`.
        runs_at = Some(out.len());
        if holds {
            out.member("runs", v.get());
        } else {
            let runs: Vec<Run<'_>> = serde_json::from_str(v.get())?;
            let mut text = String::with_capacity(v.get().len());
            text.push('[');
            for (i, r) in runs.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                let raw = |v: Option<&RawValue>| v.map_or("null", RawValue::get).to_string();
                text.push_str(&format!(
                    "{{\"id\":{},\"name\":{},\"n_predictions\":{},\"best_val_score\":null,\"best_test_score\":null}}",
                    raw(r.id),
                    raw(r.name),
                    r.n_predictions
                ));
            }
            text.push(']');
            out.member("runs", &text);
        }
    }
    Ok((out.finish(), runs_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<(String, Box<RawValue>)> {
        let m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
        m.into_iter()
            .map(|(k, v)| (k, RawValue::from_string(v.to_string()).unwrap()))
            .collect()
    }

    const ONE: &str = r#"{"n4a_version":"1.0","total_predictions":3,
        "runs":[{"id":"a","name":"a","n_predictions":3,"best_val_score":9.5,"best_test_score":8.0}],
        "top_predictions":[{"id":"x","val_score":9.5}]}"#;

    #[test]
    fn minimize_drops_the_maxima() {
        let r = LegacyRanking {
            metric: Some("mse".into()),
            direction: Some(Direction::Minimize),
        };
        let (text, at) = relay_text(&fields(ONE), &r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["top_predictions"], serde_json::json!([]));
        assert!(v["runs"][0]["best_val_score"].is_null());
        assert_eq!(v["runs"][0]["n_predictions"], 3);
        assert_eq!(v["ranking"]["direction"], "minimize");
        assert!(v["n4a_note"].as_str().unwrap().contains("worst"));
        assert!(text[at.unwrap()..].starts_with(",\"runs\":"));
    }

    #[test]
    fn maximize_keeps_them() {
        let r = LegacyRanking {
            metric: Some("r2".into()),
            direction: Some(Direction::Maximize),
        };
        let (text, at) = relay_text(&fields(ONE), &r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["runs"][0]["best_val_score"], 9.5);
        assert_eq!(v["top_predictions"][0]["id"], "x");
        assert!(v.get("n4a_note").is_none());
        let brief = format!("{}}}", &text[..at.unwrap()]);
        let b: serde_json::Value = serde_json::from_str(&brief).unwrap();
        assert!(b.get("runs").is_none() && b["total_predictions"] == 3);
    }

    #[test]
    fn welford_from_stored_stats() {
        let xs = [1.0, 2.0, 4.0, 7.0];
        let mut w = Welford::default();
        xs.iter().for_each(|x| w.push(*x));
        let s = ScoreSummary {
            min: w.min,
            max: w.max,
            mean: w.mean(),
            std: w.std(),
            ..ScoreSummary::default()
        };
        let back = welford_of(&s, 4).unwrap();
        assert!((back.m2 - w.m2).abs() < 1e-12);
        assert!(welford_of(&ScoreSummary::default(), 4).is_none());
    }
}
