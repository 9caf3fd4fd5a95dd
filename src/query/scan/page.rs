//! Sorted pages with totals: per file the count and the best rows
//! ([`file_hits`]), files visited best-bound first so that those that cannot
//! reach the page are only counted, ties inside the window broken by `id`,
//! then only the page's rows read whole.

use super::keys::{cmp_keys, total_order, Best, Key, KeySource, Order};
use super::sorted::{asked_before, merged_window, sorted_hits};
pub(super) use super::window::{window_of, FileHits, Packing, Ranking, Window};
use super::{
    file_error, filter_columns, float_at, float_col, known_meta, matching, read_cols, selection,
    Scanned,
};
use crate::error::Result;
use crate::metric::Direction;
use crate::query::cache::Record;
use crate::query::filter::Filters;
use crate::query::{Candidate, PageQuery};
use crate::schema::COLUMNS;
use crate::workspace::FileError;
use crate::workspace::Workspace;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// Files scanned between two cuts of the merged candidates.
pub(super) const FILES_AT_ONCE: usize = 8;

/// One file's total and candidates: at most `n` rows when `exact` (ties
/// by row), else the best `n` and every row tied with the `n`-th.
pub(super) fn file_hits(
    c: &Candidate,
    f: &Filters,
    order: Order<'_>,
    n: usize,
    exact: bool,
) -> Result<FileHits> {
    let mut names = filter_columns(f);
    match order {
        Order::Column { name, .. } if name != "dataset" => names.push(name),
        Order::Rank { score, .. } => names.push(score),
        _ => {}
    }
    let Some(b) = read_cols(c, &names)? else {
        return Ok(FileHits::default());
    };
    if !matches!(order, Order::File) && asked_before(c, f, order) {
        return sorted_hits(c, &b, f, order, n, exact);
    }
    let mut rows = matching(&b, f);
    if let Order::Rank { score, .. } = order {
        let a = float_col(&b, score);
        rows.retain(|&i| float_at(a, i as usize).is_some_and(f64::is_finite));
    }
    let total = rows.len() as u64;
    let desc = matches!(order, Order::Column { desc: true, .. });
    let src = KeySource::new(&b, order, &c.dataset);
    if n > 0 && src.is_numeric() {
        let mut best = Best::new(n, exact);
        for &i in &rows {
            best.offer(src.key(i as usize, desc).packed(desc), i);
        }
        return Ok(FileHits {
            total,
            packed: best.finish(),
            ..FileHits::default()
        });
    }
    let mut keyed: Vec<(Key<&str>, u32)> = if n == 0 {
        Vec::new()
    } else if matches!(order, Order::File) {
        rows.iter()
            .take(n)
            .map(|&i| (src.key(0, false), i))
            .collect()
    } else {
        rows.iter()
            .map(|&i| (src.key(i as usize, desc), i))
            .collect()
    };
    if keyed.len() > n && n > 0 {
        let by = |a: &(Key<&str>, u32), b: &(Key<&str>, u32)| {
            cmp_keys(&a.0, &b.0, desc).then(a.1.cmp(&b.1))
        };
        keyed.select_nth_unstable_by(n - 1, by);
        if exact {
            keyed.truncate(n);
        } else {
            let cut = keyed[n - 1].0.clone();
            let (head, tail) = keyed.split_at_mut(n);
            let mut kept: Vec<(Key<&str>, u32)> = head.to_vec();
            kept.extend(
                tail.iter()
                    .filter(|k| cmp_keys(&k.0, &cut, desc) == Ordering::Equal)
                    .cloned(),
            );
            keyed = kept;
        }
    }
    let kept = keyed
        .into_iter()
        .map(|(k, i)| {
            (
                Key {
                    class: k.class,
                    num: k.num,
                    s: k.s.map(Box::from),
                },
                u64::from(i),
            )
        })
        .collect();
    Ok(FileHits {
        total,
        kept,
        ..FileHits::default()
    })
}

