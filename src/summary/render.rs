//! The rendered summary: nirs4all's 1.0 keys (stats, facets, runs, top
//! predictions) plus n4a's additions (`ranking`, `metrics`, `top_by_metric`),
//! as [`Summary`] and its parts, and how a state becomes one.

use super::topk::TopEntry;
use super::{quantile_index, round4, ScoreState, SummaryState, N4A_VERSION};
use crate::metric::Direction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `stats.<column>` of the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ScoreSummary {
    /// Smallest finite value.
    pub min: Option<f64>,
    /// Largest finite value.
    pub max: Option<f64>,
    /// Mean of finite values.
    pub mean: Option<f64>,
    /// Sample standard deviation (ddof 1), 0.0 for one value.
    pub std: Option<f64>,
    /// q25, q50, q75.
    pub quartiles: Vec<Option<f64>>,
    /// (1.1) Finite values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// (1.1) NaN values, left out of the statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nan_count: Option<u64>,
    /// (1.1) Infinite values, left out of the statistics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inf_count: Option<u64>,
    /// (1.1) "exact" or "sketch".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quartiles_method: Option<String>,
    /// (1.1) Relative error bound of sketched quartiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quartiles_rel_error: Option<f64>,
}

/// `stats` of the summary: one entry per score column that has a value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(default)]
#[allow(missing_docs)]
pub struct Stats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_score: Option<ScoreSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_score: Option<ScoreSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_score: Option<ScoreSummary>,
}

/// A name with a row count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[allow(missing_docs)]
pub struct NameCount {
    pub name: Option<String>,
    pub count: u64,
}

/// A model facet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[allow(missing_docs)]
pub struct ModelFacet {
    pub name: Option<String>,
    pub count: u64,
    pub avg_val_score: Option<f64>,
}

/// `facets` of the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(default)]
#[allow(missing_docs)]
pub struct Facets {
    pub models: Vec<ModelFacet>,
    pub partitions: Vec<NameCount>,
    pub folds: Vec<Option<String>>,
    pub task_types: Vec<NameCount>,
    pub n_configs: u64,
    pub n_pipelines: u64,
}

/// One entry of `runs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct RunSummary {
    pub id: Option<String>,
    pub name: Option<String>,
    pub n_predictions: u64,
    pub best_val_score: Option<f64>,
    pub best_test_score: Option<f64>,
    /// (1.3) The metric of the best scores, written only when the file
    /// holds several metrics (else the file's one metric): a run's bests
    /// are by its own metric, never compared with another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

/// (1.1) Which metric and direction ranked `top_predictions` and `runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Ranking {
    /// The file's primary metric (most rows).
    pub metric: String,
    /// Its direction.
    pub direction: Direction,
}

/// (1.1) A metric present in the file, with (1.3) the statistics and model
/// averages of its rows alone: where a summary's 1.0 `stats` and
/// `facets.models` pool every metric (nirs4all's meaning), these never do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[allow(missing_docs)]
pub struct MetricSummary {
    pub name: String,
    pub direction: Direction,
    pub count: u64,
    /// (1.3) Score statistics of this metric's rows (quartiles exact when
    /// the file has one metric, else from the sketch within its bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
    /// (1.3) Models scored with this metric: rows and average val score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelFacet>,
}

impl MetricSummary {
    /// The summary of one metric's state: with `pooled`, the file's own
    /// statistics (exact quartiles) when it has this one metric only.
    pub fn of(name: &str, m: &super::MetricState, by_metric: bool, pooled: Option<&Stats>) -> Self {
        MetricSummary {
            name: name.to_string(),
            direction: m.direction,
            count: m.count,
            stats: by_metric.then(|| {
                pooled.cloned().unwrap_or_else(|| {
                    let s = |i: usize| score_summary(&m.scores[i], None);
                    Stats {
                        val_score: s(0),
                        test_score: s(1),
                        train_score: s(2),
                    }
                })
            }),
            models: if by_metric {
                model_facets(&m.models)
            } else {
                Vec::new()
            },
        }
    }
}

