//! A page's window over ranked rows: what one file gives a page (its
//! count and best rows), and the `(file, row)` pairs of `[offset, n)`
//! with ties on a column's key broken by `id`, and how a candidate is
//! packed into one integer ([`Packing`]). Shared by the page scan (`page`)
//! and the pages of sorted files kept between queries (`sorted`).

use super::file_error;
use super::keys::{cmp_keys, Key, Order};
use crate::query::filter::Filters;
use crate::query::Candidate;
use crate::rows::StrCol;
use crate::schema::COLUMNS;
use crate::workspace::FileError;
use crate::workspace::Workspace;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// What ranking a workspace's rows for a page or a top-k takes: where,
/// which files, which rows, in which order, and which window of the
/// ranked rows (the parameters that travelled together through `page`,
/// `sorted` and `top`).
#[derive(Clone, Copy)]
pub(super) struct Ranking<'r> {
    pub(super) ws: &'r Workspace,
    pub(super) cands: &'r [Candidate],
    pub(super) f: &'r Filters,
    pub(super) order: Order<'r>,
    pub(super) offset: usize,
    pub(super) limit: usize,
}

/// The `(file index, row)` pairs of a page's window, and the total.
pub(super) type Window = (Vec<(usize, u64)>, u64);

/// What one file gives a page or a top-k: its matching rows' count and
/// its best rows by the order (with the rows tied at the cut unless the
/// cut is exact).
#[derive(Default)]
pub(super) struct FileHits {
    pub(super) total: u64,
    pub(super) kept: Vec<(Key<Box<str>>, u64)>,
    /// The same for keys that are numbers, packed ([`Key::packed`]) with
    /// their row: what the scan of a number column gives (`kept` is then
    /// empty), merged without a string or an allocation per row.
    pub(super) packed: Vec<(u128, u32)>,
}

/// The `(file index, row)` pairs of `[offset, n)` of `all` (sorted by key,
/// then dataset and row), ties on a column's key inside the window broken
/// by `id` first; a file whose ids cannot be read goes to `late`.
pub(super) fn window_of(
    cands: &[Candidate],
    all: &mut [(Key<Box<str>>, usize, u64)],
    order: Order<'_>,
    offset: usize,
    n: usize,
    late: &mut Vec<FileError>,
) -> Vec<(usize, u64)> {
    let end = n.min(all.len());
    if let Order::Column { name, desc } = order {
        if name != "id" {
            if let Err(e) = break_ties_by_id(cands, all, offset, end, desc) {
                late.push(e);
            }
        }
    }
    all.get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|(_, fi, r)| (*fi, *r))
        .collect()
}

/// Orders each run of equal keys that reaches into `[offset, end)` by
/// `id` (nulls last), then dataset and row, reading the ids of just those
/// rows.
pub(super) fn break_ties_by_id(
    cands: &[Candidate],
    all: &mut [(Key<Box<str>>, usize, u64)],
    offset: usize,
    end: usize,
    desc: bool,
) -> std::result::Result<(), FileError> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < end {
        let mut stop = start + 1;
        while stop < all.len() && cmp_keys(&all[stop].0, &all[start].0, desc) == Ordering::Equal {
            stop += 1;
        }
        if stop - start > 1 && stop > offset {
            runs.push(start..stop);
        }
        start = stop;
    }
    if runs.is_empty() {
        return Ok(());
    }
    let mut wanted: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for r in &runs {
        for (_, fi, row) in &all[r.clone()] {
            wanted.entry(*fi).or_default().push(*row);
        }
    }
    let mut ids: HashMap<(usize, u64), Option<String>> = HashMap::new();
    for (fi, mut rows) in wanted {
        rows.sort_unstable();
        rows.dedup();
        let batches = super::read_batches(&cands[fi], &["id"], Some(&rows), false, None)
            .map_err(|e| file_error(&cands[fi], &e))?;
        let mut it = rows.iter();
        for b in &batches {
            let col = StrCol::of(b, "id");
            for i in 0..b.num_rows() {
                if let Some(&row) = it.next() {
                    ids.insert((fi, row), col.get(i).map(str::to_string));
                }
            }
        }
    }
    for r in runs {
        all[r].sort_by(|a, b| {
            let (x, y) = (&ids[&(a.1, a.2)], &ids[&(b.1, b.2)]);
            let by_id = match (x, y) {
                (Some(x), Some(y)) => x.cmp(y),
                (None, None) => Ordering::Equal,
                (None, _) => Ordering::Greater,
                (_, None) => Ordering::Less,
            };
            by_id
                .then_with(|| cands[a.1].dataset.cmp(&cands[b.1].dataset))
                .then(a.2.cmp(&b.2))
        });
    }
    Ok(())
}

/// How a candidate is packed into one `u128` that sorts as a page's
/// order (key, then dataset, then row): the packed number key
/// ([`Key::packed`]: 2 bits of class, 64 of number) in the top 66 bits,
/// the file's rank by dataset in the next 24, the row in the low 38.
pub(super) struct Packing {
    /// File index by rank.
    by_rank: Vec<usize>,
    /// Rank by file index.
    rank: Vec<u128>,
}

const RANK_BITS: u32 = 24;
const ROW_BITS: u32 = 38;
const KEY_SHIFT: u32 = RANK_BITS + ROW_BITS;

impl Packing {
    /// The layout for `cands` under `order`, when its keys are numbers and
    /// every file's rank and rows fit.
    pub(super) fn of(cands: &[Candidate], order: Order<'_>) -> Option<Packing> {
        let numeric = match order {
            Order::File | Order::Rank { .. } => true,
            Order::Column {
                name: "dataset", ..
            } => false,
            Order::Column { name, .. } => matches!(
                COLUMNS.iter().find(|(n, _)| *n == name).map(|c| c.1),
                Some(crate::schema::Kind::Float | crate::schema::Kind::Int)
            ),
        };
        if !numeric
            || cands.len() >= 1 << RANK_BITS
            || cands.iter().any(|c| c.info.num_rows >= 1 << ROW_BITS)
        {
            return None;
        }
        let mut by_rank: Vec<usize> = (0..cands.len()).collect();
        by_rank.sort_by(|&a, &b| cands[a].dataset.cmp(&cands[b].dataset).then(a.cmp(&b)));
        let mut rank = vec![0u128; cands.len()];
        for (r, &fi) in by_rank.iter().enumerate() {
            rank[fi] = r as u128;
        }
        Some(Packing { by_rank, rank })
    }

    #[inline]
    pub(super) fn pack(&self, key: u128, fi: usize, row: u64) -> u128 {
        (key << KEY_SHIFT) | (self.rank[fi] << ROW_BITS) | u128::from(row)
    }

    #[inline]
    pub(super) fn key(x: u128) -> u128 {
        x >> KEY_SHIFT
    }

    /// `(key, file index, row)` of a packed candidate.
    pub(super) fn unpack(&self, x: u128, desc: bool) -> (Key<Box<str>>, usize, u64) {
        let fi = self.by_rank[((x >> ROW_BITS) & ((1 << RANK_BITS) - 1)) as usize];
        let row = (x & ((1 << ROW_BITS) - 1)) as u64;
        (Key::unpacked(Self::key(x), desc), fi, row)
    }
}
