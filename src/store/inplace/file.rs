//! The `predictions` table read from the database file itself: its b-tree
//! walked, each leaf's records decoded for the asked columns only, on two
//! threads, with no SQL statement per row.
//!
//! Why: on the 1M-row bench store a SQLite pass is bound by SQLite's own
//! per-row work (the virtual machine, one `pread` and one copy per 4 KiB
//! page, three calls per cell), which left a page query at 0.65-0.7 s and
//! a summary at 1.5-2 s where DuckDB's scanner answers in 0.95-1.0 s.
//! Here runs of leaf pages that follow each other in the file are read
//! with one `pread` of up to 1 MiB into a reused buffer (mapping the file
//! instead cost more in page faults and the final `munmap` than the
//! copies, and put the file in the resident size), and each record's
//! header is decoded only up to the last column asked. SQLite's file
//! format is stable and documented
//! (<https://www.sqlite.org/fileformat2.html>).
//!
//! When it is sound, and only then: UTF-8 text, a rollback journal or a
//! WAL whose every frame is already copied into the database file
//! (`-shm`'s `nBackfill == mxFrame`), checked while a read transaction is
//! held on a SQLite connection, which keeps a checkpoint from changing the
//! file until the read ends. Anything else (frames only in the WAL, an
//! integer primary key, a column default that is not a plain literal, a
//! page this reader does not know) makes the caller read through SQLite.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::error::{Error, Result};

use super::read::{Collect, Lookups, Pass, Plan};

/// A column's value in a record too short to hold it (added later by
/// `ALTER TABLE ... ADD COLUMN`): its declared default.
#[derive(Debug, Clone)]
enum Default {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
}

/// The database file, open, with what reading its table needs.
pub(super) struct DbFile {
    file: std::fs::File,
    len: usize,
    page: usize,
    usable: usize,
    root: u32,
    /// Each `predictions` column's index in a record, by name.
    columns: HashMap<String, usize>,
    defaults: Vec<Option<Default>>,
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// SQLite's varint at `b[at..]`: its value and length. Serial types and
/// cell sizes are one or two bytes almost always: those are read first.
#[inline]
fn varint(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let x = *b.get(at)?;
    if x < 0x80 {
        return Some((u64::from(x), 1));
    }
    let y = *b.get(at + 1)?;
    if y < 0x80 {
        return Some(((u64::from(x & 0x7f) << 7) | u64::from(y), 2));
    }
    varint_long(b, at)
}

#[cold]
fn varint_long(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for i in 0..8 {
        let x = *b.get(at + i)?;
        v = (v << 7) | u64::from(x & 0x7f);
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    let x = *b.get(at + 8)?;
    Some(((v << 8) | u64::from(x), 9))
}

fn parse_default(d: Option<String>) -> Option<Default> {
    let Some(d) = d else {
        return Some(Default::Null);
    };
    let t = d.trim();
    if t.eq_ignore_ascii_case("null") {
        return Some(Default::Null);
    }
    if let Ok(n) = t.parse::<i64>() {
        return Some(Default::Int(n));
    }
    if let Ok(x) = t.parse::<f64>() {
        return Some(Default::Real(x));
    }
    if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        return Some(Default::Text(
            t[1..t.len() - 1].replace("''", "'").into_bytes(),
        ));
    }
    None
}

impl DbFile {
    /// Maps the database file for a direct read, or `None` when such a
    /// read would not be sound (see the module documentation). `guard`
    /// must hold a read transaction that has read (so its snapshot and
    /// read lock are taken) for as long as the map is read.
    ///
    /// # Errors
    /// [`Error::Sqlite`] for a failed `PRAGMA`; [`Error::Io`] mapping it.
    pub(super) fn open(db: &Path, guard: &Connection) -> Result<Option<DbFile>> {
        let sql = |e| Error::sqlite(db, e);
        let encoding: String = guard
            .query_row("PRAGMA encoding", [], |r| r.get(0))
            .map_err(sql)?;
        if encoding != "UTF-8" {
            return Ok(None);
        }
        let root: i64 = match guard.query_row(
            "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'predictions'",
            [],
            |r| r.get(0),
        ) {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        let mut columns = HashMap::new();
        let mut defaults = Vec::new();
        {
            let mut st = guard
                .prepare("PRAGMA table_info(predictions)")
                .map_err(sql)?;
            let mut rows = st.query([]).map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                let cid: i64 = r.get(0).map_err(sql)?;
                let name: String = r.get(1).map_err(sql)?;
                let ty: String = r.get(2).map_err(sql)?;
                let dflt: Option<String> = r.get(4).map_err(sql)?;
                let pk: i64 = r.get(5).map_err(sql)?;
                if pk > 0 && ty.eq_ignore_ascii_case("integer") {
                    // An integer primary key lives in the rowid, not the
                    // record.
                    return Ok(None);
                }
                columns.insert(name, cid as usize);
                defaults.push(parse_default(dflt));
            }
        }
        if !wal_is_in_file(db)? {
            return Ok(None);
        }
        let file = std::fs::File::open(db).map_err(|e| Error::io(db, e))?;
        let len = file.metadata().map_err(|e| Error::io(db, e))?.len() as usize;
        let mut head = [0u8; 100];
        if file.read_exact_at(&mut head, 0).is_err()
            || head.get(..16) != Some(b"SQLite format 3\0".as_slice())
        {
            return Ok(None);
        }
        let head = head.as_slice();
        let page = match be16(head, 16) {
            Some(1) => 65536,
            Some(p) if p >= 512 && p.is_power_of_two() => p,
            _ => return Ok(None),
        };
        let reserved = usize::from(head[20]);
        Ok(Some(DbFile {
            file,
            len,
            page,
            usable: page - reserved,
            root: u32::try_from(root).unwrap_or(0),
            columns,
            defaults,
        }))
    }

