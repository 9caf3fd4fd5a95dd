//! Why an answer is empty: filter values that match no row of the
//! workspace, each with the nearest values that do (a typo in `--model
//! PLSX`, a dataset name with a wrong case). The valid values come from
//! the footers' facets where they hold them, else from a scan of that one
//! column; this runs only when an answer came back empty.

use std::collections::BTreeSet;

use serde::Serialize;

use super::filter::{Filters, FIELDS};
use super::{scan, QueryEngine};
use crate::error::Result;

/// A filter value that matches no row of the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmatched {
    /// The filter field (`model_name`, `dataset`, ...).
    pub field: String,
    /// The value given.
    pub value: String,
    /// Up to five values of that field that exist, nearest first.
    pub nearest: Vec<String>,
}

impl QueryEngine<'_> {
    /// The values of `f` (its field filters; score ranges are not values)
    /// that match no row of the workspace, whatever the other filters say,
    /// each with up to five existing values nearest to it (edit distance,
    /// case ignored). Empty when every value exists: then only their
    /// combination matches nothing. Cost: the footers' facets (models,
    /// partitions, task types, metrics, folds, datasets), plus one column's
    /// scan for another field or for files whose footers do not hold it.
    ///
    /// # Errors
    /// As [`Self::page`].
    pub fn unmatched(&self, f: &Filters) -> Result<Vec<Unmatched>> {
        let (cands, _) = self.plan(&Filters::default(), &[])?;
        let mut out = Vec::new();
        for (field, wanted) in &f.values {
            let Some(spec) = FIELDS.iter().find(|x| x.name == field) else {
                continue;
            };
            let mut have: BTreeSet<String> = BTreeSet::new();
            let mut to_scan = Vec::new();
            for c in &cands {
                if spec.name == "dataset" {
                    have.insert(c.dataset.clone());
                    continue;
                }
                match c.state() {
                    Some(st) => match spec.name {
                        "model_name" => have.extend(st.models.keys().cloned()),
                        "partition" => have.extend(st.partitions.keys().cloned()),
                        "task_type" => have.extend(st.task_types.keys().cloned()),
                        "metric" => have.extend(st.metrics.keys().cloned()),
                        "fold_id" => have.extend(st.folds.iter().cloned()),
                        _ => to_scan.push(c.clone()),
                    },
                    None => to_scan.push(c.clone()),
                }
            }
            if !to_scan.is_empty() {
                have.extend(
                    scan::distinct_values(self.ws, &to_scan, spec.column, &Filters::default())
                        .value,
                );
            }
            for v in wanted {
                if !have.contains(v) {
                    out.push(Unmatched {
                        field: field.clone(),
                        value: v.clone(),
                        nearest: nearest(v, &have, 5),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The `n` values of `have` nearest to `v`: edit distance between the
/// lower-cased strings relative to the longer one's length (a typo in a
/// long name is near, a short unrelated name is not), then a longer
/// shared prefix, then name order.
pub fn nearest(v: &str, have: &BTreeSet<String>, n: usize) -> Vec<String> {
    let low = v.to_lowercase();
    let mut ranked: Vec<(u64, usize, &String)> = have
        .iter()
        .map(|h| {
            let hl = h.to_lowercase();
            let prefix = low
                .chars()
                .zip(hl.chars())
                .take_while(|(a, b)| a == b)
                .count();
            let longest = low.chars().count().max(hl.chars().count()).max(1);
            // In millionths, to sort as integers.
            let rel = (edit_distance(&low, &hl) * 1_000_000 / longest) as u64;
            (rel, usize::MAX - prefix, h)
        })
        .collect();
    ranked.sort();
    ranked
        .into_iter()
        .take(n)
        .map(|(_, _, h)| h.clone())
        .collect()
}

/// Levenshtein distance in characters. O(|a|·|b|).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_values_come_first() {
        let have: BTreeSet<String> = ["PLS", "PLSRegression", "RF", "SVR", "Ridge"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(nearest("PLSX", &have, 2), ["PLS", "PLSRegression"]);
        assert_eq!(nearest("rf", &have, 1), ["RF"]);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
