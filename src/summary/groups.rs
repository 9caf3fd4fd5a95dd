//! Per-key aggregates of a file's rows (format 1.5): for each (metric,
//! partition) the rows' count and, per score (val, test, train), the
//! finite scores' count, sum, min, max and the one closest to zero; in
//! total and per model name and per fold id. What a group-by by model,
//! fold, dataset, partition or metric within one metric (and partition)
//! adds up over files, so such a group-by is answered from each file's
//! aggregates without reading its rows.
//!
//! Kept incrementally by the [`super::SummaryBuilder`] (an append adds
//! its rows to the stored aggregates: no rescan), stored in the file's
//! body beside the runs and read only by group-bys (a summary never reads
//! them). Bounded: a (metric, partition) with more than [`MAX_KEYS`]
//! models or folds drops the aggregates (the file's group-bys are then
//! scanned), so they stay a few KB a file.
//!
//! Sums follow row order within a file; a group-by adds files' sums in
//! dataset order, where a scan adds rows in banks: means agree to about
//! 1e-15 relative, not bit for bit.

use std::collections::BTreeMap;

/// Distinct models (or folds) a (metric, partition) may hold before the
/// aggregates are dropped.
pub const MAX_KEYS: usize = 256;

/// One score's aggregate over finite values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreAgg {
    /// Finite values.
    pub n: u64,
    /// Their sum, in row order.
    pub sum: f64,
    /// Smallest (infinity while `n` is 0).
    pub min: f64,
    /// Largest (-infinity while `n` is 0).
    pub max: f64,
    /// The value closest to zero, first seen (NaN while `n` is 0).
    pub zero: f64,
}

impl Default for ScoreAgg {
    fn default() -> Self {
        ScoreAgg {
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            zero: f64::NAN,
        }
    }
}

impl ScoreAgg {
    #[inline]
    fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.n += 1;
            self.sum += v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            if self.zero.is_nan() || v.abs() < self.zero.abs() {
                self.zero = v;
            }
        }
    }
}

/// Rows of a group and their scores' aggregates (val, test, train).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Agg {
    /// Rows, null and non-finite scores included.
    pub count: u64,
    /// val, test, train.
    pub scores: [ScoreAgg; 3],
}

impl Agg {
    #[inline]
    fn add(&mut self, scores: &[Option<f64>; 3]) {
        self.count += 1;
        for (a, v) in self.scores.iter_mut().zip(scores) {
            if let Some(v) = v {
                a.add(*v);
            }
        }
    }
}

/// The rows of one (metric, partition): in total, by model and by fold
/// (a null key is `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cell {
    #[allow(missing_docs)]
    pub total: Agg,
    #[allow(missing_docs)]
    pub models: BTreeMap<Option<String>, Agg>,
    #[allow(missing_docs)]
    pub folds: BTreeMap<Option<String>, Agg>,
}

/// (metric, partition), `None` for null.
pub type CellKey = (Option<String>, Option<String>);

/// A file's aggregates by (metric, partition).
#[derive(Debug, Clone, Default)]
pub struct Groups {
    #[allow(missing_docs)]
    pub cells: BTreeMap<CellKey, Cell>,
}

/// Equal when their bytes are: every number bit for bit (a group without
/// a finite score holds NaN as its closest to zero, equal to itself here).
impl PartialEq for Groups {
    fn eq(&self, other: &Self) -> bool {
        self.encode() == other.encode()
    }
}

/// Builds [`Groups`] row by row. Rows come grouped by config (one model,
/// the folds and partitions cycling): each lookup tries the last hit
/// first, then a short linear search, so a row costs a few string
/// comparisons and no allocation once its keys were seen.
#[derive(Debug, Clone, Default)]
pub struct GroupsBuilder {
    cells: Vec<(CellKey, Slots, Slots, Agg)>,
    last: usize,
    /// Too many keys: no aggregates for this file.
    dropped: bool,
}

#[derive(Debug, Clone, Default)]
struct Slots {
    slots: Vec<(Option<String>, Agg)>,
    last: usize,
}

impl Slots {
    #[inline]
    fn get(&mut self, key: Option<&str>) -> Option<&mut Agg> {
        if self
            .slots
            .get(self.last)
            .is_none_or(|(k, _)| k.as_deref() != key)
        {
            match self.slots.iter().position(|(k, _)| k.as_deref() == key) {
                Some(i) => self.last = i,
                None => {
                    if self.slots.len() >= MAX_KEYS {
                        return None;
                    }
                    self.slots.push((key.map(str::to_string), Agg::default()));
                    self.last = self.slots.len() - 1;
                }
            }
        }
        Some(&mut self.slots[self.last].1)
    }