/// (1.1) The top predictions of one metric, unrounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[allow(missing_docs)]
pub struct MetricTop {
    pub direction: Direction,
    pub predictions: Vec<TopEntry>,
}

/// The decoded `n4a_summary`: nirs4all's 1.0 keys plus n4a's 1.1 additions.
/// Decodes nirs4all's own 1.0 summaries too (the additions are then empty).
///
/// ```
/// use n4a::summary::{RowView, SummaryBuilder, SummaryOptions};
/// use n4a::Prediction;
///
/// # fn main() -> n4a::Result<()> {
/// let mut b = SummaryBuilder::new(SummaryOptions::default());
/// for (i, score) in [0.30, 0.10, 0.20].into_iter().enumerate() {
///     let p = Prediction {
///         id: Some(format!("p{i}")),
///         partition: Some("val".into()),
///         metric: Some("rmse".into()),
///         val_score: Some(score),
///         ..Default::default()
///     };
///     b.observe(i, &RowView::of(&p))?;
/// }
/// let s = b.finish(None);
/// assert_eq!(s.total_predictions, 3);
/// // rmse: lower is better, so the best is the minimum (nirs4all's 1.0
/// // would have called 0.30 the top).
/// assert_eq!(s.top_predictions[0].val_score, Some(0.1));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// "1.0" (nirs4all) or "1.1" (n4a).
    pub n4a_version: String,
    /// ISO 8601 UTC.
    pub generated_at: Option<String>,
    /// The one dataset of the file, else null.
    pub dataset_name: Option<String>,
    /// Row count.
    pub total_predictions: u64,
    /// Score statistics.
    pub stats: Stats,
    /// Facets.
    pub facets: Facets,
    /// Best predictions of the primary metric, scores rounded to 4 places.
    pub top_predictions: Vec<TopEntry>,
    /// (1.1) Ranking used for `top_predictions` and `runs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking: Option<Ranking>,
    /// (1.1) Metrics with their directions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricSummary>,
    /// (1.1) Top predictions per metric, unrounded.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub top_by_metric: BTreeMap<String, MetricTop>,
    /// One per config, best first. Serialised last, so that a light
    /// answer can cut it from the stored text.
    pub runs: Vec<RunSummary>,
    /// The mergeable state: read from inside the JSON in 1.1, from the
    /// `n4a_state` footer key since 1.2; never serialised into the JSON.
    #[serde(skip_serializing)]
    pub state: Option<SummaryState>,
}

impl Summary {
    /// Renders the 1.0 keys and 1.1 additions from a state. `exact` holds
    /// the finite values of each score column, sorted or at least with
    /// their quartile positions placed (`place_quartiles`), when
    /// quartiles can be exact; otherwise they come from the sketches.
    pub fn render(
        state: SummaryState,
        exact: Option<&[Vec<f64>; 3]>,
        generated_at: Option<String>,
    ) -> Summary {
        let primary = state.primary_metric().map(|(m, d)| (m.to_string(), d));
        let stats = {
            let s = |i: usize| score_summary(state.scores()[i], exact.map(|e| e[i].as_slice()));
            Stats {
                val_score: s(0),
                test_score: s(1),
                train_score: s(2),
            }
        };
        let top_predictions = primary
            .as_ref()
            .map(|(m, _)| state.top_of_metric(m))
            .unwrap_or_default()
            .into_iter()
            .map(|mut e| {
                e.val_score = e.val_score.map(round4);
                e.test_score = e.test_score.map(round4);
                e
            })
            .collect();
        let top_by_metric = state
            .metrics
            .iter()
            .map(|(m, ms)| {
                let t = MetricTop {
                    direction: ms.direction,
                    predictions: state.top_of_metric(m),
                };
                (m.clone(), t)
            })
            .collect();
        let metrics = state
            .metrics
            .iter()
            .map(|(n, m)| {
                // With one metric, `stats` and `facets.models` are its own:
                // not written twice.
                MetricSummary::of(n, m, state.by_metric && state.metrics.len() > 1, None)
            })
            .collect();
        Summary {
            n4a_version: N4A_VERSION.to_string(),
            generated_at,
            dataset_name: (state.dataset_names.len() == 1).then(|| state.dataset_names[0].clone()),
            total_predictions: state.rows,
            stats,
            facets: facets(&state),
            runs: runs(&state, primary.as_ref()),
            top_predictions,
            ranking: primary.map(|(metric, direction)| Ranking { metric, direction }),
            metrics,
            top_by_metric,
            state: Some(state),
        }
    }