/// The page's or top-k's rows in order: the candidates of every file
/// merged, ties on the key inside the window `[offset, offset + limit)`
/// broken by `id` (read for those rows only) when the order asks.
/// Returns `(file index, row)` pairs and the total.
pub(super) fn ranked(r: Ranking<'_>, late: &mut Vec<FileError>) -> Result<Scanned<Window>> {
    if let Some(w) = merged_window(r, late) {
        return w;
    }
    if let Some(layout) = Packing::of(r.cands, r.order) {
        return ranked_packed(r, &layout, late);
    }
    let (cands, desc) = (r.cands, matches!(r.order, Order::Column { desc: true, .. }));
    type Row = (Key<Box<str>>, usize, u64);
    ranked_by(
        r,
        late,
        |fi, h: FileHits, all: &mut Vec<Row>| {
            all.extend(h.kept.into_iter().map(|(k, r)| (k, fi, r)));
            all.extend(
                h.packed
                    .into_iter()
                    .map(|(k, r)| (Key::unpacked(k, desc), fi, u64::from(r))),
            );
        },
        |a: &Row, b: &Row| {
            cmp_keys(&a.0, &b.0, desc).then_with(|| {
                cands[a.1]
                    .dataset
                    .cmp(&cands[b.1].dataset)
                    .then(a.2.cmp(&b.2))
            })
        },
        |a: &Row, b: &Row| cmp_keys(&a.0, &b.0, desc) == Ordering::Equal,
        Row::clone,
    )
}

/// [`ranked`] over candidates held as `T`: each file's hits added to the
/// candidates by `take`, ordered by `by` (key, then dataset, then row),
/// `tied` when their keys are equal, and seen as `(key, file, row)` by
/// `row_of` (for the cut and the window).
///
/// Files a few at a time, the survivors cut back to the best `n` (and
/// their ties) after each batch: memory stays at a batch of files'
/// candidates plus `n`, however many files. Files whose score statistics
/// bound how good their rows can be go best first; once `n` candidates
/// are held, a file whose bound is worse than the `n`-th is only counted
/// (a page) or skipped (a top-k).
fn ranked_by<T: Clone>(
    r: Ranking<'_>,
    late: &mut Vec<FileError>,
    take: impl Fn(usize, FileHits, &mut Vec<T>),
    by: impl Fn(&T, &T) -> Ordering,
    tied: impl Fn(&T, &T) -> bool,
    row_of: impl Fn(&T) -> (Key<Box<str>>, usize, u64),
) -> Result<Scanned<Window>> {
    let Ranking {
        ws,
        cands,
        f,
        order,
        offset,
        limit,
    } = r;
    let n = offset.saturating_add(limit);
    let exact = !matches!(order, Order::Column { .. });
    let mut total = 0u64;
    let mut errors = Vec::new();
    let mut all: Vec<T> = Vec::new();
    let bounds = bounds(cands, order);
    let mut idx: Vec<usize> = (0..cands.len()).collect();
    if let Some(b) = &bounds {
        idx.sort_by(|x, y| cmp_keys(&b[*x], &b[*y], false));
    }
    let mut cut: Option<Key<Box<str>>> = None;
    // The first batch is small when files are bounded: the best-bound files
    // set the cut early, and the rest are mostly counted or skipped.
    let first = if bounds.is_some() { 2 } else { FILES_AT_ONCE };
    let mut batches: Vec<&[usize]> = Vec::new();
    let (head, rest) = idx.split_at(first.min(idx.len()));
    batches.push(head);
    batches.extend(rest.chunks(FILES_AT_ONCE));
    for batch in batches {
        let beyond = |fi: usize| match (&bounds, &cut) {
            (Some(b), Some(c)) => cmp_keys(&b[fi], c, false) == Ordering::Greater,
            _ => false,
        };
        let jobs: Vec<(usize, bool)> = batch.iter().map(|&fi| (fi, beyond(fi))).collect();
        let hits = ws.par_map(&jobs, |&(fi, beyond)| {
            if !beyond {
                file_hits(&cands[fi], f, order, n, exact)
            } else if matches!(order, Order::Rank { .. }) {
                Ok(FileHits::default())
            } else {
                file_count(&cands[fi], f).map(|total| FileHits {
                    total,
                    ..FileHits::default()
                })
            }
        });
        for (&fi, h) in batch.iter().zip(hits) {
            match h {
                Ok(h) => {
                    total += h.total;
                    take(fi, h, &mut all);
                }
                Err(e) => errors.push(file_error(&cands[fi], &e)),
            }
        }
        if bounds.is_some() && n > 0 && all.len() >= n {
            all.select_nth_unstable_by(n - 1, &by);
            cut = Some(row_of(&all[n - 1]).0);
        }
        if n > 0 && all.len() > 2 * n {
            all.select_nth_unstable_by(n - 1, &by);
            let last = all[n - 1].clone();
            let mut i = n;
            while i < all.len() {
                if !exact && tied(&all[i], &last) {
                    i += 1;
                } else {
                    all.swap_remove(i);
                }
            }
        }
    }
    let (lo, hi) = place_window(&mut all, offset, n, &by, &tied);
    let mut stretch: Vec<(Key<Box<str>>, usize, u64)> = all[lo..hi].iter().map(row_of).collect();
    let window = window_of(
        cands,
        &mut stretch,
        order,
        offset - lo,
        n.min(hi) - lo,
        late,
    );
    Ok(Scanned {
        value: (window, total),
        errors,
    })
}

