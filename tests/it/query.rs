//! The query engine against a plain oracle (load every row, filter, sort,
//! slice in plain Rust), plus pushdown and footer-only answers.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::Array;

use n4a::metric::Direction;
use n4a::query::{Filters, GroupKey, GroupQuery, PageQuery, QueryEngine, ServedBy, Sort, TopQuery};
use n4a::schema::Prediction;
use n4a::writer::{PredictionWriter, WriterOptions};
use n4a::Workspace;
use proptest::prelude::*;

use crate::util::{fixture, same_f64};

/// (dataset, row within file, row).
type Row = (String, u64, Prediction);

/// Every row of the workspace (unreadable files left out, as the engine
/// leaves them out).
fn load(dir: &std::path::Path) -> Vec<Row> {
    crate::util::all_rows(dir)
}

fn field<'a>(r: &'a Row, name: &str) -> Option<&'a str> {
    let p = &r.2;
    match name {
        "dataset" => Some(r.0.as_str()),
        "model_name" => p.model_name.as_deref(),
        "partition" => p.partition.as_deref(),
        "metric" => p.metric.as_deref(),
        "fold_id" => p.fold_id.as_deref(),
        "config_name" => p.config_name.as_deref(),
        "id" => p.id.as_deref(),
        _ => unreachable!("{name}"),
    }
}

fn score(p: &Prediction, name: &str) -> Option<f64> {
    match name {
        "val_score" => p.val_score,
        "test_score" => p.test_score,
        _ => p.train_score,
    }
}

fn matches(f: &Filters, r: &Row) -> bool {
    f.values
        .iter()
        .all(|(k, vals)| field(r, k).is_some_and(|v| vals.iter().any(|x| x == v)))
        && f.ranges.iter().all(|g| g.matches(score(&r.2, &g.column)))
}

/// polars' order: nulls last; NaN above every number.
fn cmp_f64(a: Option<f64>, b: Option<f64>, desc: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Greater,
        (_, None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let o = match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ => x.partial_cmp(&y).unwrap(),
            };
            if desc {
                o.reverse()
            } else {
                o
            }
        }
    }
}

fn cmp_str(a: Option<&str>, b: Option<&str>, desc: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Greater,
        (_, None) => Ordering::Less,
        (Some(x), Some(y)) => {
            if desc {
                y.cmp(x)
            } else {
                x.cmp(y)
            }
        }
    }
}

fn oracle_page(all: &[Row], q: &PageQuery) -> (Vec<(String, u64)>, u64) {
    let mut m: Vec<&Row> = all.iter().filter(|r| matches(&q.filters, r)).collect();
    m.sort_by(|a, b| match &q.sort {
        None => a.0.cmp(&b.0).then(a.1.cmp(&b.1)),
        Some(s) => {
            let first = if s.column.ends_with("_score") {
                cmp_f64(score(&a.2, &s.column), score(&b.2, &s.column), s.descending)
            } else {
                cmp_str(field(a, &s.column), field(b, &s.column), s.descending)
            };
            first
                .then(cmp_str(a.2.id.as_deref(), b.2.id.as_deref(), false))
                .then(a.0.cmp(&b.0))
                .then(a.1.cmp(&b.1))
        }
    });
    let total = m.len() as u64;
    let page = m
        .iter()
        .skip(q.offset)
        .take(q.limit)
        .map(|r| (r.0.clone(), r.1))
        .collect();
    (page, total)
}

/// The ids of the oracle's (dataset, row) keys.
fn oracle_ids(all: &[Row], keys: &[(String, u64)]) -> Vec<String> {
    keys.iter()
        .map(|(d, i)| {
            let r = all.iter().find(|r| &r.0 == d && r.1 == *i).unwrap();
            r.2.id.clone().unwrap()
        })
        .collect()
}

/// Asks `q` three times through the server's path (a shared column cache:
/// the order noted, then built, then read off what is held) and asserts
/// each page's ids and total are the oracle's over `all`.
fn cached_pages_equal_the_oracle(
    ws: &Workspace,
    cache: &std::sync::Arc<n4a::query::ColumnCache>,
    all: &[Row],
    q: &PageQuery,
    label: &str,
) {
    let (want, total) = oracle_page(all, q);
    let want = oracle_ids(all, &want);
    for round in 0..3 {
        let p = QueryEngine::new(ws)
            .with_column_cache(cache.clone())
            .page(q)
            .unwrap();
        let got: Vec<String> = p
            .records
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            (got, p.total),
            (want.clone(), total),
            "{label} round {round}: {q:?}"
        );
    }
}

fn workspace(files: &[Vec<Prediction>], with_old: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, rows) in files.iter().enumerate() {
        let ds = format!("d{i}");
        let mut w = PredictionWriter::create(dir.path(), &ds, WriterOptions::default()).unwrap();
        for (j, r) in rows.iter().enumerate() {
            let mut r = r.clone();
            r.dataset_name = Some(ds.clone());
            r.id = Some(format!("{:04x}{:012x}", i, (j * 7919) % 997));
            // One metric per file, so top-k needs no forced direction.
            r.metric = Some(if i % 2 == 0 { "mse" } else { "r2" }.to_string());
            w.write(&r).unwrap();
        }
        w.finish().unwrap();
    }
    if with_old {
        std::fs::copy(
            fixture("old_layout.meta.parquet"),
            dir.path().join("old_layout.meta.parquet"),
        )
        .unwrap();
    }
    dir
}

