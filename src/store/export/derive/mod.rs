//! What an export derives from a dataset's rows: repeated rows left out
//! (`dedupe`), and per pipeline and per chain the aggregates their
//! `pipelines` and `chains` rows are made of (`observe_pipeline`,
//! `observe_chain`), as `docs/STORE.md` and [`super::DERIVATIONS`] state.

use std::collections::HashSet;
use std::path::Path;

use super::ExportOptions;
use crate::schema::PredictionRef;
use crate::store::rows::refit_context_of;

mod scores;

use scores::add_cv_scores;
#[cfg(test)]
use scores::add_cv_scores_parsed;

/// A pipeline's rows as they are read, for its `pipelines` row.
#[derive(Default)]
pub(super) struct PipelineAgg {
    pub(super) name: String,
    pub(super) metric: Option<String>,
    pub(super) best: Option<(f64, Option<f64>)>,
    pub(super) unknown_metric: bool,
}

/// A chain's rows, for its `chains` row: what nirs4all's own
/// `bulk_update_chain_summaries` computes from them (1.4.10,
/// `_bulk_chain_update_scalar_fields` and `_bulk_chain_update_cv_scores`).
#[derive(Default)]
pub(super) struct ChainAgg {
    pub(super) facts: ChainFacts,
    /// The cross-validation rows' scores (no refit context, folds other
    /// than `avg`, `w_avg` and `*_agg`): sum and count, added in row order.
    pub(super) cv_sums: [(f64, u64); 3],
    /// Their distinct non-empty fold ids.
    pub(super) folds: HashSet<String>,
    /// Their `scores` per partition (test, train, val: the order nirs4all's
    /// bulk update meets them), each metric's sum and count in the order
    /// first met.
    pub(super) cv_scores: [Vec<(String, f64, u64)>; 3],
    /// The refit rows (a refit context, fold `final`) of partitions test
    /// and train.
    pub(super) finals: Vec<FinalRow>,
    /// The `final_agg` test row with the smallest id.
    pub(super) final_agg: Option<FinalRow>,
}

/// What a chain is and the texts its row takes from its rows, the same in
/// [`ChainAgg`] and [`ChainRow`].
#[derive(Default)]
pub(super) struct ChainFacts {
    pub(super) pipeline_id: String,
    pub(super) step_idx: i64,
    pub(super) model_name: String,
    pub(super) branch_id: Option<i64>,
    /// The first non-empty `model_classname` of the chain's rows: nirs4all's
    /// dag-ml engine fills it on a chain's first row only.
    pub(super) model_class: String,
    /// The first non-empty `preprocessings`, likewise.
    pub(super) preprocessings: String,
    pub(super) metric: Option<String>,
    pub(super) task_type: Option<String>,
    pub(super) best_params: Option<String>,
}

/// What a chain's final scores are taken from, of one row.
pub(super) struct FinalRow {
    /// 0 for test, 1 for train: nirs4all prefers the test row.
    pub(super) rank: u8,
    pub(super) id: String,
    pub(super) test: Option<f64>,
    pub(super) train: Option<f64>,
    pub(super) scores: Option<String>,
}

impl FinalRow {
    fn of(r: &PredictionRef<'_>, id: &str) -> Self {
        FinalRow {
            rank: u8::from(r.partition != Some("test")),
            id: id.to_string(),
            test: r.test_score,
            train: r.train_score,
            scores: r.scores.map(str::to_string),
        }
    }
}

/// The partitions of `cv_scores`, in the order nirs4all writes them.
pub(super) const CV_PARTITIONS: [&str; 3] = ["test", "train", "val"];