/// Puts the rows of `[offset, n)` of `all`'s order `by` in place, with the
/// runs of rows whose key ties (`tied`) with the window's first or last
/// key beside them, sorted: returns that sorted stretch `lo..hi` (`lo <=
/// offset`). Rows before `lo` have a smaller key and rows from `hi` a
/// larger one, in no order. Two selections and a sort of the stretch:
/// O(len) and not O(len log len) as a full sort (a page at offset 100,000
/// merges every file's first 100,050 candidates).
pub(super) fn place_window<T: Clone>(
    all: &mut [T],
    offset: usize,
    n: usize,
    by: impl Fn(&T, &T) -> Ordering,
    tied: impl Fn(&T, &T) -> bool,
) -> (usize, usize) {
    let end = n.min(all.len());
    if offset >= end {
        return (0, 0);
    }
    let mut hi = all.len();
    if end < all.len() {
        all.select_nth_unstable_by(end - 1, &by);
        let last = all[end - 1].clone();
        hi = end;
        for i in end..all.len() {
            if tied(&all[i], &last) {
                all.swap(i, hi);
                hi += 1;
            }
        }
    }
    let mut lo = offset;
    if offset > 0 {
        all[..end].select_nth_unstable_by(offset, &by);
        let first = all[offset].clone();
        for i in (0..offset).rev() {
            if tied(&all[i], &first) {
                lo -= 1;
                all.swap(i, lo);
            }
        }
    }
    all[lo..hi].sort_by(&by);
    (lo, hi)
}

/// [`ranked`] for number keys: every candidate one integer ([`Packing`]),
/// so the selections compare integers, not keys, dataset names and rows
/// (they were a quarter of a page's time at offset 100,000 on the 1M-row
/// store mirror: 330,000 candidates of 48 bytes, each comparison a
/// closure), in a third of the memory.
fn ranked_packed(
    r: Ranking<'_>,
    layout: &Packing,
    late: &mut Vec<FileError>,
) -> Result<Scanned<Window>> {
    let desc = matches!(r.order, Order::Column { desc: true, .. });
    ranked_by(
        r,
        late,
        |fi, h: FileHits, all: &mut Vec<u128>| {
            all.reserve(h.packed.len() + h.kept.len());
            all.extend(
                h.packed
                    .iter()
                    .map(|&(k, row)| layout.pack(k, fi, u64::from(row))),
            );
            all.extend(
                h.kept
                    .iter()
                    .map(|(k, row)| layout.pack(k.packed(desc), fi, *row)),
            );
        },
        u128::cmp,
        |a: &u128, b: &u128| Packing::key(*a) == Packing::key(*b),
        |&x: &u128| layout.unpack(x, desc),
    )
}