fn score_strategy() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![6 => (0i32..40).prop_map(|k| Some(k as f64 / 8.0)), 1 => Just(None), 1 => Just(Some(f64::NAN))]
}

fn row_strategy() -> impl Strategy<Value = Prediction> {
    (
        prop::sample::select(vec!["PLS", "Ridge", "RF"]),
        prop::sample::select(vec!["train", "val", "test"]),
        prop::sample::select(vec!["c1", "c2"]),
        score_strategy(),
        score_strategy(),
        prop::sample::select(vec!["0", "1", "avg"]),
    )
        .prop_map(|(m, p, c, v, t, fold)| Prediction {
            model_name: Some(m.into()),
            partition: Some(p.into()),
            config_name: Some(c.into()),
            fold_id: Some(fold.into()),
            val_score: v,
            test_score: t,
            ..Default::default()
        })
}

fn filters_strategy() -> impl Strategy<Value = Filters> {
    (
        prop::option::of(prop::sample::subsequence(
            vec!["d0", "d1", "d2", "old_layout"],
            1..3,
        )),
        prop::option::of(prop::sample::subsequence(
            vec!["train", "val", "test"],
            1..2,
        )),
        prop::option::of(prop::sample::select(vec![
            "PLS",
            "RandomForestClassifier",
            "Ridge",
        ])),
        prop::option::of(prop::sample::select(vec![
            "val_score>=1.5",
            "test_score<2",
            "val_score=0.5",
        ])),
    )
        .prop_map(|(ds, parts, model, range)| {
            let mut f = Filters::default();
            if let Some(d) = ds {
                f = f.with("dataset", d).unwrap();
            }
            if let Some(p) = parts {
                f = f.with("partition", p).unwrap();
            }
            if let Some(m) = model {
                f = f.with("model_name", [m]).unwrap();
            }
            if let Some(r) = range {
                f = f.with_where(r).unwrap();
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn pages_equal_the_oracle(
        files in prop::collection::vec(prop::collection::vec(row_strategy(), 0..25), 1..4),
        with_old in any::<bool>(),
        queries in prop::collection::vec((filters_strategy(), prop::option::of((prop::sample::select(vec!["val_score", "test_score", "model_name", "id", "partition"]), any::<bool>())), 0usize..40, 0usize..15), 1..6),
    ) {
        let dir = workspace(&files, with_old);
        let all = load(dir.path());
        let ws = Workspace::open(dir.path()).unwrap();
        let engine = QueryEngine::new(&ws);
        // The server's path: a shared cache, each query asked three times
        // (a bounded selection, then the sorted rows built, then read from
        // the cache; records kept from the second time on).
        let cache = std::sync::Arc::new(n4a::query::ColumnCache::new(64 << 20));
        let cached = QueryEngine::new(&ws).with_column_cache(cache);
        for (filters, sort, offset, limit) in queries {
            let q = PageQuery {
                filters,
                columns: None,
                sort: sort.map(|(c, d)| Sort { column: c.to_string(), descending: d }),
                offset,
                limit,
            };
            for round in 0..4 {
            let page = if round == 0 { engine.page(&q) } else { cached.page(&q) }.unwrap();
            let (want, total) = oracle_page(&all, &q);
            prop_assert_eq!(page.total, total, "{:?}", q);
            let got: Vec<(String, String)> = page.records.iter().map(|r| (r["dataset"].as_str().unwrap().to_string(), r["id"].as_str().unwrap_or("").to_string())).collect();
            let want_ids: Vec<(String, String)> = want.iter().map(|(d, i)| {
                let r = all.iter().find(|r| &r.0 == d && r.1 == *i).unwrap();
                (d.clone(), r.2.id.clone().unwrap_or_default())
            }).collect();
            prop_assert_eq!(&got, &want_ids, "round {}: {:?}", round, q);
            prop_assert_eq!(page.has_more, (offset + limit) < total as usize);
            if round == 0 {
            // The Arrow page (the Python package's): the same rows, each
            // column as the oracle's row holds it.
            let arrow = engine.page_arrow(&q).unwrap();
            prop_assert_eq!((arrow.total, arrow.has_more), (total, (offset + limit) < total as usize));
            let b = &arrow.records;
            prop_assert_eq!(b.num_columns(), 36);
            let text = |c: &str, i: usize| {
                let a = b.column_by_name(c).unwrap().as_string::<i32>();
                a.is_valid(i).then(|| a.value(i).to_string())
            };
            let got: Vec<(String, String)> = (0..b.num_rows()).map(|i| (text("dataset", i).unwrap(), text("id", i).unwrap_or_default())).collect();
            prop_assert_eq!(&got, &want_ids, "arrow page {:?}", q);
            let scores = b.column_by_name("val_score").unwrap().as_primitive::<Float64Type>();
            for (i, (d, r)) in want.iter().enumerate() {
                let row = &all.iter().find(|x| &x.0 == d && x.1 == *r).unwrap().2;
                prop_assert_eq!(text("model_name", i), row.model_name.clone());
                prop_assert!(same_f64(scores.is_valid(i).then(|| scores.value(i)), row.val_score));
            }
            }
            }
        }
    }

    #[test]
    fn top_k_and_group_by_equal_the_oracle(
        files in prop::collection::vec(prop::collection::vec(row_strategy(), 0..25), 1..4),
        k in 0usize..15,
        metric in prop::sample::select(vec!["mse", "r2"]),
        partition in prop::option::of(prop::sample::select(vec!["val", "test"])),
    ) {
        let dir = workspace(&files, false);
        let all = load(dir.path());
        let ws = Workspace::open(dir.path()).unwrap();
        let engine = QueryEngine::new(&ws);
        let mut f = Filters::default().with("metric", [metric]).unwrap();
        if let Some(p) = partition {
            f = f.with("partition", [p]).unwrap();
        }
        let dir_m = if metric == "mse" { Direction::Minimize } else { Direction::Maximize };
        let top = engine.top(&TopQuery { filters: f.clone(), k, direction: None, score: "val_score".into() }).unwrap();
        let mut cand: Vec<&Row> = all.iter().filter(|r| matches(&f, r) && r.2.val_score.is_some_and(f64::is_finite)).collect();
        cand.sort_by(|a, b| dir_m.rank_key(a.2.val_score.unwrap()).total_cmp(&dir_m.rank_key(b.2.val_score.unwrap())).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        // One entry per model instance (issue 29): the best row of each
        // (dataset, config, model, fold).
        let mut seen = BTreeSet::new();
        cand.retain(|r| seen.insert((r.0.clone(), r.2.config_name.clone(), r.2.model_name.clone(), r.2.fold_id.clone())));
        let want: Vec<(Option<String>, Option<f64>)> = cand.iter().take(k).map(|r| (r.2.id.clone(), r.2.val_score)).collect();
        let got: Vec<(Option<String>, Option<f64>)> = top.records.iter().map(|e| (e.id.clone(), e.val_score)).collect();
        prop_assert_eq!(&got, &want);
        // Scanned (k beyond the footers' lists) and through a cache, three
        // times: the same rows.
        let cache = std::sync::Arc::new(n4a::query::ColumnCache::new(64 << 20));
        let cached = QueryEngine::new(&ws).with_column_cache(cache);
        let deep = TopQuery { filters: f.clone(), k: k + 11, direction: None, score: "val_score".into() };
        let want_deep: Vec<(Option<String>, Option<f64>)> = cand.iter().take(k + 11).map(|r| (r.2.id.clone(), r.2.val_score)).collect();
        for _ in 0..3 {
            let t = cached.top(&deep).unwrap();
            let got: Vec<(Option<String>, Option<f64>)> = t.records.iter().map(|e| (e.id.clone(), e.val_score)).collect();
            prop_assert_eq!(&got, &want_deep);
        }
        if k <= 10 && !cand.is_empty() && partition == Some("val") {
            prop_assert_eq!(top.served_by, ServedBy::Footers, "within the stored k the footers answer");
        }
        // Group by model over the same rows, scanned (and through the
        // cache, twice: the same groups).
        let gq = GroupQuery { filters: f.clone(), key: GroupKey::Model, score: "val_score".into(), count_and_mean_only: false, direction: None };
        let g = engine.group(&gq).unwrap();
        for _ in 0..2 {
            prop_assert_eq!(&cached.group(&gq).unwrap().groups, &g.groups);
        }
        let mut keys: Vec<&str> = all.iter().filter(|r| matches(&f, r)).filter_map(|r| r.2.model_name.as_deref()).collect();
        keys.sort();
        keys.dedup();
        prop_assert_eq!(g.groups.len(), keys.len());
        for (grp, key) in g.groups.iter().zip(&keys) {
            let rows: Vec<&Row> = all.iter().filter(|r| matches(&f, r) && r.2.model_name.as_deref() == Some(*key)).collect();
            let vals: Vec<f64> = rows.iter().filter_map(|r| r.2.val_score).filter(|v| v.is_finite()).collect();
            prop_assert_eq!(grp.key.as_deref(), Some(*key));
            prop_assert_eq!(grp.count, rows.len() as u64);
            let mean = (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64);
            prop_assert!(crate::util::close_opt(grp.mean, mean));
            let best = vals.iter().copied().min_by(|a, b| dir_m.rank_key(*a).total_cmp(&dir_m.rank_key(*b)));
            prop_assert_eq!(grp.best, best);
        }
    }
}

#[test]
fn string_filters_are_decided_per_dictionary_value_and_only_their_columns_are_read() {
    let row = Prediction {
        val_score: Some(1.0),
        partition: Some("val".into()),
        ..Default::default()
    };
    let dir = workspace(&[vec![row]], true);
    let ws = Workspace::open(dir.path()).unwrap();
    let f = Filters::default()
        .with("partition", ["val"])
        .unwrap()
        .with_where("val_score>=0.5")
        .unwrap();
    let plan = QueryEngine::new(&ws).explain(&f).unwrap();
    assert!(
        plan.contains("columns read: partition, val_score\n"),
        "{plan}"
    );
    assert!(
        plan.contains("filter partition in [\"val\"]: once per dictionary value"),
        "{plan}"
    );
    assert_eq!(plan.matches("  file ").count(), 2, "{plan}");
}

/// Issue 11: a sorted, filtered page reads only the page's rows whole
/// (the filter and sort columns of every row, every column of `limit`).
#[test]
fn issue_11_a_page_materialises_only_its_own_rows() {
    let files: Vec<Vec<Prediction>> = (0..3)
        .map(|f| {
            (0..400)
                .map(|i| Prediction {
                    model_name: Some(if i % 3 == 0 { "PLS" } else { "RF" }.into()),
                    partition: Some(["train", "val", "test"][i % 3].into()),
                    val_score: Some(((i * 37 + f * 11) % 101) as f64 / 7.0),
                    ..Default::default()
                })
                .collect()
        })
        .collect();
    let dir = workspace(&files, false);
    let all = load(dir.path());
    let ws = Workspace::open(dir.path()).unwrap();
    let engine = QueryEngine::new(&ws);
    let mut read = 0;
    for (offset, limit, desc) in [(0, 5, false), (17, 9, true), (390, 20, false)] {
        let q = PageQuery {
            filters: Filters::default().with("partition", ["val"]).unwrap(),
            columns: None,
            sort: Some(Sort {
                column: "val_score".into(),
                descending: desc,
            }),
            offset,
            limit,
        };
        let page = engine.page(&q).unwrap();
        let (want, total) = oracle_page(&all, &q);
        assert_eq!(page.total, total);
        assert_eq!(page.records.len(), want.len());
        read += want.len();
        assert_eq!(engine.rows_materialised(), read, "offset {offset}");
    }
}

/// Files nirs4all wrote (pyarrow, one row group, 1.0 footers): pages, top-k
/// and group-bys equal the oracle over the same rows.
#[test]
fn nirs4all_files_answer_as_the_oracle() {
    let dir = fixture("nirs4all-1.0-generated");
    let all = load(&dir);
    assert!(all.len() > 100, "{}", all.len());
    let ws = Workspace::open(&dir).unwrap().with_summaries(false);
    let engine = QueryEngine::new(&ws);
    for (sort, desc, offset) in [
        ("val_score", false, 0),
        ("test_score", true, 7),
        ("model_name", false, 3),
    ] {
        let q = PageQuery {
            filters: Filters::default()
                .with("partition", ["val", "test"])
                .unwrap(),
            columns: None,
            sort: Some(Sort {
                column: sort.into(),
                descending: desc,
            }),
            offset,
            limit: 25,
        };
        let page = engine.page(&q).unwrap();
        let (want, total) = oracle_page(&all, &q);
        assert_eq!(page.total, total, "{sort}");
        let got: Vec<String> = page
            .records
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        let want = oracle_ids(&all, &want);
        assert_eq!(got, want, "{sort}");
    }
    // Group by config: one grouping per metric and partition (issue 29),
    // each equal to the oracle over its rows, best by its metric's
    // direction.
    let splits = engine
        .group_by_metric(&GroupQuery {
            filters: Filters::default(),
            key: GroupKey::Config,
            score: "val_score".into(),
            count_and_mean_only: false,
            direction: None,
        })
        .unwrap();
    let splits = splits.groupings;
    let metrics: BTreeSet<&str> = all.iter().filter_map(|r| r.2.metric.as_deref()).collect();
    assert!(metrics.len() > 1, "the fixture mixes metrics: {metrics:?}");
    let mut covered = 0;
    for (split, g) in &splits {
        let rows: Vec<&Row> = all
            .iter()
            .filter(|r| r.2.metric == split.metric && r.2.partition == split.partition)
            .collect();
        covered += rows.len();
        let dir = n4a::metric::builtin_direction(split.metric.as_deref().unwrap()).unwrap();
        assert_eq!(g.direction, Some(dir));
        let mut keys: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.2.config_name.as_deref())
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(g.groups.len(), keys.len(), "{split:?}");
        for (grp, key) in g.groups.iter().zip(&keys) {
            let vals: Vec<f64> = rows
                .iter()
                .filter(|r| r.2.config_name.as_deref() == Some(*key))
                .filter_map(|r| r.2.val_score)
                .filter(|v| v.is_finite())
                .collect();
            assert_eq!(grp.key.as_deref(), Some(*key));
            let best = vals.iter().copied().reduce(|a, b| {
                if dir.rank_key(b) < dir.rank_key(a) {
                    b
                } else {
                    a
                }
            });
            assert_eq!(grp.best, best);
            assert_eq!(grp.min, vals.iter().copied().reduce(f64::min));
        }
    }
    assert_eq!(covered, all.len(), "every row in one grouping");
}

#[test]
fn footer_answered_queries_read_no_row() {
    // Three model instances (one fold each), one val row each.
    let dir = workspace(
        &[(0..3)
            .map(|i| Prediction {
                val_score: Some(1.0),
                partition: Some("val".into()),
                model_name: Some("PLS".into()),
                fold_id: Some(i.to_string()),
                ..Default::default()
            })
            .collect()],
        false,
    );
    let ws = Workspace::open(dir.path()).unwrap();
    let e = QueryEngine::new(&ws);
    let count = e
        .page(&PageQuery {
            filters: Filters::default().with("partition", ["val"]).unwrap(),
            limit: 0,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((count.total, count.served_by), (3, ServedBy::Footers));
    let top = e
        .top(&TopQuery {
            filters: Filters::default(),
            k: 2,
            direction: None,
            score: "val_score".into(),
        })
        .unwrap();
    assert_eq!((top.records.len(), top.served_by), (2, ServedBy::Footers));
    let g = e
        .group(&GroupQuery {
            filters: Filters::default(),
            key: GroupKey::Model,
            score: "val_score".into(),
            count_and_mean_only: true,
            direction: None,
        })
        .unwrap();
    assert_eq!(g.served_by, ServedBy::Footers);
    assert_eq!((g.groups[0].count, g.groups[0].mean), (3, Some(1.0)));
    assert_eq!(e.files_scanned(), 0, "no file was scanned");
    // A file pruned by its facets is not opened either.
    let none = e
        .page(&PageQuery {
            filters: Filters::default().with("model_name", ["Ridge"]).unwrap(),
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (none.total, none.served_by, none.provenance.files_pruned),
        (0, ServedBy::Pruned, 1)
    );
    assert_eq!(e.files_scanned(), 0);
}

/// Issue 29: a ranking never mixes metrics, even with a forced direction
/// (an `mse` of 0.1 and an `r2` of 0.9 are not comparable); one list per
/// metric is what such a workspace gets, each by its own direction.
#[test]
fn top_k_refuses_to_mix_metrics_and_ranks_each_on_its_own() {
    let rows = vec![
        Prediction {
            val_score: Some(1.0),
            ..Default::default()
        },
        Prediction {
            val_score: Some(2.0),
            ..Default::default()
        },
    ];
    let dir = workspace(&[rows.clone(), rows], false);
    let ws = Workspace::open(dir.path()).unwrap();
    let e = QueryEngine::new(&ws);
    let q = TopQuery {
        filters: Filters::default(),
        k: 3,
        direction: None,
        score: "val_score".into(),
    };
    let err = e.top(&q).unwrap_err().to_string();
    assert!(
        err.contains("mse: minimize") && err.contains("r2: maximize"),
        "{err}"
    );
    let forced = TopQuery {
        direction: Some(Direction::Maximize),
        ..q.clone()
    };
    assert!(
        e.top(&forced).is_err(),
        "a direction does not make metrics comparable"
    );
    let lists = e.top_by_metric(&q).unwrap();
    let got: Vec<(Option<String>, Vec<Option<f64>>)> = lists
        .iter()
        .map(|(m, t)| (m.clone(), t.records.iter().map(|r| r.val_score).collect()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some("mse".to_string()), vec![Some(1.0), Some(2.0)]),
            (Some("r2".to_string()), vec![Some(2.0), Some(1.0)]),
        ]
    );
}

#[test]
fn records_parse_json_columns_and_send_nan_as_null() {
    let p = Prediction {
        val_score: Some(f64::NAN),
        best_params: Some("{\"n_components\": 8}".into()),
        scores: Some("{\"val\": {\"mse\": NaN}}".into()),
        ..Default::default()
    };
    let dir = workspace(&[vec![p]], false);
    let ws = Workspace::open(dir.path()).unwrap();
    let page = QueryEngine::new(&ws)
        .page(&PageQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let r = &page.records[0];
    assert!(r["val_score"].is_null());
    assert_eq!(r["best_params"]["n_components"], 8);
    assert!(r["scores"]["val"]["mse"].is_null());
    assert_eq!(r["dataset"], "d0");
}

#[test]
fn a_bad_file_is_reported_not_fatal() {
    let dir = workspace(
        &[vec![Prediction {
            val_score: Some(1.0),
            ..Default::default()
        }]],
        false,
    );
    std::fs::copy(
        fixture("mistyped.meta.parquet"),
        dir.path().join("mistyped.meta.parquet"),
    )
    .unwrap();
    std::fs::copy(
        fixture("truncated.meta.parquet"),
        dir.path().join("truncated.meta.parquet"),
    )
    .unwrap();
    let ws = Workspace::open(dir.path()).unwrap();
    let page = QueryEngine::new(&ws)
        .page(&PageQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.total, 1);
    let kinds: Vec<&str> = page
        .provenance
        .errors
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["parquet", "schema"], "{:?}", page.provenance.errors);
}

/// Issue 11: the filter vocabulary is one list; every field in it is
/// accepted by `Filters`, reads a contract column, and has distinct names.
#[test]
fn issue_11_filter_fields_are_one_consistent_list() {
    use n4a::query::filter::FIELDS;
    let mut params = std::collections::BTreeSet::new();
    let mut flags = std::collections::BTreeSet::new();
    for f in FIELDS {
        Filters::default().with(f.name, ["x"]).unwrap();
        assert!(
            f.column == "dataset" || n4a::schema::COLUMNS.iter().any(|(c, _)| *c == f.column),
            "{f:?}"
        );
        assert!(params.insert(f.param) && flags.insert(f.flag), "{f:?}");
        assert_eq!(f.flag, f.param.replace('_', "-"));
    }
    assert!(Filters::default().with("model_class", ["x"]).is_err());
}

/// Issue 11: the column cache answers repeated queries from memory, equal
/// to the oracle, and a file rewritten under it (an append) is read again,
/// never answered from its old columns; a tiny budget keeps answers right.
#[test]
fn issue_11_column_cache_answers_from_memory_and_sees_a_changed_file() {
    use n4a::query::ColumnCache;
    use std::sync::Arc;
    let rows = |seed: usize| -> Vec<Prediction> {
        (0..120)
            .map(|i| Prediction {
                model_name: Some(["PLS", "RF"][i % 2].into()),
                partition: Some(["train", "val", "test"][i % 3].into()),
                val_score: Some(((i * 13 + seed) % 50) as f64 / 4.0),
                ..Default::default()
            })
            .collect()
    };
    let dir = workspace(&[rows(1), rows(2)], false);
    let cache = Arc::new(ColumnCache::new(64 << 20));
    let q = PageQuery {
        filters: Filters::default().with("partition", ["val"]).unwrap(),
        columns: None,
        sort: Some(Sort {
            column: "val_score".into(),
            descending: false,
        }),
        offset: 3,
        limit: 7,
    };
    let ids = |p: &n4a::query::Page| -> Vec<String> {
        p.records
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let want = |dir: &std::path::Path| {
        let all = load(dir);
        let (w, total) = oracle_page(&all, &q);
        let ids = oracle_ids(&all, &w);
        (ids, total)
    };
    let ws = Workspace::open(dir.path()).unwrap();
    let first = QueryEngine::new(&ws)
        .with_column_cache(cache.clone())
        .page(&q)
        .unwrap();
    let misses = cache.stats().misses;
    let second = QueryEngine::new(&ws)
        .with_column_cache(cache.clone())
        .page(&q)
        .unwrap();
    assert_eq!(ids(&first), ids(&second));
    assert_eq!((ids(&first), first.total), want(dir.path()));
    assert_eq!(
        cache.stats().misses,
        misses,
        "the second query read no column"
    );
    assert!(cache.stats().hits > 0);
    // Asked again: each file's sorted rows and the page's records come
    // from the cache, and the answer is the same.
    let again = QueryEngine::new(&ws)
        .with_column_cache(cache.clone())
        .page(&q)
        .unwrap();
    assert_eq!(ids(&again), ids(&first));
    let held = cache.stats();
    assert!(held.derived > 0 && held.rows > 0, "{held:?}");
    // By metric: d0 holds the mse rows, d1 the r2 rows.
    let gq = GroupQuery {
        filters: Filters::default(),
        key: GroupKey::Metric,
        score: "val_score".into(),
        count_and_mean_only: false,
        direction: None,
    };
    let groups_before = QueryEngine::new(&ws)
        .with_column_cache(cache.clone())
        .group(&gq)
        .unwrap();
    assert_eq!(groups_before.groups[0].count, 120);
    // Each metric's best by its own direction: mse lowest, r2 highest.
    let g = &groups_before.groups;
    assert_eq!((g[0].best, g[1].best), (g[0].min, g[1].max));
    assert!(g[0].min < g[0].max && g[1].min < g[1].max);
    // By metric, no row filter: every file's stored aggregates (1.5).
    assert_eq!(groups_before.served_by, ServedBy::Footers);
    // Append rows with better scores to d0: the cached columns, sorted
    // rows, records and groups are all stale.
    let mut w = PredictionWriter::append(dir.path(), "d0", WriterOptions::default()).unwrap();
    for (j, mut r) in rows(3).into_iter().enumerate() {
        r.dataset_name = Some("d0".into());
        r.id = Some(format!("ffff{j:012x}"));
        r.metric = Some("mse".into());
        r.val_score = r.val_score.map(|v| v - 100.0);
        w.write(&r).unwrap();
    }
    w.finish().unwrap();
    let third = QueryEngine::new(&ws)
        .with_column_cache(cache.clone())
        .page(&q)
        .unwrap();
    assert_eq!((ids(&third), third.total), want(dir.path()));
    assert!(
        ids(&third).iter().all(|i| i.starts_with("ffff")),
        "{:?}",
        ids(&third)
    );
    let groups_after = QueryEngine::new(&ws)
        .with_column_cache(cache.clone())
        .group(&gq)
        .unwrap();
    assert_eq!(
        groups_after.groups[0].count, 240,
        "d0 has its appended rows"
    );
    assert_eq!(groups_after.groups[1], groups_before.groups[1]);
    // A budget too small for any column: answers are still right.
    let tiny = Arc::new(ColumnCache::new(16));
    let p = QueryEngine::new(&ws)
        .with_column_cache(tiny.clone())
        .page(&q)
        .unwrap();
    assert_eq!(ids(&p), ids(&third));
    assert_eq!(tiny.stats().columns, 0);
    assert!(tiny.stats().bytes <= 16);
}

#[test]
fn issue_11_deep_pages_from_cached_sorted_rows_equal_the_oracle() {
    // Three files whose val rows all reach past the offset: every file is
    // asked, so the third query on merges each file's kept sorted rows.
    let rows = |seed: usize| -> Vec<Prediction> {
        (0..240)
            .map(|i| Prediction {
                model_name: Some(["PLS", "RF", "SVR"][i % 3].into()),
                partition: Some(["val", "test"][i % 2].into()),
                // Ties across files and within one, and a few nulls.
                val_score: (i % 17 != 0).then(|| ((i * 7 + seed) % 23) as f64 / 2.0),
                test_score: Some(((i * 5 + seed) % 31) as f64),
                ..Default::default()
            })
            .collect()
    };
    let dir = workspace(&[rows(1), rows(2), rows(3)], false);
    let all = load(dir.path());
    let ws = Workspace::open(dir.path()).unwrap();
    let cache = std::sync::Arc::new(n4a::query::ColumnCache::new(64 << 20));
    for (column, descending, offset) in [
        ("val_score", false, 150),
        ("val_score", true, 170),
        ("test_score", true, 0),
    ] {
        let q = PageQuery {
            filters: Filters::default().with("partition", ["val"]).unwrap(),
            columns: None,
            sort: Some(Sort {
                column: column.into(),
                descending,
            }),
            offset,
            limit: 40,
        };
        cached_pages_equal_the_oracle(&ws, &cache, &all, &q, "");
    }
    // Top-k the same way (ranked by direction, ties in file order), one
    // metric: rankings never mix metrics.
    let f = Filters::default()
        .with("partition", ["val"])
        .unwrap()
        .with("metric", ["mse"])
        .unwrap();
    let tq = TopQuery {
        filters: f.clone(),
        k: 100,
        direction: Some(Direction::Minimize),
        score: "val_score".into(),
    };
    let plain = QueryEngine::new(&ws).top(&tq).unwrap();
    for _ in 0..3 {
        let t = QueryEngine::new(&ws)
            .with_column_cache(cache.clone())
            .top(&tq)
            .unwrap();
        assert_eq!(
            serde_json::to_value(&t.records).unwrap(),
            serde_json::to_value(&plain.records).unwrap()
        );
    }
    assert!(cache.stats().derived > 0);
}

#[test]
fn issue_33_a_deep_page_from_the_workspace_order_equals_the_oracle_and_follows_a_changed_file() {
    // Deep enough (offset + limit past a quarter of the matching rows)
    // that the server's path builds the whole workspace's order once and
    // reads every later page off it; a file that changes makes a new one.
    let rows = |seed: usize, n: usize| -> Vec<Prediction> {
        (0..n)
            .map(|i| Prediction {
                model_name: Some(["PLS", "RF", "SVR"][i % 3].into()),
                partition: Some(["val", "test"][i % 2].into()),
                val_score: (i % 19 != 0).then(|| ((i * 7 + seed) % 41) as f64 / 2.0),
                ..Default::default()
            })
            .collect()
    };
    let dir = workspace(&[rows(1, 300), rows(2, 300), rows(3, 300)], false);
    let ws = Workspace::open(dir.path()).unwrap();
    let cache = std::sync::Arc::new(n4a::query::ColumnCache::new(64 << 20));
    let page = |offset: usize, descending: bool| PageQuery {
        filters: Filters::default().with("partition", ["val"]).unwrap(),
        columns: None,
        sort: Some(Sort {
            column: "val_score".into(),
            descending,
        }),
        offset,
        limit: 25,
    };
    let check = |label: &str| {
        let all = load(dir.path());
        for (offset, descending) in [
            (0, false),
            (120, false),
            (300, true),
            (430, false),
            (449, false),
        ] {
            // Three rounds: noted, built, then read off the held order.
            cached_pages_equal_the_oracle(&ws, &cache, &all, &page(offset, descending), label);
        }
    };
    check("as written");
    // New rows in d1 whose scores fall among the others: an order kept
    // from before would put the wrong rows on every deep page.
    let mut w = PredictionWriter::append(dir.path(), "d1", WriterOptions::default()).unwrap();
    for (j, mut r) in rows(5, 200).into_iter().enumerate() {
        r.dataset_name = Some("d1".into());
        r.id = Some(format!("eeee{j:012x}"));
        r.metric = Some("r2".into());
        r.val_score = r.val_score.map(|v| v + 0.25);
        w.write(&r).unwrap();
    }
    w.finish().unwrap();
    check("after d1 grew");
}

/// One group as the oracle computes it: key, count, mean, min, max, best.
type OracleGroup = (
    Option<String>,
    u64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

/// The oracle of one group-by: rows matching `f`, grouped by `key` (the
/// file's dataset for `Dataset`), each group's count, and mean, min, max
/// and best by `dir` over its finite `score_name` values; groups in key
/// order, null last.
fn oracle_groups(
    all: &[Row],
    f: &Filters,
    key: GroupKey,
    score_name: &str,
    dir: Direction,
) -> Vec<OracleGroup> {
    let mut by: std::collections::BTreeMap<(bool, Option<String>), Vec<Option<f64>>> =
        std::collections::BTreeMap::new();
    for r in all.iter().filter(|r| matches(f, r)) {
        let k = match key {
            GroupKey::Dataset => Some(r.0.clone()),
            GroupKey::Model => r.2.model_name.clone(),
            GroupKey::Fold => r.2.fold_id.clone(),
            GroupKey::Partition => r.2.partition.clone(),
            GroupKey::Metric => r.2.metric.clone(),
            GroupKey::Config => r.2.config_name.clone(),
        };
        by.entry((k.is_none(), k))
            .or_default()
            .push(score(&r.2, score_name));
    }
    by.into_iter()
        .map(|((_, k), v)| {
            let fin: Vec<f64> = v
                .iter()
                .flatten()
                .copied()
                .filter(|x| x.is_finite())
                .collect();
            let mean = (!fin.is_empty()).then(|| fin.iter().sum::<f64>() / fin.len() as f64);
            let min = fin.iter().copied().reduce(f64::min);
            let max = fin.iter().copied().reduce(f64::max);
            let best = match dir {
                Direction::Minimize => min,
                Direction::Maximize => max,
                Direction::TowardZero => {
                    fin.iter()
                        .copied()
                        .reduce(|a, b| if b.abs() < a.abs() { b } else { a })
                }
            };
            (k, v.len() as u64, mean, min, max, best)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Issue 33: group-bys by model, fold, dataset, partition and metric
    /// within one metric and partition are answered from the files'
    /// stored aggregates (format 1.5) as the oracle computes them from
    /// the rows; and still after a file is appended to (its aggregates
    /// continue) and when a file of before 1.5 (no aggregates: scanned)
    /// is among them.
    #[test]
    fn issue_33_group_bys_from_stored_aggregates_equal_the_oracle(
        files in prop::collection::vec(prop::collection::vec(row_strategy(), 0..25), 1..4),
        more in prop::collection::vec(row_strategy(), 1..15),
        nulls in any::<bool>(),
        with_1_4 in any::<bool>(),
        metric in prop::sample::select(vec!["mse", "r2"]),
        partition in prop::sample::select(vec!["val", "test"]),
        score_name in prop::sample::select(vec!["val_score", "test_score"]),
    ) {
        // Some rows without a model or fold: their own (null) group.
        let files: Vec<Vec<Prediction>> = files.into_iter().map(|rows| rows.into_iter().enumerate().map(|(i, mut r)| {
            if nulls && i % 5 == 0 { r.model_name = None; }
            if nulls && i % 7 == 0 { r.fold_id = None; }
            r
        }).collect()).collect();
        let dir = workspace(&files, false);
        if with_1_4 {
            std::fs::copy(fixture("n4a_1_4.meta.parquet"), dir.path().join("two_metrics.meta.parquet")).unwrap();
        }
        let direction = if metric == "mse" { Direction::Minimize } else { Direction::Maximize };
        let f = Filters::default().with("metric", [metric]).unwrap().with("partition", [partition]).unwrap();
        for round in 0..2 {
            if round == 1 {
                // d0 grows: its stored aggregates continue from its footer.
                let mut w = PredictionWriter::append(dir.path(), "d0", WriterOptions::default()).unwrap();
                for (j, r) in more.iter().enumerate() {
                    let mut r = r.clone();
                    r.dataset_name = Some("d0".into());
                    r.id = Some(format!("eeee{j:012x}"));
                    r.metric = Some("mse".into());
                    w.write(&r).unwrap();
                }
                w.finish().unwrap();
            }
            let all = load(dir.path());
            let ws = Workspace::open(dir.path()).unwrap();
            let engine = QueryEngine::new(&ws);
            for key in [GroupKey::Model, GroupKey::Fold, GroupKey::Dataset, GroupKey::Partition, GroupKey::Metric] {
                let q = GroupQuery { filters: f.clone(), key, score: score_name.into(), count_and_mean_only: false, direction: None };
                let g = engine.group(&q).unwrap();
                let want = oracle_groups(&all, &f, key, score_name, direction);
                prop_assert_eq!(g.groups.len(), want.len(), "{:?} round {}", key, round);
                for (grp, w) in g.groups.iter().zip(&want) {
                    prop_assert_eq!(&grp.key, &w.0, "{:?}", key);
                    prop_assert_eq!(grp.count, w.1, "{:?} {:?}", key, grp.key);
                    prop_assert!(crate::util::close_opt(grp.mean, w.2), "{:?} {:?}: {:?} {:?}", key, grp.key, grp.mean, w.2);
                    prop_assert_eq!((grp.min, grp.max, grp.best), (w.3, w.4, w.5), "{:?} {:?}", key, grp.key);
                }
                // Every file written by this build answers from its
                // aggregates; a 1.4 file holding the metric is read.
                let old_has_rows = with_1_4 && all.iter().any(|r| r.0 == "two_metrics" && matches(&f, r));
                if !g.groups.is_empty() && !old_has_rows {
                    prop_assert_eq!(g.served_by, ServedBy::Footers, "{:?}", key);
                }
            }
        }
    }
}