    /// Serialises to the footer's JSON text (valid JSON: non-finite numbers
    /// never reach it, they are counted instead), `n4a_version` first and
    /// `runs` last, without the state.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("summary serialises")
    }

    /// What a footer holds of this summary (format 1.3, see
    /// [`FooterParts`]). Cost: O(summary) for the JSON, plus zstd over the
    /// runs.
    pub fn footer_parts(&self) -> FooterParts<'_> {
        let text = self.to_json();
        let check = super::codec::TextCheck::of(&text);
        // The index of the text's runs, stored after the runs (16 bytes a
        // run): a workspace listing runs once reads it, not the text.
        let index = check
            .runs_at
            .and_then(|at| super::runs_index::RunsIndex::of(text.as_bytes(), at as usize))
            .map(|ix| ix.to_bytes(check.hash))
            .unwrap_or_default();
        let groups = self
            .state
            .as_ref()
            .and_then(|st| st.groups.as_ref())
            .map(super::codec::encode_groups)
            .unwrap_or_default();
        FooterParts {
            body: self.state.as_ref().map(|st| {
                let mut body = groups.clone();
                body.extend_from_slice(&super::codec::encode_runs(st, &index));
                body
            }),
            groups_len: groups.len(),
            state: self.state.as_ref(),
            text,
            check,
        }
    }
}

/// A summary as a footer holds it (format 1.5): the JSON text, the
/// state's group aggregates and runs (written into the file's body just
/// before the footer, in that order) and the state's head, which names
/// where they were written and so is made last ([`FooterParts::entries`]).
#[derive(Debug)]
pub struct FooterParts<'a> {
    /// The `n4a_summary` text.
    pub text: String,
    /// The group aggregates (when the state has them) then the runs, to
    /// write just before the footer; `None` without a state.
    pub body: Option<Vec<u8>>,
    /// Bytes of `body` that are group aggregates (0: none).
    groups_len: usize,
    state: Option<&'a super::SummaryState>,
    check: super::codec::TextCheck,
}

impl FooterParts<'_> {
    /// n4a's key/values, in their order: the JSON text under
    /// `n4a_summary`, then `n4a_state` (the state's head, with the text's
    /// check and where the body bytes were written: at `body_at`) last,
    /// where a reader finds it in the file's final bytes. Without a state,
    /// only the text.
    pub fn entries(&self, body_at: u64) -> Vec<(String, String)> {
        let mut out = vec![(crate::schema::SUMMARY_KEY.to_string(), self.text.clone())];
        if let (Some(st), Some(body)) = (self.state, &self.body) {
            let (groups, runs) = body.split_at(self.groups_len);
            let groups = (!groups.is_empty()).then(|| super::codec::RunsRef::of(groups, body_at));
            let place = super::codec::RunsRef::of(runs, body_at + self.groups_len as u64);
            out.push((
                crate::schema::STATE_KEY.to_string(),
                super::codec::encode_head(st, &self.check, place, groups),
            ));
        }
        out
    }
}

