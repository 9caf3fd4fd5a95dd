//! The `predictions` table and its indexes written as SQLite b-tree pages
//! into a database SQLite itself created, instead of one `INSERT` a row.
//!
//! Why: on the 1M-prediction bench workspace the export spent ~20 s in
//! SQLite's per-row work (each row a random insert into seven b-trees:
//! the table's `TEXT PRIMARY KEY` and nirs4all's six indexes, page-cache
//! lookups and cell moves in `perf`); building the indexes after the rows
//! (`CREATE INDEX` sorts) still cost 5.8 s, as each one rescans the table.
//! Here rows arrive in `rowid` order, so the table's leaves are written
//! as they fill, and each index's keys are kept compact (dictionary codes,
//! one arena for the ids), sorted once and written leaf by leaf, bottom-up:
//! every page is written once, in file order.
//!
//! What SQLite creates (schema, the empty trees' root pages, the other
//! tables) is left as SQLite wrote it: the trees are appended after the
//! last page, each root written over its empty root page, then the header's
//! page count and change counter are set. The file is then SQLite's again
//! (the export's other tables are inserted through it, and the tests run
//! `PRAGMA integrity_check` on what this writes). SQLite's file format is
//! stable and documented (<https://www.sqlite.org/fileformat2.html>); this
//! writes only what a fresh database needs: no freelist, no auto-vacuum
//! pointer maps, UTF-8, no reserved bytes (each checked, else an error).
//!
//! Memory: the keys of the indexed columns, about 80 bytes a prediction
//! on nirs4all's schema (ids in one arena, repeated texts as codes), plus
//! one sort permutation (4 bytes a row) and an 8 MiB write buffer.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::slice::ParallelSliceMut;
use rusqlite::Connection;

use crate::error::{Error, Result};

/// The table this writer fills.
const TABLE: &str = "predictions";

/// SQLite never uses the page holding the byte at this offset (its lock
/// bytes live there): a file past 1 GiB skips that page.
const PENDING_BYTE: u64 = 0x4000_0000;

/// Pages buffered before one write.
const FLUSH_BYTES: usize = 8 << 20;

/// A value of a record, as SQLite's record format stores it. A `NaN` real
/// is stored as NULL, as SQLite stores a bound `NaN`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
}

impl Value<'_> {
    /// An optional text.
    pub(super) fn text(v: Option<&str>) -> Value<'_> {
        v.map_or(Value::Null, Value::Text)
    }

    /// An optional integer.
    pub(super) fn int(v: Option<i64>) -> Value<'static> {
        v.map_or(Value::Null, Value::Int)
    }

    /// An optional real (`NaN` is NULL).
    pub(super) fn real(v: Option<f64>) -> Value<'static> {
        match v {
            Some(x) if !x.is_nan() => Value::Real(x),
            _ => Value::Null,
        }
    }

    fn serial(&self) -> (u64, usize) {
        match *self {
            Value::Null => (0, 0),
            Value::Int(0) => (8, 0),
            Value::Int(1) => (9, 0),
            Value::Int(i) => int_size(i),
            Value::Real(x) if x.is_nan() => (0, 0),
            Value::Real(_) => (7, 8),
            Value::Text(s) => (2 * s.len() as u64 + 13, s.len()),
        }
    }

    fn body(&self, out: &mut Vec<u8>) {
        match *self {
            Value::Null | Value::Int(0 | 1) => {}
            Value::Int(i) => {
                let n = int_size(i).1;
                out.extend_from_slice(&i.to_be_bytes()[8 - n..]);
            }
            Value::Real(x) if x.is_nan() => {}
            Value::Real(x) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
            Value::Text(s) => out.extend_from_slice(s.as_bytes()),
        }
    }
}

/// An integer's serial type and byte count: the smallest that holds it.
fn int_size(i: i64) -> (u64, usize) {
    if i8::try_from(i).is_ok() {
        (1, 1)
    } else if i16::try_from(i).is_ok() {
        (2, 2)
    } else if (-(1 << 23)..(1 << 23)).contains(&i) {
        (3, 3)
    } else if i32::try_from(i).is_ok() {
        (4, 4)
    } else if (-(1 << 47)..(1 << 47)).contains(&i) {
        (5, 6)
    } else {
        (6, 8)
    }
}

fn varint_len(v: u64) -> usize {
    if v > 0x00ff_ffff_ffff_ffff {
        return 9;
    }
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// SQLite's varint: big-endian groups of 7 bits, the ninth byte whole.
fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v <= 0x7f {
        out.push(v as u8);
        return;
    }
    let mut buf = [0u8; 9];
    if v > 0x00ff_ffff_ffff_ffff {
        buf[8] = v as u8;
        let mut w = v >> 8;
        for b in buf[..8].iter_mut().rev() {
            *b = (w & 0x7f) as u8 | 0x80;
            w >>= 7;
        }
        out.extend_from_slice(&buf);
        return;
    }
    let n = varint_len(v);
    let mut w = v;
    for i in (0..n).rev() {
        buf[i] = (w & 0x7f) as u8 | if i + 1 < n { 0x80 } else { 0 };
        w >>= 7;
    }
    out.extend_from_slice(&buf[..n]);
}

