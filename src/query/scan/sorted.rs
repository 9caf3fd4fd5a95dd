//! Pages from rows held sorted per file (the server's cache): a filter and
//! order asked a second time sorts each file's kept rows once, and a page at
//! any offset is then a k-way merge of them ([`merged_window`]).

use super::keys::{cmp_keys, Key, KeySource, Order};
use super::window::{window_of, FileHits, Packing, Ranking, Window};
use super::{
    derive, file_error, filter_columns, float_at, float_col, read_cols, selection, Scanned,
};
use crate::error::Result;
use crate::query::filter::Filters;
use crate::query::Candidate;
use crate::schema::{Kind, COLUMNS};
use crate::workspace::FileError;
use arrow_array::RecordBatch;
use std::cmp::Ordering;
use std::sync::Arc;

/// True when the candidate's cache has seen this filter and order on this
/// file before (the first time, it is noted): the full sort of
/// [`sorted_hits`] is paid for an order that is asked again, and a query
/// asked once costs only the bounded selection.
pub(super) fn asked_before(c: &Candidate, f: &Filters, order: Order<'_>) -> bool {
    let Some(cache) = c.cache.as_deref() else {
        return false;
    };
    if asked(c, f, order) {
        return true;
    }
    let what = format!("asked {:?} {:?} by {order:?}", f.values, f.ranges);
    cache.put_derived(&c.path, &c.info.key, &what, Arc::new(()), 0);
    false
}

/// True when this filter and order were asked of this file before, or its
/// sorted rows are held (no side effect).
pub(super) fn asked(c: &Candidate, f: &Filters, order: Order<'_>) -> bool {
    let Some(cache) = c.cache.as_deref() else {
        return false;
    };
    let key = &c.info.key;
    cache
        .derived::<()>(
            &c.path,
            key,
            &format!("asked {:?} {:?} by {order:?}", f.values, f.ranges),
        )
        .is_some()
        || cache
            .derived::<Vec<u32>>(&c.path, key, &sorted_what(f, order))
            .is_some()
}

pub(super) fn sorted_what(f: &Filters, order: Order<'_>) -> String {
    format!("rows where {:?} {:?} by {order:?}", f.values, f.ranges)
}

/// The file's matching rows (finite scores only for a top-k) in the
/// order's order, ties by row: sorted once (O(m log m) for m matching
/// rows) and kept in the cache.
pub(super) fn sorted_rows(
    c: &Candidate,
    b: &RecordBatch,
    f: &Filters,
    order: Order<'_>,
) -> Result<Arc<Vec<u32>>> {
    let desc = matches!(order, Order::Column { desc: true, .. });
    let src = KeySource::new(b, order, &c.dataset);
    derive(
        c,
        || sorted_what(f, order),
        || {
            let mut rows = selection(c, f, Some(b))?.as_ref().clone();
            if let Order::Rank { score, .. } = order {
                let a = float_col(b, score);
                rows.retain(|&i| float_at(a, i as usize).is_some_and(f64::is_finite));
            }
            if src.is_numeric() {
                let mut keyed: Vec<(u128, u32)> = rows
                    .iter()
                    .map(|&i| (src.key(i as usize, desc).packed(desc), i))
                    .collect();
                keyed.sort_unstable();
                rows = keyed.into_iter().map(|(_, i)| i).collect();
            } else {
                rows.sort_by(|&x, &y| {
                    cmp_keys(&src.key(x as usize, desc), &src.key(y as usize, desc), desc)
                        .then(x.cmp(&y))
                });
            }
            let bytes = rows.len() * 4;
            Ok((rows, bytes))
        },
    )
}

/// [`file_hits`] from the file's [`sorted_rows`]: the best `n` (and the
/// ties at the cut) read off the front.
pub(super) fn sorted_hits(
    c: &Candidate,
    b: &RecordBatch,
    f: &Filters,
    order: Order<'_>,
    n: usize,
    exact: bool,
) -> Result<FileHits> {
    let desc = matches!(order, Order::Column { desc: true, .. });
    let src = KeySource::new(b, order, &c.dataset);
    let sorted = sorted_rows(c, b, f, order)?;
    let mut kept: Vec<(Key<Box<str>>, u64)> = Vec::new();
    for (j, &i) in sorted.iter().enumerate() {
        let k = src.key(i as usize, desc);
        if j >= n {
            let tied = !exact
                && kept
                    .last()
                    .is_some_and(|(last, _)| cmp_keys(&k, last, desc) == Ordering::Equal);
            if !tied {
                break;
            }
        }
        kept.push((
            Key {
                class: k.class,
                num: k.num,
                s: k.s.map(Box::from),
            },
            u64::from(i),
        ));
    }
    Ok(FileHits {
        total: sorted.len() as u64,
        kept,
        ..FileHits::default()
    })
}