    fn of(map: &BTreeMap<Option<String>, Agg>) -> Slots {
        Slots {
            slots: map.iter().map(|(k, a)| (k.clone(), *a)).collect(),
            last: 0,
        }
    }

    fn to_map(&self) -> BTreeMap<Option<String>, Agg> {
        self.slots.iter().cloned().collect()
    }
}

impl GroupsBuilder {
    /// Continues from stored aggregates; `None` (a file written before
    /// 1.5, or whose aggregates were dropped) gives a builder that stays
    /// empty ([`Self::groups`] is `None`): its old rows are not in it.
    pub fn from_groups(g: Option<&Groups>) -> GroupsBuilder {
        let Some(g) = g else {
            return GroupsBuilder {
                dropped: true,
                ..GroupsBuilder::default()
            };
        };
        GroupsBuilder {
            cells: g
                .cells
                .iter()
                .map(|(k, c)| {
                    (
                        k.clone(),
                        Slots::of(&c.models),
                        Slots::of(&c.folds),
                        c.total,
                    )
                })
                .collect(),
            last: 0,
            dropped: false,
        }
    }

    /// Adds one row. O(keys seen) at worst, O(1) for a row whose keys
    /// repeat the previous row's.
    #[inline]
    pub fn add(
        &mut self,
        metric: Option<&str>,
        partition: Option<&str>,
        model: Option<&str>,
        fold: Option<&str>,
        scores: &[Option<f64>; 3],
    ) {
        if self.dropped {
            return;
        }
        let hit = |(k, ..): &(CellKey, Slots, Slots, Agg)| {
            k.0.as_deref() == metric && k.1.as_deref() == partition
        };
        if !self.cells.get(self.last).is_some_and(hit) {
            match self.cells.iter().position(hit) {
                Some(i) => self.last = i,
                None => {
                    self.cells.push((
                        (metric.map(str::to_string), partition.map(str::to_string)),
                        Slots::default(),
                        Slots::default(),
                        Agg::default(),
                    ));
                    self.last = self.cells.len() - 1;
                }
            }
        }
        let (_, models, folds, total) = &mut self.cells[self.last];
        total.add(scores);
        match (models.get(model), folds.get(fold)) {
            (Some(m), Some(f)) => {
                m.add(scores);
                f.add(scores);
            }
            _ => {
                self.dropped = true;
                self.cells = Vec::new();
            }
        }
    }

    /// The aggregates so far; `None` once dropped.
    pub fn groups(&self) -> Option<Groups> {
        if self.dropped {
            return None;
        }
        Some(Groups {
            cells: self
                .cells
                .iter()
                .map(|(k, m, f, t)| {
                    (
                        k.clone(),
                        Cell {
                            total: *t,
                            models: m.to_map(),
                            folds: f.to_map(),
                        },
                    )
                })
                .collect(),
        })
    }
}

const MAGIC: &[u8; 4] = b"N4G1";

fn put_u(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_os(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            put_u(out, s.len() as u64 + 1);
            out.extend_from_slice(s.as_bytes());
        }
        None => out.push(0),
    }
}