    /// Reads `count` pages from page `n` (1-based) on into `buf`.
    fn read_pages(&self, n: u32, count: usize, buf: &mut Vec<u8>) -> Option<()> {
        let n = n as usize;
        if n == 0 || (n - 1 + count) * self.page > self.len {
            return None;
        }
        buf.resize(count * self.page, 0);
        self.file
            .read_exact_at(buf, ((n - 1) * self.page) as u64)
            .ok()
    }

    /// Where page `n`'s b-tree header starts (after the file header on
    /// page 1).
    fn header_at(n: u32) -> usize {
        if n == 1 {
            100
        } else {
            0
        }
    }

    /// The table's leaf pages in `rowid` order. A b-tree is balanced, so
    /// the depth of its leftmost leaf is every leaf's: the interior pages
    /// (about 1% of the table) are read, the leaves only listed.
    pub(super) fn leaves(&self) -> Option<Vec<u32>> {
        let mut buf = Vec::new();
        let interior = |buf: &[u8], h: usize| -> Option<Vec<u32>> {
            let cells = be16(buf, h + 3)?;
            let mut out = Vec::with_capacity(cells + 1);
            for i in 0..cells {
                let at = be16(buf, h + 12 + 2 * i)?;
                out.push(be32(buf, at)?);
            }
            out.push(be32(buf, h + 8)?);
            Some(out)
        };
        // The depth: interior levels above the leaves.
        let mut depth = 0usize;
        let mut n = self.root;
        loop {
            self.read_pages(n, 1, &mut buf)?;
            let h = Self::header_at(n);
            match *buf.get(h)? {
                0x0d => break,
                0x05 => {
                    n = *interior(&buf, h)?.first()?;
                    depth += 1;
                    if depth > 64 {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        let mut level = vec![self.root];
        for _ in 0..depth {
            let mut next = Vec::with_capacity(level.len() * 256);
            for &n in &level {
                self.read_pages(n, 1, &mut buf)?;
                let h = Self::header_at(n);
                if buf.get(h) != Some(&0x05) {
                    return None;
                }
                next.extend(interior(&buf, h)?);
            }
            if next.len() > self.len / self.page {
                return None;
            }
            level = next;
        }
        Some(level)
    }

    /// Reads `plan`'s columns of the rows of `leaves` into a pass, or
    /// `None` when a page or record is not what this reader knows (the
    /// caller then reads through SQLite).
    pub(super) fn scan(
        &self,
        leaves: &[u32],
        plan: &Plan,
        lookups: &Lookups,
        db: &Path,
        id_of: &dyn Fn(i64) -> Option<String>,
    ) -> Result<Option<Pass>> {
        // Record index of each of the plan's columns (0 is the rowid).
        let mut want: Vec<usize> = Vec::with_capacity(plan.columns().len());
        for c in plan.columns() {
            if *c == "rowid" {
                want.push(usize::MAX);
                continue;
            }
            match self.columns.get(*c) {
                Some(&i) => want.push(i),
                None => return Ok(None),
            }
        }
        let last = want
            .iter()
            .copied()
            .filter(|&i| i != usize::MAX)
            .max()
            .unwrap_or(0);
        let mut c = Collect::new(plan, lookups);
        let mut offsets: Vec<(u64, usize)> = vec![(0, 0); last + 1];
        let mut spill: Vec<u8> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut at_leaf = 0;
        while at_leaf < leaves.len() {
            // A run of leaves that follow each other in the file, read
            // with one `pread` (up to 1 MiB).
            let first = leaves[at_leaf];
            let mut run = 1;
            while at_leaf + run < leaves.len()
                && leaves[at_leaf + run] == first + run as u32
                && run * self.page < 1 << 20
            {
                run += 1;
            }
            if self.read_pages(first, run, &mut buf).is_none() {
                return Ok(None);
            }
            at_leaf += run;
            for r in 0..run {
                let n = first + r as u32;
                let p = &buf[r * self.page..(r + 1) * self.page];
                let h = Self::header_at(n);
                if p.get(h) != Some(&0x0d) {
                    return Ok(None);
                }
                let Some(cells) = be16(p, h + 3) else {
                    return Ok(None);
                };
                for i in 0..cells {
                    let Some(at) = be16(p, h + 8 + 2 * i) else {
                        return Ok(None);
                    };
                    let Some((size, a)) = varint(p, at) else {
                        return Ok(None);
                    };
                    let Some((rowid, b)) = varint(p, at + a) else {
                        return Ok(None);
                    };
                    let start = at + a + b;
                    let size = size as usize;
                    let payload: &[u8] = match self.local(size) {
                        None => match p.get(start..start + size) {
                            Some(x) => x,
                            None => return Ok(None),
                        },
                        Some(local) => {
                            if !self.assemble(p, start, size, local, &mut spill) {
                                return Ok(None);
                            }
                            &spill
                        }
                    };
                    // The record header: serial types of columns 0..=last.
                    let Some((hlen, k)) = varint(payload, 0) else {
                        return Ok(None);
                    };
                    let hlen = hlen as usize;
                    let (mut hp, mut body) = (k, hlen);
                    let mut have = 0usize;
                    while have <= last && hp < hlen {
                        let Some((t, k)) = varint(payload, hp) else {
                            return Ok(None);
                        };
                        hp += k;
                        offsets[have] = (t, body);
                        body += serial_len(t);
                        have += 1;
                    }
                    if body > payload.len() && have > 0 {
                        return Ok(None);
                    }
                    let value = |j: usize| -> Result<ValueRef<'_>> {
                        let col = want[j];
                        if col == usize::MAX {
                            return Ok(ValueRef::Integer(rowid as i64));
                        }
                        if col >= have {
                            return match self.defaults.get(col) {
                                Some(Some(d)) => Ok(match d {
                                    Default::Null => ValueRef::Null,
                                    Default::Int(n) => ValueRef::Integer(*n),
                                    Default::Real(x) => ValueRef::Real(*x),
                                    Default::Text(t) => ValueRef::Text(t),
                                }),
                                _ => Err(Error::corrupt(
                                    db,
                                    "a column default this reader does not know",
                                )),
                            };
                        }
                        let (t, o) = offsets[col];
                        decode(payload, t, o)
                            .ok_or_else(|| Error::corrupt(db, "a record this reader does not know"))
                    };
                    let ds = match value(1) {
                        Ok(ValueRef::Text(t)) => t,
                        Ok(_) => continue,
                        Err(_) => return Ok(None),
                    };
                    // A value the reader cannot decode (the only error `row`
                    // returns here) sends the whole pass back to SQLite
                    // rather than calling the row bad.
                    if c.row(rowid as i64, ds, value, id_of, db).is_err() {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(c.finish()))
    }

    /// `None` when a payload of `size` bytes is all on its leaf page, else
    /// the bytes that are (the rest is on overflow pages).
    fn local(&self, size: usize) -> Option<usize> {
        let u = self.usable;
        let x = u - 35;
        if size <= x {
            return None;
        }
        let m = ((u - 12) * 32 / 255) - 23;
        let k = m + ((size - m) % (u - 4));
        Some(if k <= x { k } else { m })
    }

    /// The whole payload of a cell whose tail is on overflow pages, into
    /// `out`; false on a broken chain.
    fn assemble(
        &self,
        p: &[u8],
        start: usize,
        size: usize,
        local: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        out.clear();
        let Some(head) = p.get(start..start + local) else {
            return false;
        };
        out.extend_from_slice(head);
        let Some(mut next) = be32(p, start + local) else {
            return false;
        };
        let mut hops = 0usize;
        let mut q = Vec::new();
        while out.len() < size {
            if self.read_pages(next, 1, &mut q).is_none() {
                return false;
            }
            let take = (size - out.len()).min(self.usable - 4);
            let Some(chunk) = q.get(4..4 + take) else {
                return false;
            };
            out.extend_from_slice(chunk);
            next = be32(&q, 0).unwrap_or(0);
            hops += 1;
            if hops > self.len / self.page {
                return false;
            }
        }
        true
    }
}

/// Bytes a value of serial type `t` takes in a record body.
fn serial_len(t: u64) -> usize {
    match t {
        0 | 8 | 9 | 10 | 11 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 => 6,
        6 | 7 => 8,
        t => ((t - 12) / 2) as usize,
    }
}

/// The value of serial type `t` at `b[at..]`.
fn decode(b: &[u8], t: u64, at: usize) -> Option<ValueRef<'_>> {
    let int = |n: usize| -> Option<i64> {
        let s = b.get(at..at + n)?;
        let mut v: i64 = if s[0] & 0x80 != 0 { -1 } else { 0 };
        for &x in s {
            v = (v << 8) | i64::from(x);
        }
        Some(v)
    };
    Some(match t {
        0 => ValueRef::Null,
        1 => ValueRef::Integer(int(1)?),
        2 => ValueRef::Integer(int(2)?),
        3 => ValueRef::Integer(int(3)?),
        4 => ValueRef::Integer(int(4)?),
        5 => ValueRef::Integer(int(6)?),
        6 => ValueRef::Integer(int(8)?),
        7 => ValueRef::Real(f64::from_bits(u64::from_be_bytes(
            b.get(at..at + 8)?.try_into().ok()?,
        ))),
        8 => ValueRef::Integer(0),
        9 => ValueRef::Integer(1),
        t if t >= 12 && t % 2 == 0 => ValueRef::Blob(b.get(at..at + ((t - 12) / 2) as usize)?),
        t if t >= 13 => ValueRef::Text(b.get(at..at + ((t - 13) / 2) as usize)?),
        _ => return None,
    })
}

/// True when the database file holds every committed page: a rollback
/// journal, or a WAL that is absent, empty, or whose frames are all
/// copied back (`nBackfill == mxFrame` in both copies of the `-shm`
/// header, read while the caller holds its read transaction).
fn wal_is_in_file(db: &Path) -> Result<bool> {
    let wal = db.with_file_name(format!(
        "{}-wal",
        db.file_name().unwrap_or_default().to_string_lossy()
    ));
    match std::fs::metadata(&wal) {
        Err(_) => return Ok(true),
        Ok(m) if m.len() == 0 => return Ok(true),
        Ok(_) => {}
    }
    let shm = db.with_file_name(format!(
        "{}-shm",
        db.file_name().unwrap_or_default().to_string_lossy()
    ));
    let Ok(bytes) = std::fs::read(&shm) else {
        return Ok(false);
    };
    let (Some(h1), Some(h2), Some(fill)) =
        (bytes.get(0..48), bytes.get(48..96), bytes.get(96..100))
    else {
        return Ok(false);
    };
    if h1 != h2 || h1[12] != 1 {
        return Ok(false);
    }
    let mx = u32::from_ne_bytes(h1[16..20].try_into().unwrap_or_default());
    let backfilled = u32::from_ne_bytes(fill.try_into().unwrap_or_default());
    Ok(mx == backfilled)
}