/// The window by a k-way merge of every file's [`sorted_rows`], when the
/// cache holds them (or each file was asked this filter and order before,
/// so they are built now) and the order's keys are numbers: O((offset +
/// limit) x log files) for the window, where [`ranked`] gathers up to
/// `offset + limit` candidates from every file (3.3M at an offset of
/// 100,000 on `big`, 190 ms). `None` when the cache cannot serve it.
pub(super) fn merged_window(
    r: Ranking<'_>,
    late: &mut Vec<FileError>,
) -> Option<Result<Scanned<Window>>> {
    let Ranking {
        ws,
        cands,
        f,
        order,
        offset,
        limit,
    } = r;
    if matches!(order, Order::File) || cands.is_empty() {
        return None;
    }
    if !cands.iter().all(|c| asked(c, f, order)) {
        return None;
    }
    let sort_col = match order {
        Order::Column { name, .. } => name,
        Order::Rank { score, .. } => score,
        Order::File => return None,
    };
    if sort_col == "dataset"
        || !matches!(
            COLUMNS.iter().find(|(n, _)| *n == sort_col).map(|c| c.1),
            Some(Kind::Float | Kind::Int)
        )
    {
        return None;
    }
    let desc = matches!(order, Order::Column { desc: true, .. });
    let exact = !matches!(order, Order::Column { .. });
    let mut names = filter_columns(f);
    names.push(sort_col);
    let idx: Vec<usize> = (0..cands.len()).collect();
    let parts = ws.par_map(
        &idx,
        |&fi| -> Result<Option<(RecordBatch, Arc<Vec<u32>>)>> {
            let c = &cands[fi];
            let Some(b) = read_cols(c, &names)? else {
                return Ok(None);
            };
            let sorted = sorted_rows(c, &b, f, order)?;
            Ok(Some((b, sorted)))
        },
    );
    let mut errors = Vec::new();
    let mut files: Vec<(usize, RecordBatch, Arc<Vec<u32>>)> = Vec::new();
    for (fi, p) in parts.into_iter().enumerate() {
        match p {
            Ok(Some((b, s))) => files.push((fi, b, s)),
            Ok(None) => {}
            Err(e) => errors.push(file_error(&cands[fi], &e)),
        }
    }
    let total: u64 = files.iter().map(|(_, _, s)| s.len() as u64).sum();
    let srcs: Vec<KeySource<'_>> = files
        .iter()
        .map(|(fi, b, _)| KeySource::new(b, order, &cands[*fi].dataset))
        .collect();
    let n = offset.saturating_add(limit);
    let merged = if errors.is_empty() {
        whole_order(r, &files, &srcs, n)
    } else {
        None
    };
    // `all` holds the merged order's rows from position `lo` on.
    let (mut all, lo) = match merged {
        Some(m) => stretch_of(&m, &files, &srcs, desc, exact, offset, n),
        None => (merge_front(cands, &files, &srcs, desc, exact, n), 0),
    };
    let (offset, n) = (offset - lo.min(offset), n - lo.min(n));
    let window = window_of(cands, &mut all, order, offset, n, late);
    Some(Ok(Scanned {
        value: (window, total),
        errors,
    }))
}

/// A file's sorted rows with its batch: what the merges below read keys
/// from (`(candidate index, batch, sorted rows)`).
type SortedFile = (usize, RecordBatch, Arc<Vec<u32>>);

/// One row of a merge: its key, candidate index and row.
type Merged = (Key<Box<str>>, usize, u64);