fn put_agg(out: &mut Vec<u8>, a: &Agg) {
    put_u(out, a.count);
    for s in &a.scores {
        put_u(out, s.n);
        if s.n > 0 {
            for v in [s.sum, s.min, s.max, s.zero] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

impl Groups {
    /// The bytes stored in the file's body: `"N4G1"`, then per cell its
    /// metric and partition (optional strings), total, models and folds;
    /// varints, floats little-endian. O(keys).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        put_u(&mut out, self.cells.len() as u64);
        for ((metric, part), c) in &self.cells {
            put_os(&mut out, metric.as_deref());
            put_os(&mut out, part.as_deref());
            put_agg(&mut out, &c.total);
            for map in [&c.models, &c.folds] {
                put_u(&mut out, map.len() as u64);
                for (k, a) in map {
                    put_os(&mut out, k.as_deref());
                    put_agg(&mut out, a);
                }
            }
        }
        out
    }

    /// Decodes [`Self::encode`]'s bytes. O(bytes).
    ///
    /// # Errors
    /// A message saying what is malformed.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Groups, String> {
        let mut c = Reader { buf: bytes, pos: 0 };
        if c.take(4)? != MAGIC {
            return Err("no N4G1 magic".into());
        }
        let mut g = Groups::default();
        for _ in 0..c.len()? {
            let metric = c.os()?;
            let part = c.os()?;
            let total = c.agg()?;
            let mut maps = [BTreeMap::new(), BTreeMap::new()];
            for map in &mut maps {
                for _ in 0..c.len()? {
                    let k = c.os()?;
                    map.insert(k, c.agg()?);
                }
            }
            let [models, folds] = maps;
            g.cells.insert(
                (metric, part),
                Cell {
                    total,
                    models,
                    folds,
                },
            );
        }
        if c.pos != bytes.len() {
            return Err("bytes after the groups".into());
        }
        Ok(g)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let out = self
            .buf
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or("groups end early")?;
        self.pos += n;
        Ok(out)
    }

    fn u(&mut self) -> std::result::Result<u64, String> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err("varint too long".into())
    }

    fn len(&mut self) -> std::result::Result<usize, String> {
        let n = self.u()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err("count larger than the bytes left".into());
        }
        Ok(n as usize)
    }

    fn os(&mut self) -> std::result::Result<Option<String>, String> {
        match self.u()? {
            0 => Ok(None),
            n => {
                let b = self.take(usize::try_from(n - 1).map_err(|_| "length too large")?)?;
                std::str::from_utf8(b)
                    .map(|s| Some(s.to_string()))
                    .map_err(|_| "a key that is not UTF-8".to_string())
            }
        }
    }

    fn agg(&mut self) -> std::result::Result<Agg, String> {
        let mut a = Agg {
            count: self.u()?,
            ..Agg::default()
        };
        for s in &mut a.scores {
            s.n = self.u()?;
            if s.n > 0 {
                let mut f = || -> std::result::Result<f64, String> {
                    Ok(f64::from_le_bytes(
                        self.take(8)?.try_into().expect("8 bytes"),
                    ))
                };
                s.sum = f()?;
                s.min = f()?;
                s.max = f()?;
                s.zero = f()?;
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_round_trip_and_refuse_damaged_bytes() {
        let mut b = GroupsBuilder::from_groups(Some(&Groups::default()));
        let rows = [
            (
                Some("mse"),
                Some("val"),
                Some("PLS"),
                Some("0"),
                [Some(1.0), None, Some(f64::NAN)],
            ),
            (
                Some("mse"),
                Some("val"),
                Some("PLS"),
                Some("1"),
                [Some(-0.5), Some(2.0), Some(3.0)],
            ),
            (Some("mse"), None, None, None, [None, None, None]),
            (
                None,
                Some("test"),
                Some("RF"),
                Some("0"),
                [Some(4.0), Some(f64::INFINITY), None],
            ),
        ];
        for (m, p, model, fold, s) in &rows {
            b.add(*m, *p, *model, *fold, s);
        }
        let g = b.groups().unwrap();
        let cell = &g.cells[&(Some("mse".into()), Some("val".into()))];
        assert_eq!(cell.total.count, 2);
        assert_eq!(cell.total.scores[0].sum, 0.5);
        assert_eq!(cell.total.scores[0].zero, -0.5);
        assert_eq!(cell.models[&Some("PLS".into())].scores[2].n, 1);
        assert_eq!(g.cells[&(None, Some("test".into()))].total.scores[1].n, 0);
        let bytes = g.encode();
        assert_eq!(Groups::decode(&bytes).unwrap(), g);
        assert!(Groups::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Groups::decode(&extra).is_err());
        assert!(Groups::decode(b"N4G2\x00").is_err());
        // An append continues the aggregates.
        let mut more = GroupsBuilder::from_groups(Some(&g));
        more.add(
            Some("mse"),
            Some("val"),
            Some("PLS"),
            Some("0"),
            &[Some(2.0), None, None],
        );
        let g2 = more.groups().unwrap();
        let cell = &g2.cells[&(Some("mse".into()), Some("val".into()))];
        assert_eq!((cell.total.count, cell.total.scores[0].sum), (3, 2.5));
        // A file of before 1.5 stays without aggregates.
        let mut none = GroupsBuilder::from_groups(None);
        none.add(
            Some("mse"),
            Some("val"),
            None,
            None,
            &[Some(1.0), None, None],
        );
        assert!(none.groups().is_none());
    }

    #[test]
    fn too_many_models_drop_the_aggregates() {
        let mut b = GroupsBuilder::from_groups(Some(&Groups::default()));
        for i in 0..=MAX_KEYS {
            b.add(
                Some("mse"),
                Some("val"),
                Some(&format!("m{i}")),
                None,
                &[Some(1.0), None, None],
            );
        }
        assert!(b.groups().is_none());
    }
}
