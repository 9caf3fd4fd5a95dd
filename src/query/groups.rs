//! Group-bys of the [`QueryEngine`]: counts and score statistics per
//! model, config, dataset, partition, fold or metric, within one metric
//! (and partition) at a time, answered from footers where they can be,
//! else by a scan; and their JSON, kept in the column cache per query and
//! file versions.

use std::sync::Arc;

use super::footers::footer_groups;
use super::{
    check_score, scan, Candidate, GroupAnswer, GroupKey, GroupQuery, GroupSplit, GroupsByMetric,
    Provenance, QueryEngine, ServedBy,
};
use crate::error::{Error, Result};
use crate::metric::Direction;

impl<'a> QueryEngine<'a> {
    /// Counts and score statistics per group.
    ///
    /// # Errors
    /// As [`Self::top`] (a direction is needed for `best` unless only
    /// count and mean are asked).
    pub fn group(&self, q: &GroupQuery) -> Result<GroupAnswer> {
        check_score(&q.score, "aggregate")?;
        let (cands, prov) = self.plan(&q.filters, &q.reads())?;
        self.group_in(q, cands, prov)
    }

    /// [`Self::group`] over planned candidates.
    pub(super) fn group_in(
        &self,
        q: &GroupQuery,
        cands: Vec<Candidate>,
        prov: Provenance,
    ) -> Result<GroupAnswer> {
        if q.key != GroupKey::Metric && !cands.is_empty() {
            // Averages and bests within one metric only.
            let metrics = self.metrics_exact(&cands, &q.filters)?;
            if metrics.len() > 1 {
                return Err(Error::InvalidQuery(format!(
                    "the rows mix metrics ({}): averages and bests are per metric (filter --metric, or ask for one grouping per metric)",
                    metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        self.group_of(q, cands, prov)
    }

    /// [`Self::group`] within one metric at a time and, over every
    /// partition (no partition asked), within one partition at a time:
    /// averages and bests never pool scores of different metrics, and a
    /// model instance's train, val and test rows (which carry the same
    /// scores) are not counted as three observations of one group. Each
    /// grouping comes with its split, in (metric, partition) order; rows
    /// without a metric (or partition) form a grouping of their own, last,
    /// so no row is left out. Rows of one metric and one partition give one
    /// grouping, answered as [`Self::group`] (footers where they can). Else
    /// one pass over each file reads the metric and partition columns
    /// besides the key's and buckets the rows by their dictionary codes.
    ///
    /// # Errors
    /// As [`Self::group`].
    pub fn group_by_metric(&self, q: &GroupQuery) -> Result<GroupsByMetric> {
        check_score(&q.score, "aggregate")?;
        let (cands, prov) = self.plan(&q.filters, &q.reads())?;
        self.group_by_metric_in(q, cands, prov)
    }

    /// [`Self::group_by_metric`] over planned candidates.
    pub(super) fn group_by_metric_in(
        &self,
        q: &GroupQuery,
        cands: Vec<Candidate>,
        mut prov: Provenance,
    ) -> Result<GroupsByMetric> {
        let metrics = self.metrics_exact(&cands, &q.filters)?;
        let by_metric = q.key != GroupKey::Metric && metrics.len() > 1;
        // Grouped by metric over several: each group's best by its own
        // metric's direction (below), no one metric named.
        let per_group = q.key == GroupKey::Metric && metrics.len() > 1 && q.direction.is_none();
        let asked = q.filters.get("partition");
        // Several partitions (every one, or more than one asked): one
        // grouping each.
        let by_partition =
            q.key != GroupKey::Partition && asked.is_none_or(|p| p.len() > 1) && !cands.is_empty();
        let one_partition = asked.and_then(|p| (p.len() == 1).then(|| p[0].clone()));
        if !by_metric && !by_partition {
            let split = GroupSplit {
                metric: (q.key != GroupKey::Metric)
                    .then(|| metrics.keys().next().cloned())
                    .flatten(),
                partition: one_partition,
            };
            let answer = self.group_in(q, cands, prov)?;
            return Ok(GroupsByMetric {
                groupings: vec![(split, answer)],
            });
        }
        let forced = q.direction;
        let only = q.count_and_mean_only;
        let direction = |m: Option<&str>| -> Option<Direction> {
            if only || per_group {
                return None;
            }
            forced.or_else(|| match m {
                Some(m) => metrics.get(m).copied(),
                None if !by_metric => metrics.values().next().copied(),
                None => None,
            })
        };
        // Per group: the scan keeps the score closest to zero, and min and
        // max; each group's best is picked by its metric below.
        let scan_direction = |m: Option<&str>| {
            if per_group && !only {
                Some(Direction::TowardZero)
            } else {
                direction(m)
            }
        };
        let scan::Scanned {
            value: (value, stored),
            errors,
        } = scan::group_split(self.ws, &cands, q, by_metric, by_partition, scan_direction);
        self.absorb(&mut prov, cands.len() - stored, errors);
        let served_by = served_by(stored, cands.len());
        self.check_cancel()?;
        let single = metrics.keys().next().cloned().filter(|_| !per_group);
        let groupings = value
            .into_iter()
            .map(|((m, p), mut groups)| {
                if per_group && !only {
                    for g in &mut groups {
                        g.best = match g.key.as_ref().and_then(|k| metrics.get(k)) {
                            Some(Direction::Maximize) => g.max,
                            Some(Direction::Minimize) => g.min,
                            Some(Direction::TowardZero) => g.best,
                            None => None,
                        };
                    }
                }
                let direction = direction(m.as_deref());
                let split = GroupSplit {
                    metric: if by_metric { m } else { single.clone() },
                    partition: if by_partition {
                        p
                    } else {
                        one_partition.clone()
                    },
                };
                let answer = GroupAnswer {
                    groups,
                    direction,
                    served_by,
                    provenance: prov.clone(),
                };
                (split, answer)
            })
            .collect::<Vec<_>>();
        // Nothing matched: one empty grouping (with the provenance).
        let groupings = if groupings.is_empty() {
            vec![(
                GroupSplit {
                    metric: single,
                    partition: one_partition,
                },
                GroupAnswer {
                    groups: Vec::new(),
                    direction: direction(None),
                    served_by: if cands.is_empty() {
                        ServedBy::Pruned
                    } else {
                        ServedBy::Scan
                    },
                    provenance: prov,
                },
            )]
        } else {
            groupings
        };
        Ok(GroupsByMetric { groupings })
    }

    /// [`Self::group_by_metric`] as JSON: one grouping as [`Self::group_json`]
    /// answers it, with its `metric` and `partition`; several as
    /// `{"by_metric": [...]}`, each grouping so. With a column cache, the
    /// bytes are kept as [`Self::group_json`] keeps its own.
    ///
    /// # Errors
    /// As [`Self::group`].
    pub fn group_by_metric_json(&self, q: &GroupQuery) -> Result<bytes::Bytes> {
        check_score(&q.score, "aggregate")?;
        let (cands, prov) = self.plan(&q.filters, &q.reads())?;
        self.cached_json("groups by metric", q, &cands, &prov, || {
            let answer = self.group_by_metric_in(q, cands.clone(), prov.clone())?;
            Ok(answer.to_json(self.ws).into())
        })
    }

    /// `make`'s bytes, kept in the column cache (when there is one) under
    /// `what`, the query, the directions and the version of every chosen
    /// file (path and key) with the plan's provenance: a changed file
    /// changes the key, so bytes are never served for files they were not
    /// made from.
    fn cached_json(
        &self,
        what: &str,
        q: &GroupQuery,
        cands: &[Candidate],
        prov: &Provenance,
        make: impl FnOnce() -> Result<bytes::Bytes>,
    ) -> Result<bytes::Bytes> {
        // Rows read in place have no file version to key the bytes by.
        let Some(cache) = self
            .cache
            .clone()
            .filter(|_| cands.iter().all(|c| c.rows.is_none()))
        else {
            return make();
        };
        let files = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for c in cands {
                (&c.path, &c.info.key).hash(&mut h);
            }
            h.finish()
        };
        let what = format!(
            "{what} {q:?} {:?} over {} files {files:x} {}",
            self.directions,
            cands.len(),
            serde_json::to_string(prov).unwrap_or_default()
        );
        let root = self.ws.root();
        let key = crate::footer::FileKey::default();
        if let Some(bytes) = cache.derived::<bytes::Bytes>(root, &key, &what) {
            return Ok(bytes.as_ref().clone());
        }
        let bytes = make()?;
        cache.put_derived(root, &key, &what, Arc::new(bytes.clone()), bytes.len());
        Ok(bytes)
    }

    /// [`Self::group`] as JSON ([`GroupAnswer::to_json`]). With a column
    /// cache, the bytes are kept under the query and the version of every
    /// file the plan chose (path and file key) with the plan's provenance:
    /// a repeated group-by costs its plan (the footers, cached) and a copy,
    /// where grouping 190k configs of 100 files and writing their 27 MB of
    /// JSON took 115 ms from cached columns. A changed file changes the
    /// key, so an answer is never served for files it was not computed on.
    ///
    /// # Errors
    /// As [`Self::group`].
    pub fn group_json(&self, q: &GroupQuery) -> Result<bytes::Bytes> {
        check_score(&q.score, "aggregate")?;
        let (cands, prov) = self.plan(&q.filters, &q.reads())?;
        self.cached_json("group answer", q, &cands, &prov, || {
            Ok(self
                .group_of(q, cands.clone(), prov.clone())?
                .to_json(self.ws)
                .into())
        })
    }

    pub(super) fn group_of(
        &self,
        q: &GroupQuery,
        cands: Vec<Candidate>,
        mut prov: Provenance,
    ) -> Result<GroupAnswer> {
        // Grouped by metric over several metrics: each group's best by its
        // own metric's direction (the scan keeps min, max and the score
        // closest to zero; the right one is picked per group below).
        let per_group =
            if q.key == GroupKey::Metric && !q.count_and_mean_only && q.direction.is_none() {
                Some(self.metrics_of(&cands, &q.filters)?).filter(|m| m.len() > 1)
            } else {
                None
            };
        let direction = if q.count_and_mean_only || per_group.is_some() {
            None
        } else {
            self.direction(&cands, &q.filters, q.direction)?
        };
        let answer = |groups, served_by, prov| GroupAnswer {
            groups,
            direction,
            served_by,
            provenance: prov,
        };
        if cands.is_empty() {
            return Ok(answer(Vec::new(), ServedBy::Pruned, prov));
        }
        if q.count_and_mean_only {
            if let Some(groups) = footer_groups(&cands, q) {
                return Ok(answer(groups, ServedBy::Footers, prov));
            }
        }
        let scan_direction = per_group
            .as_ref()
            .map_or(direction, |_| Some(Direction::TowardZero));
        let scan::Scanned {
            value: (mut groups, stored),
            errors,
        } = scan::group(self.ws, &cands, q, scan_direction);
        if let Some(dirs) = &per_group {
            for g in &mut groups {
                g.best = match g.key.as_ref().and_then(|k| dirs.get(k)) {
                    Some(Direction::Maximize) => g.max,
                    Some(Direction::Minimize) => g.min,
                    Some(Direction::TowardZero) => g.best,
                    None => None,
                };
            }
        }
        self.absorb(&mut prov, cands.len() - stored, errors);
        self.check_cancel()?;
        Ok(answer(groups, served_by(stored, cands.len()), prov))
    }
}

/// Footers when every file's stored aggregates answered, else a scan.
fn served_by(stored: usize, files: usize) -> ServedBy {
    if stored == files && files > 0 {
        ServedBy::Footers
    } else {
        ServedBy::Scan
    }
}