/// The first `n` rows of the merged order (and the rows tied with the
/// `n`-th unless `exact`): a k-way merge of every file's sorted rows,
/// ties on the key by dataset, then row. O(n x log files).
fn merge_front(
    cands: &[Candidate],
    files: &[SortedFile],
    srcs: &[KeySource<'_>],
    desc: bool,
    exact: bool,
    n: usize,
) -> Vec<Merged> {
    let total: usize = files.iter().map(|(_, _, s)| s.len()).sum();
    let rank = dataset_ranks(cands, files);
    let key_at = |j: usize, pos: usize| -> Option<(u128, usize, u32, usize)> {
        let row = *files[j].2.get(pos)?;
        Some((
            srcs[j].key(row as usize, desc).packed(desc),
            rank[j],
            row,
            j,
        ))
    };
    let mut heap = std::collections::BinaryHeap::new();
    let mut pos = vec![0usize; files.len()];
    for j in 0..files.len() {
        if let Some(k) = key_at(j, 0) {
            heap.push(std::cmp::Reverse(k));
        }
    }
    let mut all: Vec<Merged> = Vec::with_capacity(n.min(total));
    let mut last: Option<u128> = None;
    while let Some(std::cmp::Reverse((k, _, row, j))) = heap.pop() {
        if all.len() >= n && (exact || last != Some(k)) {
            break;
        }
        last = Some(k);
        all.push((Key::unpacked(k, desc), files[j].0, u64::from(row)));
        pos[j] += 1;
        if let Some(next) = key_at(j, pos[j]) {
            heap.push(std::cmp::Reverse(next));
        }
    }
    all
}

/// Each file's rank by dataset name (ties on a key go by dataset).
fn dataset_ranks(cands: &[Candidate], files: &[SortedFile]) -> Vec<usize> {
    let mut by_name: Vec<usize> = (0..files.len()).collect();
    by_name.sort_by(|a, b| cands[files[*a].0].dataset.cmp(&cands[files[*b].0].dataset));
    let mut rank = vec![0usize; files.len()];
    for (r, &i) in by_name.iter().enumerate() {
        rank[i] = r;
    }
    rank
}

/// Pages this deep or deeper (or reaching past a quarter of the rows)
/// build (or use) the [`whole_order`]: a shallower page merges just its
/// front ([`merge_front`], O(n log files)), which for a page near the top
/// costs less than building the whole order once (O(rows x log files):
/// 0.3 s for the 3.3M val rows of `big`).
const WHOLE_ORDER_FROM: usize = 20_000;

/// Every matching row of the workspace in the order's order (ties by
/// dataset, then row), as `(file slot << 32) | row` (the slot in
/// `files`): built once (every row packed into one integer as the page
/// scan packs it, [`Packing`], sorted on the pool: O(rows log rows), 16
/// bytes a row while it lasts) and kept in the cache under the
/// filter, the order and the version of every file, so a page at any
/// offset reads its window off it in O(limit), where [`merge_front`]
/// walked `offset + limit` rows (3 million heap pops for a page at offset
/// 3,000,000: 0.3-0.5 s a page, and a transient of 40 bytes a row).
/// Memory: 8 bytes a matching row (26 MB for `big`'s val rows), counted
/// in the cache's budget. `None` without a cache, for a shallow page
/// when the order is not held yet, or when the rows do not pack.
fn whole_order(
    r: Ranking<'_>,
    files: &[SortedFile],
    srcs: &[KeySource<'_>],
    n: usize,
) -> Option<Arc<Vec<u64>>> {
    let Ranking {
        ws,
        cands,
        f,
        order,
        ..
    } = r;
    let cache = cands.first()?.cache.as_deref()?;
    let what = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (fi, _, _) in files {
            (&cands[*fi].path, &cands[*fi].info.key).hash(&mut h);
        }
        format!(
            "merged {} over {} files {:x}",
            sorted_what(f, order),
            files.len(),
            h.finish()
        )
    };
    let root = ws.root();
    let key = crate::footer::FileKey::default();
    if let Some(m) = cache.derived::<Vec<u64>>(root, &key, &what) {
        return Some(m);
    }
    let total: usize = files.iter().map(|(_, _, s)| s.len()).sum();
    if n < WHOLE_ORDER_FROM && n.saturating_mul(4) < total {
        return None;
    }
    let desc = matches!(order, Order::Column { desc: true, .. });
    // Every row as one integer that sorts in the merged order (the page
    // scan's packing: key, file rank by dataset, row); sorted on the pool
    // (16 bytes a row while it lasts).
    let layout = Packing::of(cands, order)?;
    let mut slot = vec![usize::MAX; cands.len()];
    for (j, (fi, _, _)) in files.iter().enumerate() {
        slot[*fi] = j;
    }
    let slots: Vec<usize> = (0..files.len()).collect();
    let parts = ws.par_map(&slots, |&j| {
        files[j]
            .2
            .iter()
            .map(|&row| {
                let k = srcs[j].key(row as usize, desc).packed(desc);
                layout.pack(k, files[j].0, u64::from(row))
            })
            .collect::<Vec<u128>>()
    });
    let mut all: Vec<u128> = Vec::with_capacity(total);
    for p in parts {
        all.extend(p);
    }
    ws.install(|parallel| {
        if parallel {
            use rayon::slice::ParallelSliceMut;
            all.par_sort_unstable();
        } else {
            all.sort_unstable();
        }
    });
    let merged: Vec<u64> = all
        .iter()
        .map(|&x| {
            let (_, fi, row) = layout.unpack(x, desc);
            ((slot[fi] as u64) << 32) | row
        })
        .collect();
    drop(all);
    let merged = Arc::new(merged);
    cache.put_derived(root, &key, &what, merged.clone(), merged.len() * 8);
    Some(merged)
}

/// The rows `[offset, n)` of a [`whole_order`], with the rows tied with
/// its first and last keys beside them unless `exact` (so ties inside the
/// window can be broken by `id`), and the position of the first.
fn stretch_of(
    merged: &[u64],
    files: &[SortedFile],
    srcs: &[KeySource<'_>],
    desc: bool,
    exact: bool,
    offset: usize,
    n: usize,
) -> (Vec<Merged>, usize) {
    let end = n.min(merged.len());
    if offset >= end {
        return (Vec::new(), 0);
    }
    let key = |at: usize| {
        let e = merged[at];
        let (j, row) = ((e >> 32) as usize, e as u32);
        (srcs[j].key(row as usize, desc).packed(desc), j, row)
    };
    let (mut lo, mut hi) = (offset, end);
    if !exact {
        let first = key(offset).0;
        while lo > 0 && key(lo - 1).0 == first {
            lo -= 1;
        }
        let last = key(end - 1).0;
        while hi < merged.len() && key(hi).0 == last {
            hi += 1;
        }
    }
    let rows = (lo..hi)
        .map(|at| {
            let (k, j, row) = key(at);
            (Key::unpacked(k, desc), files[j].0, u64::from(row))
        })
        .collect();
    (rows, lo)
}
