//! Issue 12: faults at volume, with real processes. Slow, so `#[ignore]`d
//! out of the default run; run them with
//!
//! ```sh
//! cargo test --release --test it faults:: -- --ignored --test-threads 1 --nocapture
//! ```
//!
//! (`N4A_FAULT_RUNS` sets the kill count, default 100; `N4A_FUZZ_FILES`
//! the mutated files, default 3000.) Each prints its counts.
//!
//! - a writer appending with arrays, `refresh`, and an `ingest` of several
//!   datasets, each SIGKILLed at a random moment (seeded) 100 times: every
//!   time each pair is the old one or the new one, the summary counts the
//!   rows, every `*_id` resolves in the arrays file, and the next write
//!   leaves no temporary file;
//! - four appending processes, a refresh loop and readers at once: no row
//!   lost, every total read is a committed state, no stale summary;
//! - thousands of seeded mutations of footers and data pages: every reader
//!   path answers or names the file.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use n4a::generate::dataset_rows;
use n4a::rows;
use n4a::writer::{PredictionWriter, WriterOptions};

fn n4a() -> Command {
    Command::new(env!("CARGO_BIN_EXE_n4a"))
}

fn runs(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A seeded generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// JSON Lines of `n` rows of dataset `index` with distinct ids (prefix
/// `tag`), arrays attached when `arrays`.
fn jsonl(
    f: &mut impl Write,
    index: usize,
    n: usize,
    seed: u64,
    tag: &str,
    arrays: bool,
) -> Vec<String> {
    let (_, rows) = dataset_rows(index, n, seed, arrays);
    let mut ids = Vec::new();
    for mut p in rows {
        let id = format!("{tag}{:010x}", ids.len());
        p.id = Some(id.clone());
        ids.push(id);
        serde_json::to_writer(&mut *f, &p).unwrap();
        f.write_all(b"\n").unwrap();
    }
    ids
}

fn temp_files(ws: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(ws)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".n4a-tmp-"))
        .collect()
}

/// The pair of `dataset` is whole: its rows read, the summary counts them,
/// and every array id resolves. Returns the row count.
fn check_pair(ws: &Path, dataset: &str) -> usize {
    let meta = ws.join(format!("{dataset}.meta.parquet"));
    let got = rows::read_predictions(&meta).unwrap_or_else(|e| panic!("{e}"));
    let s = n4a::footer::Footer::read(&meta)
        .unwrap()
        .summary()
        .unwrap()
        .unwrap();
    assert_eq!(
        s.total_predictions as usize,
        got.len(),
        "{dataset}: summary counts the rows"
    );
    let ids: Vec<&str> = got
        .iter()
        .flat_map(|p| [p.y_true_id.as_deref(), p.y_pred_id.as_deref()])
        .flatten()
        .collect();
    if !ids.is_empty() {
        let arrays = ws.join(format!("{dataset}.arrays.parquet"));
        let found = n4a::rows::arrays::read_arrays(&arrays, &ids).unwrap();
        let missing: Vec<&&str> = ids.iter().filter(|i| !found.contains_key(**i)).collect();
        assert!(
            missing.is_empty(),
            "{dataset}: {} array ids do not resolve",
            missing.len()
        );
    }
    got.len()
}

