//! A footer whose summary has no usable n4a state (nirs4all's 1.0, or a
//! state that disagrees with the file): its typed parts, how n4a ranks it
//! (the metric its column statistics prove), and its text relayed with
//! nirs4all's maxima left out where they are not bests.

use std::path::Path;

use bytes::Bytes;

use super::super::{ColumnFacts, Content, FileSummary, MetricFact, TextSource};
use super::invalid;
use crate::error::Result;
use crate::metric::builtin_direction;
use crate::summary::json::Fields;
use crate::summary::legacy::{relay_text, LegacyRanking, LegacySummary};

/// A summary without usable state: its typed parts, and the text relayed
/// with nirs4all's maxima left out where they are not bests.
pub(super) fn legacy_summary(
    path: &Path,
    version: String,
    fields: &Fields,
    columns: &ColumnFacts,
) -> Result<FileSummary> {
    let ranking = legacy_ranking(columns);
    let shape = |e: serde_json::Error| invalid(path, &format!("unexpected shape: {e}"));
    let parts = LegacySummary::from_fields(fields).map_err(shape)?;
    let (text, runs_at) = relay_text(fields, &ranking).map_err(shape)?;
    Ok(FileSummary {
        version,
        text: TextSource::Held {
            text: Bytes::from(text),
            runs_at,
        },
        content: Content::Legacy { parts, ranking },
    })
}

fn legacy_ranking(columns: &ColumnFacts) -> LegacyRanking {
    match &columns.metric {
        MetricFact::One { name, .. } => LegacyRanking {
            metric: Some(name.clone()),
            direction: builtin_direction(name),
        },
        _ => LegacyRanking {
            metric: None,
            direction: None,
        },
    }
}