/// Per file, the best key any of its rows can have under `order`, from
/// the score column's statistics, as keys compare ascending: for an
/// ascending sort on a score (NaN and null sort after every number) and
/// for a top-k (finite scores only); from the column statistics, else the
/// n4a state's range. `None` when the order has no such bound.
pub(super) fn bounds(cands: &[Candidate], order: Order<'_>) -> Option<Vec<Key<&'static str>>> {
    let (score, dir) = match order {
        Order::Column { name, desc: false } => (name, None),
        Order::Rank { score, dir } => (score, Some(dir)),
        _ => return None,
    };
    let i = ["val_score", "test_score", "train_score"]
        .iter()
        .position(|s| *s == score)?;
    // A file with neither statistics nor state can hold anything: it
    // sorts first and is always read.
    let open = Key {
        class: 0,
        num: 0,
        s: None,
    };
    let keys = cands
        .iter()
        .map(|c| {
            let range = match (c.info.columns.scores[i], c.state()) {
                (Some(sf), _) => (sf.min, sf.max),
                (None, Some(st)) => {
                    let sc = [&st.val_score, &st.test_score, &st.train_score][i];
                    if sc.inf_count > 0 {
                        (Some(f64::NEG_INFINITY), Some(f64::INFINITY))
                    } else {
                        (sc.welford.min, sc.welford.max)
                    }
                }
                (None, None) => return open.clone(),
            };
            let (lo, hi) = match range {
                (Some(lo), Some(hi)) => (lo, hi),
                // No number: every row sorts after the numbers (or is not
                // ranked at all).
                _ => {
                    return Key {
                        class: 2,
                        num: 0,
                        s: None,
                    }
                }
            };
            let num = match dir {
                None => total_order(lo + 0.0),
                Some(Direction::Maximize) => total_order(-hi),
                Some(Direction::Minimize) => total_order(lo),
                Some(Direction::TowardZero) if lo <= 0.0 && hi >= 0.0 => total_order(0.0),
                Some(Direction::TowardZero) => total_order(lo.abs().min(hi.abs())),
            };
            Key {
                class: 1,
                num,
                s: None,
            }
        })
        .collect();
    Some(keys)
}

/// The rows of one file the filters keep, reading only the filter columns
/// (none without a row-level filter: the footer's row count).
pub(super) fn file_count(c: &Candidate, f: &Filters) -> Result<u64> {
    if filter_columns(f).is_empty() {
        return Ok(c.info.num_rows);
    }
    // One facet filter (the val rows): the state's count, no column read
    // (a page's files beyond its cut are only counted).
    if c.rows.is_none() {
        if let Some(n) = crate::query::footers::footer_count(std::slice::from_ref(c), f) {
            return Ok(n);
        }
    }
    Ok(selection(c, f, None)?.len() as u64)
}

/// The columns a record holds (all 35 and `dataset` by default).
pub(crate) fn record_columns(q: &PageQuery) -> Vec<String> {
    match &q.columns {
        Some(c) => c.clone(),
        None => std::iter::once("dataset".to_string())
            .chain(COLUMNS.iter().map(|(n, _)| n.to_string()))
            .collect(),
    }
}

/// How a page's rows are fetched from one file: the rows asked (any
/// order) come back with their row numbers, as records (the JSON answer,
/// through the engine's row cache) or as predictions (the Arrow answer).
pub(crate) trait Fetch: Sync {
    /// One row of the answer.
    type Row: Send;
    /// Rows `wanted` of `c`, each with its row number, in no set order.
    fn rows(&self, c: &Candidate, wanted: &[u64]) -> Result<Vec<(u64, Self::Row)>>;
}

/// A page's rows as `F` fetches them, the total, and a count (rows read
/// whole for a sorted page, files read for a page in file order).
pub(crate) type PageRows<F> = (Vec<<F as Fetch>::Row>, u64, usize);

/// Rows as records of the page's columns ([`file_records`]).
pub(crate) struct AsRecords(pub(crate) Vec<String>);

impl Fetch for AsRecords {
    type Row = Record;
    fn rows(&self, c: &Candidate, wanted: &[u64]) -> Result<Vec<(u64, Record)>> {
        file_records(c, wanted, &self.0)
    }
}

/// Rows as predictions with their dataset, only the page's columns read
/// (the others left empty).
pub(crate) struct AsPredictions(pub(crate) Vec<String>);

impl Fetch for AsPredictions {
    type Row = (String, crate::schema::Prediction);
    fn rows(&self, c: &Candidate, wanted: &[u64]) -> Result<Vec<(u64, Self::Row)>> {
        c.check()?;
        Ok(read_rows(c, wanted.to_vec(), &self.0)?
            .into_iter()
            .map(|(row, p)| (row, (c.dataset.clone(), p)))
            .collect())
    }
}

/// Reads the rows of `found` (file index, row), in that order, each
/// file's rows in one selective read, files in parallel; a file that
/// fails is reported in `errors` and its rows left out.
pub(super) fn materialise<F: Fetch>(
    ws: &Workspace,
    cands: &[Candidate],
    found: &[(usize, u64)],
    fetch: &F,
    errors: &mut Vec<FileError>,
) -> Vec<F::Row> {
    let mut by_file: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (fi, r) in found {
        by_file.entry(*fi).or_default().push(*r);
    }
    let jobs: Vec<(usize, Vec<u64>)> = by_file.into_iter().collect();
    let read = ws.par_map(&jobs, |(fi, rows)| {
        fetch.rows(&cands[*fi], rows).map(|got| {
            got.into_iter()
                .map(|(row, r)| ((*fi, row), r))
                .collect::<Vec<_>>()
        })
    });
    let mut fetched: HashMap<(usize, u64), F::Row> = HashMap::new();
    for (r, (fi, _)) in read.into_iter().zip(&jobs) {
        match r {
            Ok(r) => fetched.extend(r),
            Err(e) => errors.push(file_error(&cands[*fi], &e)),
        }
    }
    found.iter().filter_map(|k| fetched.remove(k)).collect()
}

/// A sorted or filtered page and the total. Returns the rows, the total
/// and the rows read whole.
pub(crate) fn page<F: Fetch>(
    ws: &Workspace,
    cands: &[Candidate],
    q: &PageQuery,
    fetch: &F,
) -> Result<Scanned<PageRows<F>>> {
    let order = match &q.sort {
        Some(s) => Order::Column {
            name: s.column.as_str(),
            desc: s.descending,
        },
        None => Order::File,
    };
    without_late_failures(cands, |live, late| {
        let Scanned {
            value: (found, total),
            errors,
        } = ranked(
            Ranking {
                ws,
                cands: live,
                f: &q.filters,
                order,
                offset: q.offset,
                limit: q.limit,
            },
            late,
        )?;
        let records = materialise(ws, live, &found, fetch, late);
        let n = records.len();
        Ok(Scanned {
            value: (records, total, n),
            errors,
        })
    })
}

/// Runs `attempt` on the candidates; a file that fails after its rows were
/// counted (reading a page's rows, the ids of ties, a top-k's details:
/// `attempt` pushes it to its second argument) is left out and `attempt`
/// runs again on the others, so the answer, total included, is the one the
/// readable files give, as if the damaged file were not there. Each rerun
/// leaves out at least one more file.
pub(super) fn without_late_failures<T>(
    cands: &[Candidate],
    mut attempt: impl FnMut(&[Candidate], &mut Vec<FileError>) -> Result<Scanned<T>>,
) -> Result<Scanned<T>> {
    let mut live: Vec<Candidate> = cands.to_vec();
    let mut failed: Vec<FileError> = Vec::new();
    loop {
        let mut late = Vec::new();
        let Scanned { value, mut errors } = attempt(&live, &mut late)?;
        let before = live.len();
        live.retain(|c| !late.iter().any(|e| e.path == c.path));
        failed.extend(late);
        if live.len() == before {
            errors.extend(failed);
            return Ok(Scanned { value, errors });
        }
        // Files that failed while counting fail again: leave them out too.
        live.retain(|c| !errors.iter().any(|e| e.path == c.path));
        failed.extend(errors);
    }
}

/// A page in the default order (dataset, then row) when no row-level
/// filter applies: the total is the footers' row counts, and the page's
/// rows are located by counting through the files in dataset order, then
/// read alone. A file whose rows do not decode is reported in `errors` and
/// left out, its rows out of the total and the page filled from the files
/// after it, as if it were not there. Returns the records, the total and
/// the files read. Cost: O(files) plus reading the page's rows (the pages
/// of them).
pub(crate) fn page_in_file_order<F: Fetch>(
    cands: &[Candidate],
    q: &PageQuery,
    fetch: &F,
) -> Scanned<PageRows<F>> {
    let mut files: Vec<&Candidate> = cands.iter().collect();
    files.sort_by(|a, b| a.dataset.cmp(&b.dataset));
    let mut total: u64 = files.iter().map(|c| c.info.num_rows).sum();
    let offset = q.offset as u64;
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let (mut before, mut touched) = (0u64, 0usize);
    for c in files {
        let n = c.info.num_rows;
        let want = (q.limit - records.len()) as u64;
        let start = offset + records.len() as u64;
        if want == 0 {
            break;
        }
        if start < before + n {
            let (lo, hi) = (start - before, (start + want).min(before + n) - before);
            match fetch.rows(c, &(lo..hi).collect::<Vec<_>>()) {
                Ok(mut rows) => {
                    rows.sort_by_key(|(r, _)| *r);
                    touched += 1;
                    records.extend(rows.into_iter().map(|(_, r)| r));
                }
                Err(e) => {
                    errors.push(file_error(c, &e));
                    total -= n;
                    continue;
                }
            }
        }
        before += n;
    }
    Scanned {
        value: (records, total, touched),
        errors,
    }
}

/// The records of rows `wanted` of one file (in no set order): from the
/// candidate's cache where it holds them for this version of the file,
/// the others read (together) and kept if the file did not change
/// meanwhile.
pub(super) fn file_records(
    c: &Candidate,
    wanted: &[u64],
    columns: &[String],
) -> Result<Vec<(u64, Record)>> {
    c.check()?;
    let Some(cache) = c.cache.as_deref() else {
        return Ok(read_rows(c, wanted.to_vec(), columns)?
            .into_iter()
            .map(|(row, p)| (row, record(&c.dataset, &p, columns)))
            .collect());
    };
    let sig = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        columns.hash(&mut h);
        h.finish()
    };
    let key = &c.info.key;
    let mut out = Vec::with_capacity(wanted.len());
    let mut missing = Vec::new();
    for &row in wanted {
        match cache.row(&c.path, key, sig, row) {
            Some(r) => out.push((row, r)),
            None => missing.push(row),
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let read: Vec<(u64, Record)> = read_rows(c, missing, columns)?
        .into_iter()
        .map(|(row, p)| (row, record(&c.dataset, &p, columns)))
        .collect();
    if crate::footer::FileKey::of(&c.path).is_ok_and(|k| k == *key) {
        cache.put_rows(&c.path, key, sig, read.iter().cloned());
    }
    out.extend(read);
    Ok(out)
}

/// Reads the rows at `wanted` (0-based, any order) of one file, only the
/// `columns` a record shows, decoding only the pages that hold them.
pub(super) fn read_rows(
    c: &Candidate,
    mut wanted: Vec<u64>,
    columns: &[String],
) -> Result<Vec<(u64, crate::schema::Prediction)>> {
    let path = c.path.as_path();
    wanted.sort_unstable();
    wanted.dedup();
    let ctx = path.display().to_string();
    let mut out = Vec::with_capacity(wanted.len());
    let mut it = wanted.iter();
    let names: Vec<&str> = COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| columns.iter().any(|c| c == n))
        .collect();
    let known = if c.rows.is_some() {
        None
    } else {
        known_meta(c)
    };
    for batch in super::read_batches(c, &names, Some(&wanted), false, known)? {
        for p in crate::rows::batch_to_predictions(&batch, &ctx, false)? {
            out.push((it.next().copied().unwrap_or(u64::MAX), p));
        }
    }
    Ok(out)
}

/// One row as a record: the requested columns in order, `dataset` from the
/// file, JSON columns parsed, NaN as null.
pub(super) fn record(dataset: &str, p: &crate::schema::Prediction, columns: &[String]) -> Record {
    let mut all = match serde_json::to_value(p) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    all.insert("dataset".to_string(), serde_json::Value::from(dataset));
    columns
        .iter()
        .map(|c| {
            let v = all.remove(c).unwrap_or(serde_json::Value::Null);
            let v = match v {
                serde_json::Value::String(s)
                    if crate::query::output::JSON_COLUMNS.contains(&c.as_str()) =>
                {
                    crate::query::output::parse_json_text(&s)
                }
                v => v,
            };
            (c.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The stretch [`place_window`] sorts is the full sort's, from the
        /// first row tied with the window's first key to the last row
        /// tied with its last key.
        #[test]
        fn a_placed_window_is_the_full_sorts(
            rows in prop::collection::vec((0u8..2, 0u64..6, prop::option::of(prop::sample::select(vec!["a", "b", "c"])), 0usize..3), 0..60),
            offset in 0usize..70,
            limit in 0usize..20,
            desc in any::<bool>(),
        ) {
            let mut all: Vec<(Key<Box<str>>, usize, u64)> = rows
                .iter()
                .enumerate()
                .map(|(i, (class, num, s, file))| {
                    // As the engine's keys: a text in every key of a class
                    // of texts (class 1 here), in none of the others.
                    let s = (*class == 1).then(|| Box::from(s.unwrap_or("a")));
                    (Key { class: *class, num: *num, s }, *file, i as u64)
                })
                .collect();
            let by = |a: &(Key<Box<str>>, usize, u64), b: &(Key<Box<str>>, usize, u64)| {
                cmp_keys(&a.0, &b.0, desc).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
            };
            let mut sorted = all.clone();
            sorted.sort_by(by);
            let n = offset + limit;
            let tied_rows = |a: &(Key<Box<str>>, usize, u64), b: &(Key<Box<str>>, usize, u64)| {
                cmp_keys(&a.0, &b.0, desc) == Ordering::Equal
            };
            let (lo, hi) = place_window(&mut all, offset, n, by, tied_rows);
            let end = n.min(sorted.len());
            if offset >= end {
                prop_assert_eq!((lo, hi), (0, 0));
            } else {
                let tied = |a: &Key<Box<str>>, b: &Key<Box<str>>| cmp_keys(a, b, desc) == Ordering::Equal;
                let want_lo = (0..=offset).find(|&i| tied(&sorted[i].0, &sorted[offset].0)).unwrap();
                let want_hi = (end - 1..sorted.len()).take_while(|&i| tied(&sorted[i].0, &sorted[end - 1].0)).last().unwrap() + 1;
                prop_assert_eq!((lo, hi), (want_lo, want_hi));
                let got: Vec<(usize, u64)> = all[lo..hi].iter().map(|r| (r.1, r.2)).collect();
                let want: Vec<(usize, u64)> = sorted[lo..hi].iter().map(|r| (r.1, r.2)).collect();
                prop_assert_eq!(got, want);
            }
            // Nothing lost or repeated.
            let mut ids: Vec<u64> = all.iter().map(|r| r.2).collect();
            ids.sort_unstable();
            prop_assert_eq!(ids, (0..rows.len() as u64).collect::<Vec<_>>());
        }
    }
}