/// Drops the earlier of two rows with the same id or the same natural key
/// of nirs4all's unique index (pipeline, chain, fold, partition, model,
/// branch: a repeated row, as an append of the same run leaves); the later
/// row wins, as in nirs4all's own migration. Each drop is noted. Returns
/// the rows kept and, when some were dropped, their indices in `rows`.
pub(super) fn dedupe<'a>(
    rows: Vec<PredictionRef<'a>>,
    meta: &Path,
    notes: &mut Vec<String>,
) -> (Vec<PredictionRef<'a>>, Option<Vec<u32>>) {
    let mut ids: foldhash::HashSet<std::borrow::Cow<'_, str>> =
        foldhash::HashSet::with_capacity_and_hasher(rows.len(), Default::default());
    let mut keys = foldhash::HashSet::default();
    let mut keep = vec![false; rows.len()];
    let mut dropped = Vec::new();
    for (i, r) in rows.iter().enumerate().rev() {
        let id = match r.id {
            Some(id) => std::borrow::Cow::Borrowed(id),
            None => std::borrow::Cow::Owned(r.computed_id()),
        };
        // SQLite's unique index treats NULLs as distinct: rows without a
        // branch id never collide on it.
        let key = r.branch_id.map(|b| {
            (
                r.pipeline_uid,
                r.step_idx,
                r.model_name,
                r.fold_id,
                r.partition,
                b,
            )
        });
        let fresh_key = key.as_ref().is_none_or(|k| !keys.contains(k));
        if ids.contains(&id) || !fresh_key {
            dropped.push(id.into_owned());
            continue;
        }
        ids.insert(id);
        if let Some(k) = key {
            keys.insert(k);
        }
        keep[i] = true;
    }
    drop((ids, keys));
    if !dropped.is_empty() {
        dropped.reverse();
        let shown: Vec<&str> = dropped.iter().take(5).map(String::as_str).collect();
        notes.push(format!(
            "{}: {} repeated row(s) (same id, or same pipeline, chain, fold, partition, model and branch) left out, the later row kept: {}{}",
            meta.display(),
            dropped.len(),
            shown.join(", "),
            if dropped.len() > 5 { ", ..." } else { "" }
        ));
    }
    if dropped.is_empty() {
        return (rows, None);
    }
    let kept: Vec<u32> = (0..rows.len() as u32)
        .filter(|&i| keep[i as usize])
        .collect();
    (kept.iter().map(|&i| rows[i as usize]).collect(), Some(kept))
}

pub(super) fn observe_pipeline(p: &mut PipelineAgg, r: &PredictionRef<'_>, opts: &ExportOptions) {
    if p.name.is_empty() {
        p.name = r.config_name.unwrap_or_default().to_string();
    }
    if p.metric.is_none() {
        p.metric = r.metric.map(str::to_string);
    }
    if r.partition != Some("val") {
        return;
    }
    let (Some(metric), Some(v)) = (r.metric, r.val_score) else {
        return;
    };
    if v.is_nan() {
        return;
    }
    match opts.directions.get(metric) {
        Ok(dir) => {
            if p.best.is_none_or(|(b, _)| dir.is_better(v, b)) {
                p.best = Some((v, r.test_score));
            }
        }
        Err(_) => p.unknown_metric = true,
    }
}

/// Folds one row (in row order) into its chain's aggregates.
pub(super) fn observe_chain(c: &mut ChainAgg, r: &PredictionRef<'_>, id: &str) {
    let fill = |slot: &mut Option<String>, v: Option<&str>| {
        if slot.is_none() {
            *slot = v.map(str::to_string);
        }
    };
    fill(&mut c.facts.metric, r.metric);
    fill(&mut c.facts.task_type, r.task_type);
    if c.facts.best_params.is_none() && r.best_params.is_some_and(|b| b != "{}") {
        c.facts.best_params = r.best_params.map(str::to_string);
    }
    let non_empty = |slot: &mut String, v: Option<&str>| {
        if slot.is_empty() {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                v.clone_into(slot);
            }
        }
    };
    non_empty(&mut c.facts.model_class, r.model_classname);
    non_empty(&mut c.facts.preprocessings, r.preprocessings);
    let fold = r.fold_id.unwrap_or("");
    let partition = r.partition.unwrap_or("");
    let refit = refit_context_of(r.metadata).is_some();
    if refit && fold == "final" && matches!(partition, "test" | "train") {
        c.finals.push(FinalRow::of(r, id));
    }
    if fold == "final_agg"
        && partition == "test"
        && c.final_agg
            .as_ref()
            .is_none_or(|best| id < best.id.as_str())
    {
        c.final_agg = Some(FinalRow::of(r, id));
    }
    if refit || fold == "avg" || fold == "w_avg" || fold.ends_with("_agg") {
        return;
    }
    if !fold.is_empty() && !c.folds.contains(fold) {
        c.folds.insert(fold.to_string());
    }
    for (sum, v) in c.cv_sums.iter_mut().zip(r.score_values()) {
        if let Some(v) = v {
            sum.0 += v;
            sum.1 += 1;
        }
    }
    if let (Some(part), Some(text)) = (
        CV_PARTITIONS.iter().position(|p| *p == partition),
        r.scores.filter(|t| !t.is_empty()),
    ) {
        add_cv_scores(&mut c.cv_scores[part], text, partition);
    }
}