/// `values` as one record (header of serial types, then the bodies) into
/// `out`, which is cleared first.
pub(super) fn record(out: &mut Vec<u8>, values: &[Value<'_>]) {
    out.clear();
    let types: usize = values.iter().map(|v| varint_len(v.serial().0)).sum();
    let mut header = types + 1;
    while types + varint_len(header as u64) != header {
        header = types + varint_len(header as u64);
    }
    put_varint(out, header as u64);
    for v in values {
        put_varint(out, v.serial().0);
    }
    for v in values {
        v.body(out);
    }
}

/// The database's pages: new ones appended through a buffer, in order,
/// each full buffer written by [`Writes`]' thread.
struct Pages {
    file: File,
    path: PathBuf,
    size: usize,
    /// Pages in the file, the buffered ones included.
    count: u32,
    /// Buffered pages, the first being page `count - buf.len() / size + 1`.
    buf: Vec<u8>,
    writes: Writes,
}

/// Whole buffers written at their offsets by a thread of their own: the
/// kernel's copy of the pages into the page cache (a sixth of the export's
/// time on one thread, measured on the 1M-row bench store) runs beside the
/// building of the next pages. At most three buffers exist (one filling,
/// one queued, one being written): 24 MiB.
struct Writes {
    tx: Option<std::sync::mpsc::SyncSender<(u64, Vec<u8>)>>,
    /// Buffers written, to be filled again (no new allocation to fault in).
    back: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Writes {
    fn start(file: &File) -> std::io::Result<Self> {
        let file = file.try_clone()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(1);
        let (back_tx, back) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("n4a-export-writes".into())
            .spawn(move || {
                for (at, mut buf) in rx {
                    file.write_all_at(&buf, at)?;
                    buf.clear();
                    let _ = back_tx.send(buf);
                }
                Ok(())
            })?;
        Ok(Writes {
            tx: Some(tx),
            back,
            thread: Some(thread),
        })
    }

    /// Waits for every write sent; the first failure, if any.
    fn wait(&mut self) -> std::io::Result<()> {
        drop(self.tx.take());
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the writing thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

impl Pages {
    fn new(file: File, path: &Path, size: usize, count: u32) -> Result<Self> {
        let writes = Writes::start(&file).map_err(|e| Error::io(path, e))?;
        Ok(Pages {
            file,
            path: path.to_path_buf(),
            size,
            count,
            buf: Vec::new(),
            writes,
        })
    }

    fn io(&self, e: std::io::Error) -> Error {
        Error::io(&self.path, e)
    }

    /// A new page at the end, zeroed, buffered until [`Pages::flush`].
    fn alloc(&mut self) -> u32 {
        loop {
            self.count += 1;
            self.buf.resize(self.buf.len() + self.size, 0);
            let start = u64::from(self.count - 1) * self.size as u64;
            if !(start..start + self.size as u64).contains(&PENDING_BYTE) {
                return self.count;
            }
        }
    }

    /// A page allocated and still buffered.
    fn page_mut(&mut self, pgno: u32) -> &mut [u8] {
        let first = self.count as usize + 1 - self.buf.len() / self.size;
        let at = (pgno as usize - first) * self.size;
        &mut self.buf[at..at + self.size]
    }

    /// A new page holding `data`.
    fn append(&mut self, data: &[u8]) -> u32 {
        let pgno = self.alloc();
        self.page_mut(pgno).copy_from_slice(data);
        pgno
    }

    /// Writes the buffer once it is large (every buffered page complete).
    fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the buffer to the writing thread (every buffered page
    /// complete) and takes a written one back to fill.
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let first = u64::from(self.count) - (self.buf.len() / self.size) as u64;
        let next = self
            .writes
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(FLUSH_BYTES + self.size));
        let buf = std::mem::replace(&mut self.buf, next);
        let sent = match &self.writes.tx {
            Some(tx) => tx.send((first * self.size as u64, buf)).is_ok(),
            None => false,
        };
        if !sent {
            // The thread stopped: its error says why.
            self.writes.wait().map_err(|e| self.io(e))?;
            return Err(self.io(std::io::Error::other("the writing thread stopped")));
        }
        Ok(())
    }

    /// Flushes and waits for every page to be written.
    fn sync_writes(&mut self) -> Result<()> {
        self.flush()?;
        self.writes.wait().map_err(|e| self.io(e))
    }

    /// An existing page (a root) overwritten with `data`.
    fn put_at(&self, pgno: u32, data: &[u8]) -> Result<()> {
        self.file
            .write_all_at(data, u64::from(pgno - 1) * self.size as u64)
            .map_err(|e| self.io(e))
    }
}

/// Page geometry and payload limits (fileformat2, "B-tree Page Format").
#[derive(Clone, Copy)]
struct Geometry {
    usable: usize,
    /// Largest payload kept whole on a table leaf / an index page.
    table_max: usize,
    index_max: usize,
    /// Smallest local part of a payload that spills.
    min_local: usize,
}

impl Geometry {
    fn new(usable: usize) -> Self {
        Geometry {
            usable,
            table_max: usable - 35,
            index_max: (usable - 12) * 64 / 255 - 23,
            min_local: (usable - 12) * 32 / 255 - 23,
        }
    }

    fn local(&self, payload: usize, max: usize) -> usize {
        if payload <= max {
            return payload;
        }
        let k = self.min_local + (payload - self.min_local) % (self.usable - 4);
        if k <= max {
            k
        } else {
            self.min_local
        }
    }
}

/// `payload`'s part kept in a cell (and the first overflow page's number
/// after it when it spills), appended to `cell`; the rest written to a
/// chain of overflow pages.
fn put_payload(pages: &mut Pages, g: Geometry, max: usize, cell: &mut Vec<u8>, payload: &[u8]) {
    let local = g.local(payload.len(), max);
    cell.extend_from_slice(&payload[..local]);
    if local == payload.len() {
        return;
    }
    let chunk = g.usable - 4;
    let rest = &payload[local..];
    let n = rest.len().div_ceil(chunk);
    let chain: Vec<u32> = (0..n).map(|_| pages.alloc()).collect();
    cell.extend_from_slice(&chain[0].to_be_bytes());
    for (i, part) in rest.chunks(chunk).enumerate() {
        let next = chain.get(i + 1).copied().unwrap_or(0);
        let page = pages.page_mut(chain[i]);
        page[..4].copy_from_slice(&next.to_be_bytes());
        page[4..4 + part.len()].copy_from_slice(part);
    }
}

/// One page being filled with cells, content from the end down.
struct PageBuild {
    data: Vec<u8>,
    kind: u8,
    header: usize,
    usable: usize,
    cells: usize,
    top: usize,
}

const TABLE_LEAF: u8 = 0x0d;
const TABLE_INTERIOR: u8 = 0x05;
const INDEX_LEAF: u8 = 0x0a;
const INDEX_INTERIOR: u8 = 0x02;

impl PageBuild {
    fn new(kind: u8, size: usize, usable: usize) -> Self {
        PageBuild {
            data: vec![0; size],
            kind,
            header: if kind == TABLE_LEAF || kind == INDEX_LEAF {
                8
            } else {
                12
            },
            usable,
            cells: 0,
            top: usable,
        }
    }

    fn room(&self, cell: usize) -> bool {
        self.header + 2 * (self.cells + 1) + cell <= self.top
    }

    fn add(&mut self, cell: &[u8]) {
        self.top -= cell.len();
        self.data[self.top..self.top + cell.len()].copy_from_slice(cell);
        let ptr = self.header + 2 * self.cells;
        self.data[ptr..ptr + 2].copy_from_slice(&(self.top as u16).to_be_bytes());
        self.cells += 1;
    }

    /// The page's bytes with its header written; `right` is an interior
    /// page's right-most child.
    fn finish(&mut self, right: u32) -> &[u8] {
        let d = &mut self.data;
        d[0] = self.kind;
        d[1..3].fill(0);
        d[3..5].copy_from_slice(&(self.cells as u16).to_be_bytes());
        let top = if self.top == 65536 {
            0
        } else {
            self.top as u16
        };
        d[5..7].copy_from_slice(&top.to_be_bytes());
        d[7] = 0;
        if self.header == 12 {
            d[8..12].copy_from_slice(&right.to_be_bytes());
        }
        &self.data
    }

    fn reset(&mut self) {
        self.data.fill(0);
        self.cells = 0;
        self.top = self.usable;
    }
}

/// A table b-tree written bottom-up from rows in `rowid` order.
struct TableTree {
    leaf: PageBuild,
    leaf_max: i64,
    leaves: usize,
    /// Interior levels: the pending (child, its largest rowid) of each.
    levels: Vec<Level<i64>>,
    cell: Vec<u8>,
}

/// An interior level: the entries of the page being filled, and whether
/// a page of this level was written already (else it may be the root).
struct Level<K> {
    pending: Vec<(u32, K)>,
    bytes: usize,
    flushed: bool,
}

impl<K> Level<K> {
    fn new() -> Self {
        Level {
            pending: Vec::new(),
            bytes: 0,
            flushed: false,
        }
    }
}

impl TableTree {
    fn new(size: usize, usable: usize) -> Self {
        TableTree {
            leaf: PageBuild::new(TABLE_LEAF, size, usable),
            leaf_max: 0,
            leaves: 0,
            levels: Vec::new(),
            cell: Vec::new(),
        }
    }

    fn push(&mut self, pages: &mut Pages, g: Geometry, rowid: i64, payload: &[u8]) {
        self.cell.clear();
        put_varint(&mut self.cell, payload.len() as u64);
        put_varint(&mut self.cell, rowid as u64);
        let mut cell = std::mem::take(&mut self.cell);
        put_payload(pages, g, g.table_max, &mut cell, payload);
        if !self.leaf.room(cell.len()) {
            let pgno = pages.append(self.leaf.finish(0));
            self.leaves += 1;
            self.leaf.reset();
            self.up(pages, 0, pgno, self.leaf_max);
        }
        self.leaf.add(&cell);
        self.leaf_max = rowid;
        self.cell = cell;
    }

    /// Gives level `at` the child `pgno` whose largest rowid is `key`.
    fn up(&mut self, pages: &mut Pages, at: usize, pgno: u32, key: i64) {
        if self.levels.len() == at {
            self.levels.push(Level::new());
        }
        let usable = self.leaf.usable;
        let level = &mut self.levels[at];
        // Every pending entry but the last is a cell; the last is the
        // right-most child. Adding one makes the last a cell too.
        let cells = level.pending.len();
        if cells >= 2 && 12 + level.bytes + 2 * cells + 4 + 9 > usable {
            // Held back: the page ends at the entry before the last, so
            // the next page starts with two entries (one cell at least).
            let keep = level.pending.pop().expect("pending");
            let (right, right_key) = level.pending.pop().expect("two pending");
            let mut page = PageBuild::new(TABLE_INTERIOR, self.leaf.data.len(), usable);
            let mut cell = Vec::with_capacity(13);
            for (child, k) in level.pending.drain(..) {
                cell.clear();
                cell.extend_from_slice(&child.to_be_bytes());
                put_varint(&mut cell, k as u64);
                page.add(&cell);
            }
            let written = pages.append(page.finish(right));
            level.flushed = true;
            level.bytes = 4 + varint_len(keep.1 as u64);
            level.pending.push(keep);
            level.pending.push((pgno, key));
            self.up(pages, at + 1, written, right_key);
            return;
        }
        if let Some(last) = level.pending.last() {
            level.bytes += 4 + varint_len(last.1 as u64);
        }
        level.pending.push((pgno, key));
    }

    /// Writes what is pending, the root at `root`.
    fn finish(mut self, pages: &mut Pages, root: u32) -> Result<()> {
        if self.leaves == 0 {
            return pages.put_at(root, self.leaf.finish(0));
        }
        let pgno = pages.append(self.leaf.finish(0));
        self.up(pages, 0, pgno, self.leaf_max);
        let mut at = 0;
        loop {
            let top = at + 1 == self.levels.len();
            let level = &mut self.levels[at];
            let (right, right_key) = level.pending.pop().expect("a child");
            let mut page = PageBuild::new(TABLE_INTERIOR, self.leaf.data.len(), self.leaf.usable);
            let mut cell = Vec::with_capacity(13);
            for (child, k) in level.pending.drain(..) {
                cell.clear();
                cell.extend_from_slice(&child.to_be_bytes());
                put_varint(&mut cell, k as u64);
                page.add(&cell);
            }
            if top && !level.flushed {
                return pages.put_at(root, page.finish(right));
            }
            let written = pages.append(page.finish(right));
            self.up(pages, at + 1, written, right_key);
            at += 1;
        }
    }
}

/// An index b-tree written bottom-up from its entries in key order. An
/// index b-tree holds each entry once, in a leaf or as the divider of an
/// interior page: the entry that ends a full page goes up.
struct IndexTree {
    size: usize,
    usable: usize,
    g: Geometry,
    /// The leaf being filled: its cells, one arena.
    leaf: Vec<u8>,
    leaf_cells: Vec<(usize, usize)>,
    /// The leaf's cells' bytes.
    leaf_bytes: usize,
    /// Interior levels: pending (left child, divider cell body).
    levels: Vec<Level<Vec<u8>>>,
    leaves: usize,
}

impl IndexTree {
    fn new(size: usize, usable: usize) -> Self {
        IndexTree {
            size,
            usable,
            g: Geometry::new(usable),
            leaf: Vec::new(),
            leaf_cells: Vec::new(),
            leaf_bytes: 0,
            levels: Vec::new(),
            leaves: 0,
        }
    }

    fn leaf_page(&self, cells: &[(usize, usize)]) -> PageBuild {
        let mut page = PageBuild::new(INDEX_LEAF, self.size, self.usable);
        for &(a, b) in cells {
            page.add(&self.leaf[a..b]);
        }
        page
    }

    /// One entry (a record), after every smaller one.
    fn push(&mut self, pages: &mut Pages, payload: &[u8]) {
        let start = self.leaf.len();
        put_varint(&mut self.leaf, payload.len() as u64);
        let mut cell = std::mem::take(&mut self.leaf);
        put_payload(pages, self.g, self.g.index_max, &mut cell, payload);
        self.leaf = cell;
        let len = self.leaf.len() - start;
        if self.leaf_cells.len() >= 2 && 8 + self.leaf_bytes + 2 + len > self.usable {
            // The last entry of the full leaf becomes the divider above it.
            let (da, db) = self.leaf_cells.pop().expect("a full leaf has entries");
            let divider = self.leaf[da..db].to_vec();
            let pgno = {
                let cells = std::mem::take(&mut self.leaf_cells);
                let mut page = self.leaf_page(&cells);
                pages.append(page.finish(0))
            };
            self.leaves += 1;
            let new = self.leaf[start..].to_vec();
            self.leaf.clear();
            self.leaf.extend_from_slice(&new);
            self.leaf_cells.push((0, new.len()));
            self.leaf_bytes = new.len() + 2;
            self.up(pages, 0, pgno, divider);
            return;
        }
        self.leaf_bytes += len + 2;
        self.leaf_cells.push((start, self.leaf.len()));
    }

    /// Gives level `at` the pair (left child `pgno`, `divider`).
    fn up(&mut self, pages: &mut Pages, at: usize, pgno: u32, divider: Vec<u8>) {
        if self.levels.len() == at {
            self.levels.push(Level::new());
        }
        let level = &mut self.levels[at];
        let len = 4 + divider.len();
        if level.pending.len() >= 2
            && 12 + level.bytes + 2 * level.pending.len() + 2 + len > self.usable
        {
            // The last pair's child becomes the page's right-most child and
            // its divider goes up.
            let (right, up_divider) = level.pending.pop().expect("a full page has cells");
            let mut page = PageBuild::new(INDEX_INTERIOR, self.size, self.usable);
            let mut cell = Vec::new();
            for (child, d) in level.pending.drain(..) {
                cell.clear();
                cell.extend_from_slice(&child.to_be_bytes());
                cell.extend_from_slice(&d);
                page.add(&cell);
            }
            let written = pages.append(page.finish(right));
            level.flushed = true;
            level.bytes = len;
            level.pending.push((pgno, divider));
            self.up(pages, at + 1, written, up_divider);
            return;
        }
        level.bytes += len;
        level.pending.push((pgno, divider));
    }

    /// Writes what is pending, the root at `root`.
    fn finish(mut self, pages: &mut Pages, root: u32) -> Result<()> {
        let cells = std::mem::take(&mut self.leaf_cells);
        let mut leaf = self.leaf_page(&cells);
        if self.leaves == 0 {
            return pages.put_at(root, leaf.finish(0));
        }
        let mut right = pages.append(leaf.finish(0));
        let mut at = 0;
        loop {
            let top = at + 1 == self.levels.len();
            let level = &mut self.levels[at];
            let mut page = PageBuild::new(INDEX_INTERIOR, self.size, self.usable);
            let mut cell = Vec::new();
            for (child, d) in level.pending.drain(..) {
                cell.clear();
                cell.extend_from_slice(&child.to_be_bytes());
                cell.extend_from_slice(&d);
                page.add(&cell);
            }
            if top && !level.flushed {
                return pages.put_at(root, page.finish(right));
            }
            right = pages.append(page.finish(right));
            if top {
                // A level that wrote pages has one above it.
                unreachable!("a level with written pages has a parent");
            }
            at += 1;
        }
    }
}

/// The kind of an indexed column, from its declared type.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Real,
    Int,
}

/// An indexed column's values, one a row, kept compact for the sort.
enum KeyColumn {
    /// Texts as codes of a dictionary (`u32::MAX`: NULL).
    Codes {
        codes: Vec<u32>,
        dict: foldhash::HashMap<Box<str>, u32>,
        values: Vec<Box<str>>,
    },
    /// Texts that rarely repeat (the primary key): one arena.
    Arena {
        text: String,
        ends: Vec<usize>,
        nulls: Vec<bool>,
    },
    Real(Vec<Option<f64>>),
    Int(Vec<Option<i64>>),
}

impl KeyColumn {
    fn push(&mut self, v: Value<'_>) {
        match self {
            KeyColumn::Codes {
                codes,
                dict,
                values,
            } => codes.push(match v {
                Value::Text(s) => match dict.get(s) {
                    Some(&c) => c,
                    None => {
                        let c = values.len() as u32;
                        dict.insert(s.into(), c);
                        values.push(s.into());
                        c
                    }
                },
                _ => u32::MAX,
            }),
            KeyColumn::Arena { text, ends, nulls } => {
                if let Value::Text(s) = v {
                    text.push_str(s);
                }
                nulls.push(!matches!(v, Value::Text(_)));
                ends.push(text.len());
            }
            KeyColumn::Real(r) => r.push(match v {
                Value::Real(x) if !x.is_nan() => Some(x),
                Value::Int(i) => Some(i as f64),
                _ => None,
            }),
            KeyColumn::Int(r) => r.push(match v {
                Value::Int(i) => Some(i),
                _ => None,
            }),
        }
    }

    fn value(&self, row: usize) -> Value<'_> {
        match self {
            KeyColumn::Codes { codes, values, .. } => match codes[row] {
                u32::MAX => Value::Null,
                c => Value::Text(&values[c as usize]),
            },
            KeyColumn::Arena { text, ends, nulls } => {
                if nulls[row] {
                    return Value::Null;
                }
                let start = if row == 0 { 0 } else { ends[row - 1] };
                Value::Text(&text[start..ends[row]])
            }
            KeyColumn::Real(r) => Value::real(r[row]),
            KeyColumn::Int(r) => Value::int(r[row]),
        }
    }
}

/// An index of the table: its root and its columns (by position).
struct IndexSpec {
    name: String,
    root: u32,
    columns: Vec<usize>,
    unique: bool,
}

/// The `predictions` rows of an export, written into `db` as they come.
pub(super) struct PredictionsWriter {
    pages: Pages,
    g: Geometry,
    table: TableTree,
    table_root: u32,
    indexes: Vec<IndexSpec>,
    /// The indexed columns' values: by column position.
    keys: HashMap<usize, KeyColumn>,
    columns: usize,
    rows: i64,
    rec: Vec<u8>,
}

impl PredictionsWriter {
    /// Opens the writer over `db`, a new database whose schema SQLite has
    /// written and that holds no `predictions` row; `conn` is that
    /// database's connection, closed by the caller before any
    /// [`PredictionsWriter::push`].
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when the file is not what this writer
    /// writes into (rows already in the table, auto-vacuum, reserved
    /// bytes, not UTF-8, an index on an expression or not in ascending
    /// BINARY order); [`Error::Sqlite`]/[`Error::Io`] naming `db`.
    pub(super) fn open(db: &Path, conn: &Connection, expected: &[&str]) -> Result<Self> {
        let sql = |e| Error::sqlite(db, e);
        let refuse = |why: String| {
            Error::InvalidOption(format!(
                "{}: the predictions table cannot be written directly: {why}",
                db.display()
            ))
        };
        let rows: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {TABLE}"), [], |r| r.get(0))
            .map_err(sql)?;
        if rows != 0 {
            return Err(refuse(format!("it holds {rows} rows")));
        }
        let mut kinds = Vec::new();
        let mut st = conn
            .prepare(&format!(
                "SELECT type, pk, name FROM pragma_table_info('{TABLE}')"
            ))
            .map_err(sql)?;
        let mut it = st.query([]).map_err(sql)?;
        while let Some(r) = it.next().map_err(sql)? {
            let ty: String = r.get(0).map_err(sql)?;
            let pk: i64 = r.get(1).map_err(sql)?;
            let name: String = r.get(2).map_err(sql)?;
            if expected.get(kinds.len()) != Some(&name.as_str()) {
                return Err(refuse(format!(
                    "its column {} is {name:?}, not {:?}",
                    kinds.len(),
                    expected.get(kinds.len())
                )));
            }
            let ty = ty.to_ascii_uppercase();
            if pk > 0 && ty == "INTEGER" {
                return Err(refuse("an INTEGER PRIMARY KEY".into()));
            }
            kinds.push(if ty.contains("INT") {
                Kind::Int
            } else if ty.contains("CHAR") || ty.contains("CLOB") || ty.contains("TEXT") {
                Kind::Text
            } else if ty.contains("REAL") || ty.contains("FLOA") || ty.contains("DOUB") {
                Kind::Real
            } else {
                // NUMERIC affinity (TIMESTAMP...): never indexed here.
                Kind::Text
            });
        }
        drop(it);
        if kinds.len() != expected.len() {
            return Err(refuse(format!(
                "{} columns, not {}",
                kinds.len(),
                expected.len()
            )));
        }
        let table_root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [TABLE],
                |r| r.get(0),
            )
            .map_err(sql)?;
        let mut indexes = Vec::new();
        let mut st = conn
            .prepare("SELECT name, rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 ORDER BY name")
            .map_err(sql)?;
        let found: Vec<(String, i64)> = st
            .query_map([TABLE], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql)?
            .collect::<std::result::Result<_, _>>()
            .map_err(sql)?;
        for (name, root) in found {
            let unique: i64 = conn
                .query_row(
                    "SELECT \"unique\" FROM pragma_index_list(?1) WHERE name = ?2",
                    [TABLE, name.as_str()],
                    |r| r.get(0),
                )
                .map_err(sql)?;
            let mut st = conn
                .prepare("SELECT cid, desc, coll, key FROM pragma_index_xinfo(?1) ORDER BY seqno")
                .map_err(sql)?;
            let cols: Vec<(i64, i64, Option<String>, i64)> = st
                .query_map([name.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(sql)?
                .collect::<std::result::Result<_, _>>()
                .map_err(sql)?;
            let mut columns = Vec::new();
            for (cid, desc, coll, key) in cols {
                if key == 0 {
                    continue; // the rowid, added to every entry
                }
                if cid < 0 || desc != 0 || coll.as_deref().is_some_and(|c| c != "BINARY") {
                    return Err(refuse(format!(
                        "index {name} is not on plain columns in ascending BINARY order"
                    )));
                }
                columns.push(cid as usize);
            }
            indexes.push(IndexSpec {
                name,
                root: u32::try_from(root).map_err(|_| refuse("a root page out of range".into()))?,
                columns,
                unique: unique != 0,
            });
        }
        let mut keys = HashMap::new();
        for ix in &indexes {
            for &c in &ix.columns {
                let unique_text = ix.unique && ix.columns.len() == 1;
                keys.entry(c).or_insert_with(|| match kinds[c] {
                    Kind::Text if unique_text => KeyColumn::Arena {
                        text: String::new(),
                        ends: Vec::new(),
                        nulls: Vec::new(),
                    },
                    Kind::Text => KeyColumn::Codes {
                        codes: Vec::new(),
                        dict: foldhash::HashMap::default(),
                        values: Vec::new(),
                    },
                    Kind::Real => KeyColumn::Real(Vec::new()),
                    Kind::Int => KeyColumn::Int(Vec::new()),
                });
            }
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(db)
            .map_err(|e| Error::io(db, e))?;
        let mut head = [0u8; 100];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(db, e))?;
        let size = match u16::from_be_bytes([head[16], head[17]]) {
            1 => 65536,
            s => s as usize,
        };
        let reserved = head[20] as usize;
        let count = u32::from_be_bytes(head[28..32].try_into().expect("4 bytes"));
        let counter_valid = head[24..28] == head[92..96];
        let vacuum = u32::from_be_bytes(head[52..56].try_into().expect("4 bytes"));
        let encoding = u32::from_be_bytes(head[56..60].try_into().expect("4 bytes"));
        let len = file.metadata().map_err(|e| Error::io(db, e))?.len();
        let format = u32::from_be_bytes(head[44..48].try_into().expect("4 bytes"));
        if reserved != 0 || vacuum != 0 || encoding != 1 || format != 4 {
            return Err(refuse(format!(
                "reserved bytes {reserved}, auto-vacuum {vacuum}, text encoding {encoding}, schema format {format}"
            )));
        }
        if !counter_valid || u64::from(count) * size as u64 != len {
            return Err(refuse("its header's page count is not the file's".into()));
        }
        Ok(PredictionsWriter {
            pages: Pages::new(file, db, size, count)?,
            g: Geometry::new(size),
            table: TableTree::new(size, size),
            table_root: table_root as u32,
            indexes,
            keys,
            columns: kinds.len(),
            rows: 0,
            rec: Vec::new(),
        })
    }

    /// Appends one row (every column, in declared order) under the next
    /// rowid. Cost: the record's encoding and a copy into its leaf.
    ///
    /// # Errors
    /// [`Error::Io`] naming the database (a buffered write failed).
    pub(super) fn push(&mut self, values: &[Value<'_>]) -> Result<()> {
        debug_assert_eq!(values.len(), self.columns);
        self.rows += 1;
        for (&c, k) in &mut self.keys {
            k.push(values[c]);
        }
        let mut rec = std::mem::take(&mut self.rec);
        record(&mut rec, values);
        self.table.push(&mut self.pages, self.g, self.rows, &rec);
        self.rec = rec;
        self.pages.maybe_flush()
    }

    /// Writes the table's upper pages and every index, then the header.
    /// Cost: one sort of the rows a index (two threads), one write of each
    /// page.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when two rows share the key of a unique index
    /// (naming it; nothing the caller may use is left); [`Error::Io`].
    pub(super) fn finish(mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let size = self.pages.size;
        self.table.finish(&mut self.pages, self.table_root)?;
        let n = self.rows as usize;
        let mut ordinals: HashMap<usize, Vec<u32>> = HashMap::new();
        let mut rec = Vec::new();
        for ix in &self.indexes {
            for c in &ix.columns {
                if !ordinals.contains_key(c) {
                    ordinals.insert(*c, self.keys[c].ordinals());
                }
            }
            let cols: Vec<&KeyColumn> = ix.columns.iter().map(|c| &self.keys[c]).collect();
            let ords: Vec<&[u32]> = ix.columns.iter().map(|c| ordinals[c].as_slice()).collect();
            let order = sorted(&ords, n);
            if ix.unique {
                let same = |a: u32, b: u32| ords.iter().all(|o| o[a as usize] == o[b as usize]);
                let has_null = |a: u32| ords.iter().any(|o| o[a as usize] == 0);
                if let Some(w) = order
                    .windows(2)
                    .find(|w| same(w[0], w[1]) && !has_null(w[0]))
                {
                    return Err(Error::Corrupt {
                        path: self.pages.path.clone(),
                        reason: format!(
                            "rows {} and {} share the key of the unique index {}",
                            w[0] + 1,
                            w[1] + 1,
                            ix.name
                        ),
                    });
                }
            }
            let mut tree = IndexTree::new(size, size);
            let mut values: Vec<Value<'_>> = Vec::with_capacity(cols.len() + 1);
            for &row in &order {
                values.clear();
                values.extend(cols.iter().map(|k| k.value(row as usize)));
                values.push(Value::Int(i64::from(row) + 1));
                record(&mut rec, &values);
                tree.push(&mut self.pages, &rec);
                self.pages.maybe_flush()?;
            }
            tree.finish(&mut self.pages, ix.root)?;
        }
        self.pages.sync_writes()?;
        let mut head = [0u8; 100];
        let p = &self.pages;
        p.file.read_exact_at(&mut head, 0).map_err(|e| p.io(e))?;
        let counter = u32::from_be_bytes(head[24..28].try_into().expect("4 bytes")).wrapping_add(1);
        head[24..28].copy_from_slice(&counter.to_be_bytes());
        head[28..32].copy_from_slice(&p.count.to_be_bytes());
        head[92..96].copy_from_slice(&counter.to_be_bytes());
        p.file.write_all_at(&head, 0).map_err(|e| p.io(e))
    }
}

impl KeyColumn {
    /// Each row's value as its rank in SQLite's order (0 for NULL, equal
    /// values equal ranks): numbers by value, texts by bytes (BINARY).
    /// Sorting an index is then comparing small integers.
    fn ordinals(&self) -> Vec<u32> {
        /// Ranks of rows sorted by `cmp` (`equal` tells ties apart).
        fn ranks(
            n: usize,
            null: impl Fn(usize) -> bool + Sync,
            cmp: impl Fn(usize, usize) -> Ordering + Sync,
        ) -> Vec<u32> {
            let mut by: Vec<u32> = (0..n as u32).filter(|&r| !null(r as usize)).collect();
            by.par_sort_unstable_by(|&a, &b| cmp(a as usize, b as usize));
            let mut out = vec![0u32; n];
            let mut rank = 0;
            for (i, &r) in by.iter().enumerate() {
                if i == 0 || cmp(by[i - 1] as usize, r as usize) != Ordering::Equal {
                    rank += 1;
                }
                out[r as usize] = rank;
            }
            out
        }
        match self {
            KeyColumn::Codes { codes, values, .. } => {
                let mut by: Vec<u32> = (0..values.len() as u32).collect();
                by.sort_unstable_by(|&a, &b| {
                    values[a as usize]
                        .as_bytes()
                        .cmp(values[b as usize].as_bytes())
                });
                let mut rank = vec![0u32; values.len()];
                for (r, c) in by.into_iter().enumerate() {
                    rank[c as usize] = r as u32 + 1;
                }
                codes
                    .iter()
                    .map(|&c| if c == u32::MAX { 0 } else { rank[c as usize] })
                    .collect()
            }
            KeyColumn::Arena { text, ends, nulls } => {
                let at = |r: usize| {
                    let start = if r == 0 { 0 } else { ends[r - 1] };
                    &text.as_bytes()[start..ends[r]]
                };
                ranks(ends.len(), |r| nulls[r], |a, b| at(a).cmp(at(b)))
            }
            KeyColumn::Real(v) => ranks(
                v.len(),
                |r| v[r].is_none(),
                // No NaN is held; -0.0 and 0.0 are equal, as in SQLite.
                |a, b| v[a].partial_cmp(&v[b]).unwrap_or(Ordering::Equal),
            ),
            KeyColumn::Int(v) => ranks(v.len(), |r| v[r].is_none(), |a, b| v[a].cmp(&v[b])),
        }
    }
}

/// The rows (0-based) in the order of their ordinals, column by column,
/// then by row: an index's entry order.
fn sorted(ords: &[&[u32]], n: usize) -> Vec<u32> {
    if let [one] = ords {
        let mut keys: Vec<u64> = (0..n)
            .map(|r| (u64::from(one[r]) << 32) | r as u64)
            .collect();
        keys.par_sort_unstable();
        return keys.into_iter().map(|k| k as u32).collect();
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.par_sort_unstable_by(|&a, &b| {
        for o in ords {
            match o[a as usize].cmp(&o[b as usize]) {
                Ordering::Equal => {}
                x => return x,
            }
        }
        a.cmp(&b)
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small table with nirs4all's kinds of indexes: a text primary
    /// key, single-column text, real and integer indexes, a unique index
    /// over several columns.
    const SCHEMA: &str = "CREATE TABLE predictions (id TEXT PRIMARY KEY, grp TEXT, score REAL,
            n INTEGER, note TEXT, branch INTEGER);
        CREATE INDEX ix_grp ON predictions(grp);
        CREATE INDEX ix_score ON predictions(score);
        CREATE INDEX ix_n ON predictions(n);
        CREATE UNIQUE INDEX ix_key ON predictions(grp, note, branch);
        CREATE TABLE other (x TEXT);";
    const COLUMNS: [&str; 6] = ["id", "grp", "score", "n", "note", "branch"];
    const INDEXES: [(&str, &str); 5] = [
        ("sqlite_autoindex_predictions_1", "id"),
        ("ix_grp", "grp"),
        ("ix_score", "score"),
        ("ix_n", "n"),
        ("ix_key", "grp, note, branch"),
    ];

    #[derive(Debug, Clone)]
    struct Row {
        grp: Option<String>,
        score: Option<f64>,
        n: Option<i64>,
        note: String,
        branch: Option<i64>,
    }

    fn row() -> impl Strategy<Value = Row> {
        (
            prop::option::weighted(0.9, "[a-c]{0,3}"),
            prop::option::weighted(
                0.8,
                prop_oneof![
                    Just(0.0),
                    Just(-0.0),
                    Just(f64::NAN),
                    Just(f64::INFINITY),
                    -1e6..1e6f64
                ],
            ),
            prop::option::weighted(
                0.8,
                prop_oneof![Just(i64::MIN), Just(i64::MAX), -300i64..300, any::<i64>()],
            ),
            // Short notes, and long ones that spill to overflow pages in
            // the table and in the unique index.
            prop_oneof![8 => "[a-z]{0,12}", 1 => "[a-z]{600,5000}"],
            prop::option::weighted(0.5, 0i64..3),
        )
            .prop_map(|(grp, score, n, note, branch)| Row {
                grp,
                score,
                n,
                note,
                branch,
            })
    }

    /// Writes `rows` with the writer, and with SQLite's own inserts.
    fn both(rows: &[Row], page: usize) -> (tempfile::TempDir, Connection, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let direct = dir.path().join("direct.sqlite");
        let conn = Connection::open(&direct).unwrap();
        conn.execute_batch(&format!("PRAGMA page_size = {page};"))
            .unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let mut w = PredictionsWriter::open(&direct, &conn, &COLUMNS).unwrap();
        drop(conn);
        let ids: Vec<String> = (0..rows.len())
            .map(|i| format!("id-{:x}", i * 7919 % 100_003))
            .collect();
        for (r, id) in rows.iter().zip(&ids) {
            w.push(&[
                Value::Text(id),
                Value::text(r.grp.as_deref()),
                Value::real(r.score),
                Value::int(r.n),
                Value::Text(&r.note),
                Value::int(r.branch),
            ])
            .unwrap();
        }
        w.finish().unwrap();
        let mut sqlite = Connection::open(dir.path().join("sqlite.sqlite")).unwrap();
        sqlite.execute_batch(SCHEMA).unwrap();
        let tx = sqlite.transaction().unwrap();
        for (r, id) in rows.iter().zip(&ids) {
            tx.execute(
                "INSERT INTO predictions VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![id, r.grp, r.score, r.n, r.note, r.branch],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let direct = Connection::open(&direct).unwrap();
        (dir, direct, sqlite)
    }

    fn all(c: &Connection, sql: &str) -> Vec<Vec<rusqlite::types::Value>> {
        let mut st = c.prepare(sql).unwrap();
        let n = st.column_count();
        st.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    /// Rows with no repeated (grp, note, branch) key among non-null ones.
    fn distinct_keys(mut rows: Vec<Row>) -> Vec<Row> {
        let mut seen = std::collections::HashSet::new();
        rows.retain(|r| {
            r.grp.is_none()
                || r.branch.is_none()
                || seen.insert((r.grp.clone(), r.note.clone(), r.branch))
        });
        rows
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// The oracle is SQLite itself: the file passes its integrity
        /// check (every page, every index entry against its row), and
        /// every row and every index's order is what SQLite's own inserts
        /// give. Pages of 512 bytes make trees of three and four levels
        /// from a few thousand rows.
        #[test]
        fn pages_written_directly_are_what_sqlite_inserts(
            rows in prop::collection::vec(row(), 0..2500).prop_map(distinct_keys),
            page in prop_oneof![Just(512usize), Just(4096)],
        ) {
            let (_dir, direct, sqlite) = both(&rows, page);
            let check: String = direct.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            prop_assert_eq!(check, "ok");
            let table = "SELECT rowid, * FROM predictions ORDER BY rowid";
            prop_assert_eq!(all(&direct, table), all(&sqlite, table));
            for (ix, cols) in INDEXES {
                let q = format!("SELECT rowid FROM predictions INDEXED BY {ix} ORDER BY {cols}, rowid");
                prop_assert_eq!(all(&direct, &q), all(&sqlite, &q), "{}", ix);
            }
            direct.execute("INSERT INTO other VALUES ('after')", []).unwrap();
            let check: String = direct.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            prop_assert_eq!(check, "ok");
        }
    }

    #[test]
    fn a_repeated_key_of_a_unique_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("d.sqlite");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let mut w = PredictionsWriter::open(&db, &conn, &COLUMNS).unwrap();
        drop(conn);
        for id in ["a", "b"] {
            let row = [
                Value::Text(id),
                Value::Text("g"),
                Value::Null,
                Value::Null,
                Value::Text("x"),
                Value::Int(1),
            ];
            w.push(&row).unwrap();
        }
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("ix_key") && err.contains("d.sqlite"), "{err}");
    }

    #[test]
    fn the_page_at_one_gibibyte_is_never_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let size = 4096;
        let pending = (PENDING_BYTE / size as u64) as u32 + 1;
        let mut pages = Pages::new(File::create(&path).unwrap(), &path, size, pending - 2).unwrap();
        let got: Vec<u32> = (0..3).map(|_| pages.alloc()).collect();
        assert_eq!(got, [pending - 1, pending + 1, pending + 2]);
        assert_eq!(pages.buf.len(), 4 * size);
    }

    #[test]
    fn varints_read_back_as_sqlite_reads_them() {
        for v in [
            0u64,
            1,
            127,
            128,
            16383,
            16384,
            1 << 40,
            u64::MAX >> 8,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut x: u64 = 0;
            for (i, b) in out.iter().enumerate() {
                if i == 8 {
                    x = (x << 8) | u64::from(*b);
                    break;
                }
                x = (x << 7) | u64::from(b & 0x7f);
            }
            assert_eq!(x, v);
        }
    }
}
