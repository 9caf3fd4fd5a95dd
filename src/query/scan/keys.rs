//! Sort keys: a row's key under an order (numbers as order-preserving
//! integers, strings borrowed from the batch, NaN and null placed as the
//! dashboard places them), and [`Best`], the bounded selection that keeps a
//! file's best `offset + limit` rows with the rows tied at the cut.

use super::{float_at, float_col, int_col};
use crate::metric::Direction;
use crate::rows::StrCol;
use crate::schema::{Kind, COLUMNS};
use arrow_array::{Array, Float64Array, Int64Array, RecordBatch};
use std::cmp::Ordering;

/// A sort key. `class` orders what is not a plain value (0: NaN first in a
/// descending sort, 1: a value, 2: NaN last in an ascending one, 3: null,
/// always last); within class 1, `num` (numbers mapped to integers in
/// their order) then `s` (strings) order the values, reversed for a
/// descending sort.
#[derive(Debug, Clone)]
pub(super) struct Key<S> {
    pub(super) class: u8,
    pub(super) num: u64,
    pub(super) s: Option<S>,
}

pub(super) fn cmp_keys<A: AsRef<str>, B: AsRef<str>>(
    a: &Key<A>,
    b: &Key<B>,
    desc: bool,
) -> Ordering {
    a.class.cmp(&b.class).then_with(|| {
        let o = a.num.cmp(&b.num).then_with(|| match (&a.s, &b.s) {
            (Some(x), Some(y)) => x.as_ref().cmp(y.as_ref()),
            _ => Ordering::Equal,
        });
        if desc {
            o.reverse()
        } else {
            o
        }
    })
}

/// `v`'s place in the total order of doubles, as an integer.
pub(super) fn total_order(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 0 {
        b | 1 << 63
    } else {
        !b
    }
}

/// How a page or a top-k orders rows.
#[derive(Debug, Clone, Copy)]
pub(super) enum Order<'q> {
    /// By a column, ties by `id`, then dataset and row.
    Column { name: &'q str, desc: bool },
    /// Best first by a score's direction (finite scores only); ties by
    /// dataset and row.
    Rank { score: &'q str, dir: Direction },
    /// Dataset and row.
    File,
}

/// Where one file's sort keys come from.
pub(super) enum KeySource<'a> {
    Float(Option<&'a Float64Array>),
    Int(Option<&'a Int64Array>),
    Str(StrCol<'a>),
    Text(&'a str),
    Rank(Option<&'a Float64Array>, Direction),
    None,
}

impl<'a> KeySource<'a> {
    pub(super) fn new(b: &'a RecordBatch, order: Order<'_>, dataset: &'a str) -> Self {
        match order {
            Order::File => KeySource::None,
            Order::Rank { score, dir } => KeySource::Rank(float_col(b, score), dir),
            Order::Column {
                name: "dataset", ..
            } => KeySource::Text(dataset),
            Order::Column { name, .. } => {
                match COLUMNS.iter().find(|(n, _)| *n == name).map(|c| c.1) {
                    Some(Kind::Float) => KeySource::Float(float_col(b, name)),
                    Some(Kind::Int) => KeySource::Int(int_col(b, name)),
                    _ => KeySource::Str(StrCol::of(b, name)),
                }
            }
        }
    }

    pub(super) fn key(&self, i: usize, desc: bool) -> Key<&'a str> {
        let num = |class, num| Key {
            class,
            num,
            s: None,
        };
        match self {
            KeySource::Float(a) => match float_at(*a, i) {
                None => num(3, 0),
                Some(v) if v.is_nan() => num(if desc { 0 } else { 2 }, 0),
                // -0 and 0 are equal, as in a comparison of values.
                Some(v) => num(1, total_order(v + 0.0)),
            },
            KeySource::Int(a) => match a.and_then(|a| a.is_valid(i).then(|| a.value(i))) {
                None => num(3, 0),
                Some(v) => num(1, (v as u64) ^ (1 << 63)),
            },
            KeySource::Str(c) => match c.get(i) {
                None => num(3, 0),
                Some(s) => Key {
                    class: 1,
                    num: 0,
                    s: Some(s),
                },
            },
            KeySource::Text(s) => Key {
                class: 1,
                num: 0,
                s: Some(*s),
            },
            KeySource::Rank(a, dir) => match float_at(*a, i) {
                Some(v) => num(1, total_order(dir.rank_key(v))),
                None => num(3, 0),
            },
            KeySource::None => num(1, 0),
        }
    }
}

impl KeySource<'_> {
    /// True when keys are numbers alone (no string part).
    pub(super) fn is_numeric(&self) -> bool {
        !matches!(self, KeySource::Str(_) | KeySource::Text(_))
    }
}

impl<S> Key<S> {
    /// A number key as one integer that sorts as [`cmp_keys`] does.
    pub(super) fn packed(&self, desc: bool) -> u128 {
        let num = if desc { !self.num } else { self.num };
        (u128::from(self.class) << 64) | u128::from(num)
    }

    pub(super) fn unpacked(k: u128, desc: bool) -> Key<S> {
        let num = k as u64;
        Key {
            class: (k >> 64) as u8,
            num: if desc { !num } else { num },
            s: None,
        }
    }
}

/// The best `n` rows of a stream of (packed key, row), rows ascending, in
/// memory bounded by about `2n`: a row worse than the current cut is
/// dropped at one comparison; when the buffer fills it is cut back to the
/// best `n` (plus, unless `exact`, the rows tied with the `n`-th).
pub(super) struct Best {
    pub(super) n: usize,
    pub(super) exact: bool,
    pub(super) cap: usize,
    pub(super) cut: Option<u128>,
    pub(super) buf: Vec<(u128, u32)>,
}

impl Best {
    pub(super) fn new(n: usize, exact: bool) -> Self {
        let cap = n.saturating_mul(2).max(64);
        Best {
            n,
            exact,
            cap,
            cut: None,
            buf: Vec::with_capacity(cap.min(1 << 16)),
        }
    }

    #[inline]
    pub(super) fn offer(&mut self, k: u128, row: u32) {
        if let Some(c) = self.cut {
            // Rows come in ascending order: a later row tied with the cut
            // loses to it when the cut is exact.
            if k > c || (self.exact && k == c) {
                return;
            }
        }
        self.buf.push((k, row));
        if self.buf.len() >= self.cap {
            self.compact();
            // Ties kept past the cut can fill the buffer: grow it.
            if self.buf.len() * 2 > self.cap {
                self.cap = self.buf.len() * 2;
            }
        }
    }

    pub(super) fn compact(&mut self) {
        let n = self.n;
        if self.buf.len() <= n {
            return;
        }
        self.buf.select_nth_unstable(n - 1);
        let cut = self.buf[n - 1].0;
        if self.exact {
            self.buf.truncate(n);
        } else {
            let mut i = n;
            while i < self.buf.len() {
                if self.buf[i].0 == cut {
                    i += 1;
                } else {
                    self.buf.swap_remove(i);
                }
            }
        }
        self.cut = Some(cut);
    }

    pub(super) fn finish(mut self) -> Vec<(u128, u32)> {
        self.compact();
        self.buf
    }
}