impl ChainAgg {
    /// `cv_val_score`, `cv_test_score`, `cv_train_score`: the mean over the
    /// cross-validation rows (not the `avg` row, which is the pooled
    /// out-of-fold score).
    pub(super) fn cv(&self) -> [Option<f64>; 3] {
        self.cv_sums.map(|(s, n)| (n > 0).then(|| s / n as f64))
    }

    /// `cv_scores`: per partition, each metric's mean rounded to 6
    /// decimals, as Python's `json.dumps` writes it; `None` without any.
    pub(super) fn cv_scores_json(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (name, sums) in CV_PARTITIONS.iter().zip(&self.cv_scores) {
            if sums.is_empty() {
                continue;
            }
            let metrics: Vec<String> = sums
                .iter()
                .map(|(m, s, n)| {
                    let mean = s / *n as f64;
                    let rounded: f64 = format!("{mean:.6}").parse().unwrap_or(mean);
                    format!("{}: {}", py_str(m), py_float(rounded))
                })
                .collect();
            parts.push(format!("{}: {{{}}}", py_str(name), metrics.join(", ")));
        }
        (!parts.is_empty()).then(|| format!("{{{}}}", parts.join(", ")))
    }

    /// `final_test_score`, then (`final_train_score`, `final_scores`): of
    /// the refit test row, and of the first refit row preferring test (by
    /// id, as nirs4all orders rows written in one second).
    pub(super) fn finals(&self) -> (Option<f64>, Option<f64>, Option<String>) {
        let mut rows: Vec<&FinalRow> = self.finals.iter().collect();
        rows.sort_by(|a, b| (a.rank, &a.id).cmp(&(b.rank, &b.id)));
        let test = rows.iter().find(|r| r.rank == 0).and_then(|r| r.test);
        match rows.first() {
            Some(r) => (test, r.train, r.scores.clone()),
            None => (None, None, None),
        }
    }
}

/// A chain's `chains` row as its rows made it (computed where the
/// dataset is read, beside the writing thread).
pub(super) struct ChainRow {
    pub(super) facts: ChainFacts,
    /// `refit_only` for a chain with refit rows, else `per_fold`.
    pub(super) fold_strategy: &'static str,
    /// [`ChainAgg::cv`].
    pub(super) cv: [Option<f64>; 3],
    pub(super) cv_fold_count: i64,
    /// [`ChainAgg::cv_scores_json`].
    pub(super) cv_scores: Option<String>,
    /// [`ChainAgg::finals`].
    pub(super) finals: (Option<f64>, Option<f64>, Option<String>),
    /// The `final_agg` test row's test and train scores and `scores`.
    pub(super) final_agg: (Option<f64>, Option<f64>, Option<String>),
}

impl ChainAgg {
    /// The chain's row.
    pub(super) fn into_row(self) -> ChainRow {
        let cv = self.cv();
        let cv_scores = self.cv_scores_json();
        let finals = self.finals();
        ChainRow {
            fold_strategy: if self.finals.is_empty() {
                "per_fold"
            } else {
                "refit_only"
            },
            cv,
            cv_fold_count: self.folds.len() as i64,
            cv_scores,
            finals,
            final_agg: self
                .final_agg
                .map_or((None, None, None), |a| (a.test, a.train, a.scores)),
            facts: self.facts,
        }
    }
}