fn score_summary(s: &ScoreState, exact: Option<&[f64]>) -> Option<ScoreSummary> {
    let w = &s.welford;
    if w.count == 0 {
        return None;
    }
    let (quartiles, method, err) = match exact {
        Some(v) if v.len() as u64 == w.count => {
            let q = |q: f64| Some(v[quantile_index(q, w.count) as usize]);
            (vec![q(0.25), q(0.5), q(0.75)], "exact", None)
        }
        _ if s.sketch.count() == w.count => {
            let clamp = |x: f64| x.clamp(w.min.unwrap_or(x), w.max.unwrap_or(x));
            let q = |q: f64| {
                s.sketch
                    .value_at_rank(quantile_index(q, w.count))
                    .map(clamp)
            };
            (
                vec![q(0.25), q(0.5), q(0.75)],
                "sketch",
                Some(s.sketch.alpha),
            )
        }
        _ => (Vec::new(), "unavailable", None),
    };
    Some(ScoreSummary {
        min: w.min,
        max: w.max,
        mean: w.mean(),
        std: w.std(),
        quartiles,
        count: Some(w.count),
        nan_count: Some(s.nan_count),
        inf_count: Some(s.inf_count),
        quartiles_method: Some(method.to_string()),
        quartiles_rel_error: err,
    })
}

fn by_count_desc(map: &BTreeMap<String, u64>) -> Vec<NameCount> {
    let mut v: Vec<NameCount> = map
        .iter()
        .map(|(k, c)| NameCount {
            name: Some(k.clone()),
            count: *c,
        })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

/// Model facets by count desc (ties by name), averages rounded to 4
/// places as nirs4all's.
pub(crate) fn model_facets(models: &BTreeMap<String, super::ModelState>) -> Vec<ModelFacet> {
    let mut out: Vec<ModelFacet> = models
        .iter()
        .map(|(name, m)| ModelFacet {
            name: Some(name.clone()),
            count: m.count,
            avg_val_score: (m.val_count > 0).then(|| round4(m.val_sum / m.val_count as f64)),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    out
}

fn facets(st: &SummaryState) -> Facets {
    Facets {
        models: model_facets(&st.models),
        partitions: st
            .partitions
            .iter()
            .map(|(k, c)| NameCount {
                name: Some(k.clone()),
                count: *c,
            })
            .collect(),
        folds: st.folds.iter().cloned().map(Some).collect(),
        task_types: by_count_desc(&st.task_types),
        n_configs: st.runs.len() as u64,
        n_pipelines: st.pipelines.len() as u64,
    }
}

/// The runs, each best by its own metric (the primary one where the run
/// has rows of it): the primary metric's runs first, best first, then each
/// other metric's in name order, so no two scores of different metrics are
/// ever ordered against each other. Entries name their metric when the
/// file holds several.
fn runs(st: &SummaryState, primary: Option<&(String, Direction)>) -> Vec<RunSummary> {
    let several = st.metrics.len() > 1;
    let mut out: Vec<(Option<Direction>, bool, RunSummary)> = st
        .runs
        .iter()
        .map(|(name, r)| {
            let chosen = primary
                .filter(|(m, _)| r.best.contains_key(m))
                .map(|(m, _)| m.as_str())
                .or_else(|| r.best.keys().next().map(String::as_str));
            let best = chosen.and_then(|m| r.best.get(m));
            let dir = chosen.and_then(|m| st.metrics.get(m)).map(|m| m.direction);
            let is_primary = primary.is_some_and(|(m, _)| Some(m.as_str()) == chosen);
            let run = RunSummary {
                id: Some(name.clone()),
                name: Some(name.clone()),
                n_predictions: r.n,
                best_val_score: best.and_then(|b| b.val).map(round4),
                best_test_score: best.and_then(|b| b.test).map(round4),
                metric: chosen.filter(|_| several).map(str::to_string),
            };
            (dir, is_primary, run)
        })
        .collect();
    out.sort_by(|(da, pa, a), (db, pb, b)| {
        let key = |d: &Option<Direction>, r: &RunSummary| {
            r.best_val_score
                .map(|v| d.unwrap_or(Direction::Maximize).rank_key(v))
                .unwrap_or(f64::INFINITY)
        };
        pb.cmp(pa)
            .then_with(|| a.metric.cmp(&b.metric))
            .then_with(|| key(da, a).total_cmp(&key(db, b)))
            .then_with(|| a.name.cmp(&b.name))
    });
    out.into_iter().map(|(_, _, r)| r).collect()
}
