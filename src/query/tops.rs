//! Top-k of the [`QueryEngine`]: the best model instances by a score, in
//! the metric's direction, one list per metric the rows hold; from the
//! footers' best lists where they answer, else by a scan.

use super::footers::footer_top;
use super::{check_score, scan, Candidate, Provenance, QueryEngine, ServedBy, TopAnswer, TopQuery};
use crate::error::Result;

impl<'a> QueryEngine<'a> {
    /// [`Self::top`] once per metric the rows hold (each by its own
    /// direction): what a user asking for "the best predictions" of a
    /// workspace that mixes metrics wants. A query that names one metric,
    /// or rows of one metric, give one list.
    ///
    /// # Errors
    /// As [`Self::top`].
    /// The workspace's footers are read once for all the lists.
    pub fn top_by_metric(&self, q: &TopQuery) -> Result<Vec<(Option<String>, TopAnswer)>> {
        check_score(&q.score, "rank by")?;
        let mut reading = super::scan::filter_columns(&q.filters);
        reading.extend([q.score.as_str(), "metric"]);
        let (all, errors) = self.candidates(&reading)?;
        let (cands, prov) = Self::prune(all.clone(), errors.clone(), &q.filters);
        let metrics: Vec<String> = self
            .metrics_exact(&cands, &q.filters)?
            .into_keys()
            .collect();
        if metrics.len() <= 1 {
            return Ok(vec![(
                metrics.into_iter().next(),
                self.top_in(q, cands, prov)?,
            )]);
        }
        metrics
            .into_iter()
            .map(|m| {
                let mut one = q.clone();
                one.filters = one.filters.with("metric", [m.clone()])?;
                let (cands, prov) = Self::prune(all.clone(), errors.clone(), &one.filters);
                Ok((Some(m), self.top_in(&one, cands, prov)?))
            })
            .collect()
    }

    /// The best `k` rows by the score, in the metric's direction.
    ///
    /// # Errors
    /// [`crate::error::Error::InvalidQuery`] when the rows mix directions and none is
    /// given, or for an unknown score column; as [`Self::page`].
    pub fn top(&self, q: &TopQuery) -> Result<TopAnswer> {
        check_score(&q.score, "rank by")?;
        let (cands, prov) = self.plan(&q.filters, &[q.score.as_str(), "metric"])?;
        self.top_in(q, cands, prov)
    }

    /// [`Self::top`] over planned candidates.
    fn top_in(
        &self,
        q: &TopQuery,
        cands: Vec<Candidate>,
        mut prov: Provenance,
    ) -> Result<TopAnswer> {
        let direction = self.direction(&cands, &q.filters, q.direction)?;
        let answer = |records, served_by, prov| TopAnswer {
            records,
            direction,
            served_by,
            provenance: prov,
        };
        let Some(dir) = direction else {
            return Ok(answer(Vec::new(), ServedBy::Pruned, prov));
        };
        // A best list holds one entry per model instance (its train, val
        // and test rows carry the same scores): rows are asked for until k
        // instances are found or the rows run out; one partition's rows
        // are one per instance in what nirs4all writes.
        let one_partition = q.filters.get("partition").is_some_and(|p| p.len() == 1);
        let mut want = if one_partition {
            q.k
        } else {
            q.k.saturating_mul(3)
        };
        let mut served = ServedBy::Footers;
        loop {
            let wide = TopQuery {
                k: want,
                ..q.clone()
            };
            let (records, errors) = match footer_top(&cands, &wide, dir) {
                Some(r) if served == ServedBy::Footers => (r, None),
                _ => {
                    served = ServedBy::Scan;
                    let scan::Scanned {
                        value: records,
                        errors,
                    } = scan::top(self.ws, &cands, &wide, dir)?;
                    self.check_cancel()?;
                    (records, Some(errors))
                }
            };
            let rows = records.len();
            let mut best = crate::summary::topk::one_per_instance(records);
            if best.len() >= q.k || rows < want || want >= q.k.saturating_mul(64) {
                best.truncate(q.k);
                if let Some(errors) = errors {
                    self.absorb(&mut prov, cands.len(), errors);
                }
                return Ok(answer(best, served, prov));
            }
            want = want.saturating_mul(2);
        }
    }
}
