//! What differs between a stored summary and one recomputed from the rows,
//! field by field, for `n4a refresh --verify`.

use serde::Serialize;
use serde_json::Value;

use super::{Stats, Summary};

/// Differences listed per file at most.
pub const MAX_DIFFERENCES: usize = 10;

/// Differences between a stored summary and one recomputed from the rows,
/// as `path: stored X, rows give Y`, at most [`MAX_DIFFERENCES`].
/// `generated_at` is ignored; numbers compare with relative tolerance 1e-9;
/// sketched quartiles within their stated relative error of exact ones.
/// Memory: one field at a time is turned into a JSON tree (the `runs` of a
/// file with many configs is the largest), never the whole summary.
pub fn differences(stored: &Summary, fresh: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    // Destructured without `..`: a field added to the summary must be
    // added here too.
    let Summary {
        n4a_version,
        generated_at: _,
        dataset_name,
        total_predictions,
        stats,
        facets,
        runs,
        top_predictions,
        ranking,
        metrics,
        top_by_metric,
        state,
    } = stored;
    part("n4a_version", n4a_version, &fresh.n4a_version, &mut out);
    part("dataset_name", dataset_name, &fresh.dataset_name, &mut out);
    part(
        "total_predictions",
        total_predictions,
        &fresh.total_predictions,
        &mut out,
    );
    stats_differences(stats, &fresh.stats, &mut out);
    part("facets", facets, &fresh.facets, &mut out);
    part("runs", runs, &fresh.runs, &mut out);
    part(
        "top_predictions",
        top_predictions,
        &fresh.top_predictions,
        &mut out,
    );
    part("ranking", ranking, &fresh.ranking, &mut out);
    part("metrics", metrics, &fresh.metrics, &mut out);
    part(
        "top_by_metric",
        top_by_metric,
        &fresh.top_by_metric,
        &mut out,
    );
    match (state, &fresh.state) {
        (Some(a), Some(b)) => {
            let crate::summary::SummaryState {
                rows,
                dataset_names,
                val_score,
                test_score,
                train_score,
                models,
                partitions,
                folds,
                task_types,
                runs,
                pipelines,
                metrics,
                top_k,
                top,
                by_metric,
                groups,
            } = a;
            part("state.rows", rows, &b.rows, &mut out);
            part(
                "state.dataset_names",
                dataset_names,
                &b.dataset_names,
                &mut out,
            );
            part("state.val_score", val_score, &b.val_score, &mut out);
            part("state.test_score", test_score, &b.test_score, &mut out);
            part("state.train_score", train_score, &b.train_score, &mut out);
            part("state.models", models, &b.models, &mut out);
            part("state.partitions", partitions, &b.partitions, &mut out);
            part("state.folds", folds, &b.folds, &mut out);
            part("state.task_types", task_types, &b.task_types, &mut out);
            part("state.runs", runs, &b.runs, &mut out);
            part("state.pipelines", pipelines, &b.pipelines, &mut out);
            part("state.metrics", metrics, &b.metrics, &mut out);
            part("state.top_k", top_k, &b.top_k, &mut out);
            part("state.top", top, &b.top, &mut out);
            part("state.by_metric", by_metric, &b.by_metric, &mut out);
            if groups != &b.groups {
                out.push(
                    "state.groups: the stored group aggregates differ from the rows'".to_string(),
                );
            }
        }
        (a, b) => part("state", a, b, &mut out),
    }
    out.truncate(MAX_DIFFERENCES);
    out
}

/// Compares one field through its JSON form.
fn part<T: Serialize>(path: &str, a: &T, b: &T, out: &mut Vec<String>) {
    if out.len() >= MAX_DIFFERENCES {
        return;
    }
    let a = serde_json::to_value(a).unwrap_or(Value::Null);
    let b = serde_json::to_value(b).unwrap_or(Value::Null);
    diff_values(path, &a, &b, out);
}

/// `stats`, with quartiles computed two ways (sketch, exact) compared
/// within the sketch's stated error.
fn stats_differences(a: &Stats, b: &Stats, out: &mut Vec<String>) {
    let mut a = serde_json::to_value(a).unwrap_or(Value::Null);
    let mut b = serde_json::to_value(b).unwrap_or(Value::Null);
    for col in ["val_score", "test_score", "train_score"] {
        let (sa, sb) = (&a[col], &b[col]);
        let method = |s: &Value| s["quartiles_method"].as_str().map(str::to_string);
        if method(sa) == method(sb) {
            continue;
        }
        let err = [sa, sb]
            .iter()
            .filter_map(|s| s["quartiles_rel_error"].as_f64())
            .fold(0.0, f64::max);
        let qa: Vec<Option<f64>> = quartiles(sa);
        let qb: Vec<Option<f64>> = quartiles(sb);
        let ok = qa.len() == qb.len()
            && qa.iter().zip(&qb).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => (x - y).abs() <= err * x.abs().max(y.abs()) + 1e-12,
                (None, None) => true,
                _ => false,
            });
        if !ok {
            out.push(format!(
                "stats.{col}.quartiles: stored {qa:?}, rows give {qb:?}"
            ));
        }
        for v in [&mut a, &mut b] {
            if let Some(o) = v[col].as_object_mut() {
                for k in ["quartiles", "quartiles_method", "quartiles_rel_error"] {
                    o.remove(k);
                }
            }
        }
    }
    diff_values("stats", &a, &b, out);
}

fn quartiles(s: &Value) -> Vec<Option<f64>> {
    s["quartiles"]
        .as_array()
        .map(|q| q.iter().map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(77) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s,
    }
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= MAX_DIFFERENCES {
        return;
    }
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            if (x - y).abs() > 1e-9 * (1.0 + x.abs().max(y.abs())) {
                out.push(format!("{path}: stored {x}, rows give {y}"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (
                    x.get(k.as_str()).unwrap_or(&Value::Null),
                    y.get(k.as_str()).unwrap_or(&Value::Null),
                );
                diff_values(&at(k), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) => out.push(format!(
            "{path}: stored {} entries, rows give {}",
            x.len(),
            y.len()
        )),
        _ if a == b => {}
        _ => out.push(format!(
            "{path}: stored {}, rows give {}",
            short(a),
            short(b)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_summaries_differ_nowhere_and_generated_at_is_ignored() {
        let a = Summary {
            total_predictions: 12,
            generated_at: Some("2026-01-01T00:00:00+00:00".into()),
            ..Default::default()
        };
        let b = Summary {
            generated_at: Some("2026-12-02T00:00:00+00:00".into()),
            ..a.clone()
        };
        assert_eq!(differences(&a, &b), Vec::<String>::new());
    }

    #[test]
    fn a_differing_field_is_named_with_both_values() {
        let a = Summary {
            total_predictions: 12,
            ..Default::default()
        };
        let b = Summary {
            total_predictions: 13,
            ..Default::default()
        };
        let d = differences(&a, &b);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("total_predictions"), "{d:?}");
        assert!(d[0].contains("12") && d[0].contains("13"), "{d:?}");
    }

    #[test]
    fn float_noise_is_not_a_difference_but_a_real_change_is() {
        let with_mean = |mean: f64| {
            let mut s = Summary::default();
            s.stats.val_score = Some(super::super::ScoreSummary {
                mean: Some(mean),
                ..Default::default()
            });
            s
        };
        let a = with_mean(0.1 + 0.2);
        assert!(differences(&a, &with_mean(0.3)).is_empty());
        let b = with_mean(0.3001);
        let d = differences(&a, &b);
        assert!(d.iter().any(|l| l.contains("val_score")), "{d:?}");
    }
}