/// Kills `child` after `after`, or lets it finish; true when it was killed.
fn kill_after(mut child: std::process::Child, after: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if t0.elapsed() >= after {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// How long `cmd` takes when left alone.
fn duration_of(mut cmd: Command) -> Duration {
    let t0 = Instant::now();
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t0.elapsed()
}

fn ingest(ws: &Path, input: &Path) -> Command {
    let mut c = n4a();
    c.args([
        "ingest",
        ws.to_str().unwrap(),
        input.to_str().unwrap(),
        "--row-group-rows",
        "300",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

#[test]
#[ignore = "slow: run with --ignored (see the module docs)"]
fn faults_sigkill_while_appending_with_arrays() {
    let ws = tempfile::tempdir().unwrap();
    let (name, seed_rows) = dataset_rows(0, 300, 1, true);
    let mut w = PredictionWriter::create(ws.path(), &name, WriterOptions::default()).unwrap();
    seed_rows
        .into_iter()
        .for_each(|p| w.write_owned(p).unwrap());
    w.finish().unwrap();
    let batch = 1500;
    let input = ws.path().join("in.jsonl");
    let write_input = |run: usize| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        jsonl(
            &mut f,
            0,
            batch,
            100 + run as u64,
            &format!("r{run:04}"),
            true,
        );
    };
    // The time of one whole append, on a copy.
    write_input(0);
    let probe = tempfile::tempdir().unwrap();
    copy_parquet(ws.path(), probe.path());
    let full = duration_of(ingest(probe.path(), &input));
    let mut rng = Rng(12);
    let n = runs("N4A_FAULT_RUNS", 100);
    let (mut killed, mut rows) = (0, 300);
    for run in 0..n {
        write_input(run);
        let at = Duration::from_micros(rng.below(full.as_micros() as u64 * 12 / 10));
        killed += usize::from(kill_after(ingest(ws.path(), &input).spawn().unwrap(), at));
        let now = check_pair(ws.path(), &name);
        assert!(
            now == rows || now == rows + batch,
            "run {run}: {now} rows, was {rows}"
        );
        rows = now;
    }
    // The next write removes what killed writers left.
    let w = PredictionWriter::append(ws.path(), &name, WriterOptions::default()).unwrap();
    w.finish().unwrap();
    assert!(
        temp_files(ws.path()).is_empty(),
        "{:?}",
        temp_files(ws.path())
    );
    check_pair(ws.path(), &name);
    eprintln!(
        "append with arrays: {n} runs ({full:?} each when whole), {killed} killed mid-write, \
         {} finished, {rows} rows at the end",
        n - killed
    );
    assert!(killed >= n / 2, "most runs were killed ({killed} of {n})");
}

fn copy_parquet(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "parquet") {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
#[ignore = "slow: run with --ignored (see the module docs)"]
fn faults_sigkill_during_refresh() {
    // nirs4all 1.0 files: refresh recomputes and rewrites every footer.
    let made = tempfile::tempdir().unwrap();
    let opts = n4a::generate::GenOptions {
        datasets: 6,
        rows: 1500,
        ..Default::default()
    };
    let gen = n4a::generate::generate(made.path(), &opts).unwrap();
    let originals = tempfile::tempdir().unwrap();
    for d in &gen {
        let name = format!("{}.meta.parquet", d.name);
        crate::util::as_nirs4all_1_0(&made.path().join(&name), &originals.path().join(&name));
    }
    let want: Vec<(String, Vec<Option<String>>)> = gen
        .iter()
        .map(|d| {
            let p = originals.path().join(format!("{}.meta.parquet", d.name));
            (
                d.name.clone(),
                rows::read_predictions(&p)
                    .unwrap()
                    .into_iter()
                    .map(|r| r.id)
                    .collect(),
            )
        })
        .collect();
    let ws = tempfile::tempdir().unwrap();
    let refresh = |threads: &str| {
        let mut c = n4a();
        c.args(["refresh", ws.path().to_str().unwrap(), "--threads", threads])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    copy_parquet(originals.path(), ws.path());
    let full = duration_of(refresh("1"));
    let mut rng = Rng(13);
    let n = runs("N4A_FAULT_RUNS", 100);
    let (mut killed, mut rewritten) = (0, 0);
    for run in 0..n {
        copy_parquet(originals.path(), ws.path());
        let threads = if run % 2 == 0 { "1" } else { "0" };
        let at = Duration::from_micros(rng.below(full.as_micros() as u64 * 12 / 10));
        killed += usize::from(kill_after(refresh(threads).spawn().unwrap(), at));
        for (name, ids) in &want {
            let meta = ws.path().join(format!("{name}.meta.parquet"));
            let got: Vec<Option<String>> = rows::read_predictions(&meta)
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(
                &got, ids,
                "run {run}: {name}: the same rows, old footer or new"
            );
            let f = n4a::footer::Footer::read(&meta).unwrap();
            let s = f.summary().unwrap().unwrap();
            assert_eq!(s.total_predictions as usize, ids.len(), "run {run}: {name}");
            rewritten += usize::from(s.n4a_version != "1.0");
        }
    }
    // A whole refresh afterwards: everything current, nothing left over.
    let out = refresh("0").output().unwrap();
    assert!(out.status.success());
    assert!(
        temp_files(ws.path()).is_empty(),
        "{:?}",
        temp_files(ws.path())
    );
    let verify = n4a()
        .args(["refresh", ws.path().to_str().unwrap(), "--verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    eprintln!(
        "refresh: {n} runs ({full:?} each when whole), {killed} killed, {rewritten} of {} \
         footers found rewritten after a kill, every file whole",
        n * want.len()
    );
    assert!(killed >= n / 2, "most runs were killed ({killed} of {n})");
}

#[test]
#[ignore = "slow: run with --ignored (see the module docs)"]
fn faults_sigkill_during_a_multi_dataset_ingest() {
    let ws = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..3).map(|i| dataset_rows(i, 1, 1, false).0).collect();
    for (i, name) in names.iter().enumerate() {
        let (_, seed_rows) = dataset_rows(i, 200, 1, true);
        let mut w = PredictionWriter::create(ws.path(), name, WriterOptions::default()).unwrap();
        seed_rows
            .into_iter()
            .for_each(|p| w.write_owned(p).unwrap());
        w.finish().unwrap();
    }
    let batch = 700;
    let input = ws.path().join("in.jsonl");
    let write_input = |run: usize| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..3 {
            jsonl(
                &mut f,
                i,
                batch,
                300 + run as u64,
                &format!("m{run:04}{i}"),
                true,
            );
        }
    };
    write_input(0);
    let probe = tempfile::tempdir().unwrap();
    copy_parquet(ws.path(), probe.path());
    let full = duration_of(ingest(probe.path(), &input));
    let mut rng = Rng(14);
    let n = runs("N4A_FAULT_RUNS", 100);
    let mut counts = vec![200usize; 3];
    let (mut killed, mut partial) = (0, 0);
    for run in 0..n {
        write_input(run);
        let at = Duration::from_micros(rng.below(full.as_micros() as u64 * 12 / 10));
        killed += usize::from(kill_after(ingest(ws.path(), &input).spawn().unwrap(), at));
        let mut grew = 0;
        for (i, name) in names.iter().enumerate() {
            let now = check_pair(ws.path(), name);
            assert!(
                now == counts[i] || now == counts[i] + batch,
                "run {run}: {name}: {now} rows, was {}",
                counts[i]
            );
            grew += usize::from(now != counts[i]);
            counts[i] = now;
        }
        partial += usize::from(grew != 0 && grew != 3);
    }
    for name in &names {
        let w = PredictionWriter::append(ws.path(), name, WriterOptions::default()).unwrap();
        w.finish().unwrap();
    }
    assert!(
        temp_files(ws.path()).is_empty(),
        "{:?}",
        temp_files(ws.path())
    );
    eprintln!(
        "multi-dataset ingest: {n} runs ({full:?} each when whole), {killed} killed, {partial} \
         left some datasets appended and others not (each whole), rows {counts:?}"
    );
    assert!(killed >= n / 2, "most runs were killed ({killed} of {n})");
}

#[test]
#[ignore = "slow: run with --ignored (see the module docs)"]
fn faults_four_appenders_a_refresh_loop_and_readers() {
    let ws = tempfile::tempdir().unwrap();
    let (name, seed_rows) = dataset_rows(0, 500, 1, true);
    let mut w = PredictionWriter::create(ws.path(), &name, WriterOptions::default()).unwrap();
    seed_rows
        .into_iter()
        .for_each(|p| w.write_owned(p).unwrap());
    w.finish().unwrap();
    let (per, rounds) = (800, 3);
    let mut ids = HashSet::new();
    let mut inputs = Vec::new();
    for a in 0..4 {
        for r in 0..rounds {
            let p = ws.path().join(format!("a{a}r{r}.jsonl"));
            let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
            ids.extend(jsonl(
                &mut f,
                0,
                per,
                500 + (a * 10 + r) as u64,
                &format!("c{a}{r}"),
                a % 2 == 0,
            ));
            inputs.push((a, p));
        }
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let committed: HashSet<usize> = (0..=4 * rounds).map(|k| 500 + k * per).collect();
    let (reads, refreshes) = std::thread::scope(|s| {
        let appenders: Vec<_> = (0..4)
            .map(|a| {
                let mine: Vec<PathBuf> = inputs
                    .iter()
                    .filter(|(x, _)| *x == a)
                    .map(|(_, p)| p.clone())
                    .collect();
                let ws = ws.path();
                s.spawn(move || {
                    for p in mine {
                        let st = ingest(ws, &p).status().unwrap();
                        assert!(st.success(), "appender {a}");
                    }
                })
            })
            .collect();
        let refresher = s.spawn(|| {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let out = n4a()
                    .args(["refresh", ws.path().to_str().unwrap()])
                    .output()
                    .unwrap();
                // 0, or 1 when a file changed under it (left to its writer).
                assert!(
                    matches!(out.status.code(), Some(0 | 1)),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                n += 1;
            }
            n
        });
        let reader = s.spawn(|| {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for args in [&["query", "--limit", "0"][..], &["summary"][..]] {
                    let out = n4a()
                        .args(args)
                        .arg(ws.path())
                        .args(["--format", "json"])
                        .output()
                        .unwrap();
                    assert_eq!(
                        out.status.code(),
                        Some(0),
                        "{args:?}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                    let total = v["total"]
                        .as_u64()
                        .or(v["total_predictions"].as_u64())
                        .unwrap() as usize;
                    assert!(
                        committed.contains(&total),
                        "{args:?} read {total} rows: not a committed state"
                    );
                    n += 1;
                }
            }
            n
        });
        for a in appenders {
            a.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (reader.join().unwrap(), refresher.join().unwrap())
    });
    let got = rows::read_predictions(&ws.path().join(format!("{name}.meta.parquet"))).unwrap();
    assert_eq!(got.len(), 500 + 4 * rounds * per, "no row lost");
    let have: HashSet<String> = got.into_iter().filter_map(|p| p.id).collect();
    assert!(
        ids.iter().all(|i| have.contains(i)),
        "every appended id is there"
    );
    check_pair(ws.path(), &name);
    let verify = n4a()
        .args(["refresh", ws.path().to_str().unwrap(), "--verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "no stale summary: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    eprintln!(
        "concurrency: 4 appenders x {rounds} ingests of {per} rows, {refreshes} refreshes and \
         {reads} reads meanwhile; {} rows, none lost, every read a committed state",
        500 + 4 * rounds * per
    );
}

/// Every error a reader path gives for the mutated file names it.
fn names_it(msg: &str, file: &Path) {
    assert!(
        msg.contains(&*file.to_string_lossy()),
        "the error names the file: {msg}"
    );
}

#[test]
#[ignore = "slow: run with --ignored (see the module docs)"]
fn faults_mutated_footers_and_data_pages_never_hide_the_good_file() {
    use n4a::query::{Filters, GroupKey, GroupQuery, PageQuery, QueryEngine, Sort, TopQuery};
    use n4a::Workspace;
    // Sources: an n4a file with arrays, nirs4all's own pair, nirs4all's
    // classification file.
    let made = tempfile::tempdir().unwrap();
    let gen = n4a::generate::generate(
        made.path(),
        &n4a::generate::GenOptions {
            datasets: 2,
            rows: 400,
            ..Default::default()
        },
    )
    .unwrap();
    let sources: Vec<(PathBuf, PathBuf)> = vec![
        (
            gen[1].meta_path.clone(),
            made.path().join(format!("{}.arrays.parquet", gen[1].name)),
        ),
        (
            crate::util::fixture("corn_moisture.meta.parquet"),
            crate::util::fixture("corn_moisture.arrays.parquet"),
        ),
        (
            crate::util::fixture("grain_class.meta.parquet"),
            crate::util::fixture("grain_class.arrays.parquet"),
        ),
    ];
    let ws = tempfile::tempdir().unwrap();
    let good = format!("{}.meta.parquet", gen[0].name);
    std::fs::copy(&gen[0].meta_path, ws.path().join(&good)).unwrap();
    let good_rows = 400u64;
    let bad = ws.path().join("x.meta.parquet");
    let bad_arrays = ws.path().join("x.arrays.parquet");
    let n = runs("N4A_FUZZ_FILES", 3000);
    let mut rng = Rng(99);
    let (mut answered, mut named, mut truncated) = (0usize, 0usize, 0usize);
    for round in 0..n {
        let (meta_src, arrays_src) = &sources[round % sources.len()];
        let mutate_arrays = round % 5 == 4;
        let src = if mutate_arrays { arrays_src } else { meta_src };
        let mut bytes = std::fs::read(src).unwrap();
        let len = bytes.len() as u64;
        if round % 7 == 3 {
            bytes.truncate(rng.below(len) as usize);
            truncated += 1;
        } else {
            for _ in 0..1 + rng.below(8) {
                // Half in the data, half in the footer's last 64 KiB.
                let at = if rng.below(2) == 0 {
                    rng.below(len)
                } else {
                    len - 1 - rng.below(len.min(65_536))
                };
                bytes[at as usize] = rng.next() as u8;
            }
        }
        if mutate_arrays {
            std::fs::copy(meta_src, &bad).unwrap();
            std::fs::write(&bad_arrays, &bytes).unwrap();
        } else {
            std::fs::write(&bad, &bytes).unwrap();
            std::fs::copy(arrays_src, &bad_arrays).unwrap();
        }
        let w = Workspace::open(ws.path()).unwrap().with_cache(false);
        let s = w.summary().unwrap();
        assert!(
            s.total_predictions >= good_rows,
            "round {round}: the good file is summarised"
        );
        let e = QueryEngine::new(&w);
        let mut errors = Vec::new();
        let pages = [
            PageQuery {
                limit: 50,
                ..Default::default()
            },
            PageQuery {
                sort: Some(Sort {
                    column: "val_score".into(),
                    descending: true,
                }),
                limit: 10,
                ..Default::default()
            },
            PageQuery {
                filters: Filters::default().with_where("val_score > -1e300").unwrap(),
                limit: 2000,
                ..Default::default()
            },
        ];
        for (i, q) in pages.iter().enumerate() {
            let p = e
                .page(q)
                .unwrap_or_else(|err| panic!("round {round}: page {i}: {err}"));
            if i == 2 {
                let from_good = p
                    .records
                    .iter()
                    .filter(|r| r["dataset"] == gen[0].name.as_str())
                    .count();
                assert_eq!(
                    from_good as u64, good_rows,
                    "round {round}: the good file's rows are there"
                );
            }
            errors.extend(p.provenance.errors);
        }
        let t = e
            .top(&TopQuery {
                filters: Filters::default(),
                k: 20,
                direction: Some(n4a::metric::Direction::Maximize),
                score: "val_score".into(),
            })
            .unwrap_or_else(|err| panic!("round {round}: top: {err}"));
        errors.extend(t.provenance.errors);
        let g = e
            .group(&GroupQuery {
                filters: Filters::default(),
                key: GroupKey::Model,
                score: "val_score".into(),
                count_and_mean_only: false,
                direction: Some(n4a::metric::Direction::Maximize),
            })
            .unwrap_or_else(|err| panic!("round {round}: group: {err}"));
        assert!(
            g.groups.iter().map(|g| g.count).sum::<u64>() >= good_rows,
            "round {round}"
        );
        errors.extend(g.provenance.errors);
        for fe in &errors {
            assert!(
                fe.path.ends_with("x.meta.parquet"),
                "round {round}: only the mutated file fails: {fe:?}"
            );
            names_it(&fe.error, &bad);
        }
        // The row and arrays readers, and a verifying refresh.
        match rows::read_predictions(&bad) {
            Ok(rs) => {
                let ids: Vec<&str> = rs.iter().filter_map(|r| r.y_true_id.as_deref()).collect();
                if let Err(err) = n4a::rows::arrays::read_arrays(&bad_arrays, &ids) {
                    names_it(&err.to_string(), &bad_arrays);
                }
            }
            Err(err) => names_it(&err.to_string(), &bad),
        }
        let report = n4a::refresh::refresh_workspace(
            ws.path(),
            &n4a::refresh::RefreshOptions {
                mode: n4a::refresh::Mode::Verify,
                write: false,
                threads: 1,
                recursive: false,
                summary: Default::default(),
                before_commit: None,
            },
            &|_, _| {},
        )
        .unwrap();
        for f in &report.files {
            let failed = matches!(f.status, n4a::refresh::Status::Failed);
            if f.path.ends_with("x.meta.parquet") {
                if failed {
                    names_it(f.reason.as_deref().unwrap_or(""), &bad);
                }
            } else {
                assert!(!failed, "round {round}: the good file verifies: {f:?}");
            }
        }
        if errors.is_empty() {
            answered += 1;
        } else {
            named += 1;
        }
    }
    eprintln!(
        "mutation fuzzing: {n} mutated files ({truncated} truncated, {} of them arrays files): \
         {answered} answered whole, {named} with the mutated file named in the answer's errors; \
         the good file answered every time, no panic",
        n / 5
    );
}
