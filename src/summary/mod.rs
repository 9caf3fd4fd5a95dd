//! The `n4a_summary` footer: an incremental, mergeable summary of a
//! prediction file.
//!
//! [`SummaryBuilder`] observes rows one at a time in O(1) amortised work and
//! bounded memory (Welford state, a quantile sketch, per-model sums, distinct
//! sets, bounded top-k heaps per metric and partition), and renders a
//! [`Summary`]: every version-1.0 key nirs4all writes, with the same meaning,
//! plus the mergeable [`SummaryState`] under `state` so appends and
//! workspace summaries never rescan rows.
//!
//! Where nirs4all is wrong n4a differs, and says so in the summary: "best"
//! and "top" follow the metric's direction (`ranking.direction`), not the
//! maximum.
//!
//! Semantics, shared with the oracle in the tests: NaN and ±inf scores are
//! counted (`nan_count`, `inf_count`) but kept out of min/max/mean/std,
//! quartiles, averages, bests and the top lists, as pandas' NaN-skipping does
//! for NaN; null facets (a null model name, partition, ...) are not counted,
//! as pandas' `value_counts` drops them.

pub(crate) mod codec;
pub mod groups;
pub(crate) mod json;
pub(crate) mod legacy;
pub mod runs_index;
pub mod sketch;
pub mod topk;
pub mod welford;

mod builder;
mod diff;
mod merger;
mod numbers;
mod render;
mod state;

pub use builder::{RowView, SummaryBuilder, SummaryOptions};
pub(crate) use diff::differences;
pub(crate) use merger::StateMerger;
pub use numbers::utc_now;
pub(crate) use numbers::{place_quartiles, quantile_index, round4};
pub use render::{
    Facets, FooterParts, MetricSummary, MetricTop, ModelFacet, NameCount, Ranking, RunSummary,
    ScoreSummary, Stats, Summary,
};
pub use state::{Best, MetricState, ModelState, RunState, ScoreState, SmallMap, SummaryState};

/// The version n4a writes: 1.0's keys unchanged, plus `ranking`,
/// `metrics`, `top_by_metric` and per-score counts in the JSON, and the
/// mergeable state in its own footer key (see `codec`); 1.5 adds the
/// per-key aggregates of group-bys ([`groups`]) in the body.
pub const N4A_VERSION: &str = "1.5";
/// nirs4all's summary lists ten top predictions.
pub const DEFAULT_TOP_K: usize = 10;
/// Quartiles stay exact (every value kept in memory) up to this many rows.
pub const DEFAULT_EXACT_LIMIT: u64 = 1_000_000;