/// A string as Python's `json.dumps` writes it (ASCII, escaped).
fn py_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A float as Python's `repr` (and `json.dumps`) writes it: the shortest
/// digits that read back, fixed between 1e-4 and 1e16, else scientific with
/// a two-digit exponent at least; `NaN`, `Infinity`.
pub(super) fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde-5".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point >= n {
            format!("{digits}{}.0", "0".repeat((point - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        let e_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{e_sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Prediction;
    use proptest::prelude::*;

    fn row(id: &str, fold: &str, partition: &str, val: f64, test: f64) -> Prediction {
        Prediction {
            id: Some(id.into()),
            config_name: Some("0001_pls_abc".into()),
            pipeline_uid: Some("0001_pls_abc".into()),
            metric: Some("rmse".into()),
            fold_id: Some(fold.into()),
            partition: Some(partition.into()),
            val_score: Some(val),
            test_score: Some(test),
            train_score: Some(val / 2.0),
            ..Default::default()
        }
    }

    #[test]
    fn dedupe_keeps_the_later_of_repeated_ids_and_says_so() {
        let rows = [
            row("a", "0", "val", 1.0, 2.0),
            row("b", "0", "test", 1.0, 2.0),
            row("a", "1", "val", 3.0, 4.0),
        ];
        let mut notes = Vec::new();
        let view: Vec<_> = rows.iter().map(Prediction::as_row).collect();
        let (kept, at) = dedupe(view, Path::new("x.meta.parquet"), &mut notes);
        let ids: Vec<(&str, Option<f64>)> =
            kept.iter().map(|r| (r.id.unwrap(), r.val_score)).collect();
        assert_eq!(ids, [("b", Some(1.0)), ("a", Some(3.0))]);
        assert_eq!(at, Some(vec![1, 2]), "the kept rows' indices");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("1 repeated row(s)") && notes[0].contains("x.meta.parquet"));
        let mut none = Vec::new();
        let one = row("c", "0", "val", 1.0, 2.0);
        let (kept, at) = dedupe(vec![one.as_row()], Path::new("y"), &mut none);
        assert!(none.is_empty() && at.is_none() && kept.len() == 1);
    }

    #[test]
    fn a_pipelines_best_is_its_best_val_row_by_the_metrics_direction() {
        let opts = ExportOptions::default();
        let mut p = PipelineAgg::default();
        for r in [
            row("a", "0", "val", 0.9, 1.0),
            row("b", "1", "val", 0.4, 0.6),
            // Not a val row: never the best, however small.
            row("c", "1", "train", 0.1, 0.2),
            row("d", "2", "val", f64::NAN, 0.0),
        ] {
            observe_pipeline(&mut p, &r.as_row(), &opts);
        }
        assert_eq!(
            p.best,
            Some((0.4, Some(0.6))),
            "rmse: the smallest val score, with its test"
        );
        assert_eq!(
            (p.name.as_str(), p.metric.as_deref()),
            ("0001_pls_abc", Some("rmse"))
        );
        let mut q = PipelineAgg::default();
        let mut r = row("e", "0", "val", 0.9, 1.0);
        r.metric = Some("not_a_metric".into());
        observe_pipeline(&mut q, &r.as_row(), &opts);
        assert!(q.unknown_metric && q.best.is_none());
    }

    #[test]
    fn issue_32_a_chains_cv_scores_are_the_mean_over_its_folds_rows_as_nirs4all_computes() {
        let mut c = ChainAgg::default();
        let mut rows = vec![
            row("a", "0", "val", 1.0, 2.0),
            row("b", "1", "val", 3.0, 4.0),
            row("b2", "1", "test", 3.0, 4.0),
            row("c", "w_avg", "val", 5.0, 6.0),
            row("d", "avg", "test", 7.0, 8.0),
            row("e", "avg", "val", 9.0, 10.0),
            row("f", "fold_agg", "val", 11.0, 12.0),
            row("g", "final", "test", 13.0, 14.0),
            row("h", "final", "train", 15.0, 16.0),
        ];
        rows[0].model_classname = Some("sklearn.PLSRegression".into());
        rows[0].preprocessings = Some("MinMaxScaler".into());
        rows[0].scores = Some(r#"{"val": {"rmse": 1.0, "r2": 0.5}}"#.into());
        rows[1].scores = Some(r#"{"val": {"rmse": 2.0000004, "r2": 1e-7}}"#.into());
        rows[1].model_classname = Some(String::new());
        for r in &mut rows[7..] {
            r.metadata = Some(crate::store::rows::refit_metadata("standalone"));
            r.scores = Some(r#"{"test": {"rmse": 13.0}}"#.into());
        }
        for r in &rows {
            observe_chain(&mut c, &r.as_row(), r.id.as_deref().unwrap());
        }
        // Rows of folds 0 and 1 (every partition), not avg, w_avg, *_agg
        // nor refit rows: (1 + 3 + 3) / 3, not the avg row's 9.
        assert_eq!(c.cv()[0], Some(7.0 / 3.0));
        assert_eq!(c.cv()[1], Some(10.0 / 3.0));
        assert_eq!(c.folds.len(), 2);
        assert_eq!(
            c.facts.model_class, "sklearn.PLSRegression",
            "the first non-empty"
        );
        assert_eq!(c.facts.preprocessings, "MinMaxScaler");
        assert_eq!(
            c.cv_scores_json().as_deref(),
            Some(r#"{"val": {"r2": 0.25, "rmse": 1.5}}"#),
            "means rounded to 6 decimals, as json.dumps writes them"
        );
        let (test, train, scores) = c.finals();
        assert_eq!(
            (test, train),
            (Some(14.0), Some(6.5)),
            "the refit test row's"
        );
        assert_eq!(scores.as_deref(), Some(r#"{"test": {"rmse": 13.0}}"#));
    }

    #[test]
    fn issue_32_floats_are_written_as_python_writes_them() {
        for (x, py) in [
            (0.0, "0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (8.5e-05, "8.5e-05"),
            (0.0001, "0.0001"),
            (0.009133, "0.009133"),
            (123456.0, "123456.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (9999999999999998.0, "9999999999999998.0"),
            (-2.5e-7, "-2.5e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(py_float(x), py, "{x}");
        }
    }

    proptest! {
        /// The borrowed parse adds what the whole-tree parse adds, on
        /// texts shaped as nirs4all's and on odd ones (flat objects,
        /// escapes, booleans, nulls, strings, nested values, NaN).
        #[test]
        fn cv_scores_borrowed_parse_adds_as_the_tree_parse(
            parts in prop::collection::vec(
                (prop_oneof![Just("val"), Just("test"), Just("tr\\u0061in"), Just("r2")],
                 prop::collection::vec(
                    (prop_oneof![Just("rmse"), Just("r\\u00b2"), Just("acc"), Just("mse")],
                     prop_oneof![
                        (-1e9..1e9f64).prop_map(|x| format!("{x}")),
                        Just("NaN".to_string()), Just("true".to_string()), Just("null".to_string()),
                        Just("\"x\"".to_string()), Just("[1, 2]".to_string()), Just("12345678901234567890".to_string()),
                        Just("-0".to_string()), Just("1e400".to_string()),
                     ]),
                    0..4)),
                0..4),
            flat in any::<bool>(),
            partition in prop_oneof![Just("val"), Just("test"), Just("train")],
        ) {
            let obj = |kv: &[(&str, String)]| format!("{{{}}}", kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(", "));
            let text = if flat {
                obj(&parts.iter().flat_map(|(_, m)| m.iter().map(|(k, v)| (*k, v.clone()))).collect::<Vec<_>>())
            } else {
                obj(&parts.iter().map(|(p, m)| (*p, obj(&m.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()))).collect::<Vec<_>>())
            };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            add_cv_scores(&mut a, &text, partition);
            let clean = crate::summary::json::sanitize_non_finite(&text);
            // A number out of f64's range makes the whole tree parse fail;
            // the borrowed parse skips that value alone (below).
            prop_assume!(serde_json::from_str::<serde_json::Value>(&clean).is_ok());
            add_cv_scores_parsed(&mut b, &clean, partition);
            let bits = |v: Vec<(String, f64, u64)>| v.into_iter().map(|(m, x, n)| (m, x.to_bits(), n)).collect::<Vec<_>>();
            prop_assert_eq!(bits(a), bits(b), "{}", text);
        }
    }

    #[test]
    fn a_cv_score_out_of_range_is_skipped_alone() {
        let mut sums = Vec::new();
        add_cv_scores(&mut sums, r#"{"val": {"acc": 1e400, "rmse": 0.5}}"#, "val");
        assert_eq!(sums, [("rmse".to_string(), 0.5, 1)]);
    }
}
