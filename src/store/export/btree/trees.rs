//! Table and index b-trees built bottom-up from keys in order: cells packed
//! into leaves as they come, each full page's divider pushed into the level
//! above, the last level written over the tree's root page.

use super::pages::Pages;
use super::record::{put_varint, varint_len};
use crate::error::Result;

/// Page geometry and payload limits (fileformat2, "B-tree Page Format").
#[derive(Clone, Copy)]
pub(super) struct Geometry {
    pub(super) usable: usize,
    /// Largest payload kept whole on a table leaf / an index page.
    pub(super) table_max: usize,
    pub(super) index_max: usize,
    /// Smallest local part of a payload that spills.
    pub(super) min_local: usize,
}

impl Geometry {
    pub(super) fn new(usable: usize) -> Self {
        Geometry {
            usable,
            table_max: usable - 35,
            index_max: (usable - 12) * 64 / 255 - 23,
            min_local: (usable - 12) * 32 / 255 - 23,
        }
    }

    pub(super) fn local(&self, payload: usize, max: usize) -> usize {
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
pub(super) fn put_payload(
    pages: &mut Pages,
    g: Geometry,
    max: usize,
    cell: &mut Vec<u8>,
    payload: &[u8],
) {
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
pub(super) struct PageBuild {
    pub(super) data: Vec<u8>,
    pub(super) kind: u8,
    pub(super) header: usize,
    pub(super) usable: usize,
    pub(super) cells: usize,
    pub(super) top: usize,
}

pub(super) const TABLE_LEAF: u8 = 0x0d;
pub(super) const TABLE_INTERIOR: u8 = 0x05;
pub(super) const INDEX_LEAF: u8 = 0x0a;
pub(super) const INDEX_INTERIOR: u8 = 0x02;

impl PageBuild {
    pub(super) fn new(kind: u8, size: usize, usable: usize) -> Self {
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

    pub(super) fn room(&self, cell: usize) -> bool {
        self.header + 2 * (self.cells + 1) + cell <= self.top
    }

    pub(super) fn add(&mut self, cell: &[u8]) {
        self.top -= cell.len();
        self.data[self.top..self.top + cell.len()].copy_from_slice(cell);
        let ptr = self.header + 2 * self.cells;
        self.data[ptr..ptr + 2].copy_from_slice(&(self.top as u16).to_be_bytes());
        self.cells += 1;
    }

    /// The page's bytes with its header written; `right` is an interior
    /// page's right-most child.
    pub(super) fn finish(&mut self, right: u32) -> &[u8] {
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

    pub(super) fn reset(&mut self) {
        self.data.fill(0);
        self.cells = 0;
        self.top = self.usable;
    }
}

/// A table b-tree written bottom-up from rows in `rowid` order.
pub(super) struct TableTree {
    pub(super) leaf: PageBuild,
    pub(super) leaf_max: i64,
    pub(super) leaves: usize,
    /// Interior levels: the pending (child, its largest rowid) of each.
    pub(super) levels: Vec<Level<i64>>,
    pub(super) cell: Vec<u8>,
}

/// An interior level: the entries of the page being filled, and whether
/// a page of this level was written already (else it may be the root).
pub(super) struct Level<K> {
    pub(super) pending: Vec<(u32, K)>,
    pub(super) bytes: usize,
    pub(super) flushed: bool,
}

impl<K> Level<K> {
    pub(super) fn new() -> Self {
        Level {
            pending: Vec::new(),
            bytes: 0,
            flushed: false,
        }
    }
}

impl TableTree {
    pub(super) fn new(size: usize, usable: usize) -> Self {
        TableTree {
            leaf: PageBuild::new(TABLE_LEAF, size, usable),
            leaf_max: 0,
            leaves: 0,
            levels: Vec::new(),
            cell: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, pages: &mut Pages, g: Geometry, rowid: i64, payload: &[u8]) {
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
    pub(super) fn up(&mut self, pages: &mut Pages, at: usize, pgno: u32, key: i64) {
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
            let mut page = table_interior(self.leaf.data.len(), usable, level.pending.drain(..));
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
    pub(super) fn finish(mut self, pages: &mut Pages, root: u32) -> Result<()> {
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
            let mut page = table_interior(
                self.leaf.data.len(),
                self.leaf.usable,
                level.pending.drain(..),
            );
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
pub(super) struct IndexTree {
    pub(super) size: usize,
    pub(super) usable: usize,
    pub(super) g: Geometry,
    /// The leaf being filled: its cells, one arena.
    pub(super) leaf: Vec<u8>,
    pub(super) leaf_cells: Vec<(usize, usize)>,
    /// The leaf's cells' bytes.
    pub(super) leaf_bytes: usize,
    /// Interior levels: pending (left child, divider cell body).
    pub(super) levels: Vec<Level<Vec<u8>>>,
    pub(super) leaves: usize,
}

impl IndexTree {
    pub(super) fn new(size: usize, usable: usize) -> Self {
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

    pub(super) fn leaf_page(&self, cells: &[(usize, usize)]) -> PageBuild {
        let mut page = PageBuild::new(INDEX_LEAF, self.size, self.usable);
        for &(a, b) in cells {
            page.add(&self.leaf[a..b]);
        }
        page
    }

    /// One entry (a record), after every smaller one.
    pub(super) fn push(&mut self, pages: &mut Pages, payload: &[u8]) {
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
    pub(super) fn up(&mut self, pages: &mut Pages, at: usize, pgno: u32, divider: Vec<u8>) {
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
            let mut page = index_interior(self.size, self.usable, level.pending.drain(..));
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
    pub(super) fn finish(mut self, pages: &mut Pages, root: u32) -> Result<()> {
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
            let mut page = index_interior(self.size, self.usable, level.pending.drain(..));
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

/// A table interior page of `(left child, its largest rowid)` cells, in
/// order.
fn table_interior(
    size: usize,
    usable: usize,
    cells: impl Iterator<Item = (u32, i64)>,
) -> PageBuild {
    let mut page = PageBuild::new(TABLE_INTERIOR, size, usable);
    let mut cell = Vec::with_capacity(13);
    for (child, k) in cells {
        cell.clear();
        cell.extend_from_slice(&child.to_be_bytes());
        put_varint(&mut cell, k as u64);
        page.add(&cell);
    }
    page
}

/// An index interior page of `(left child, divider)` cells, in order.
fn index_interior(
    size: usize,
    usable: usize,
    cells: impl Iterator<Item = (u32, Vec<u8>)>,
) -> PageBuild {
    let mut page = PageBuild::new(INDEX_INTERIOR, size, usable);
    let mut cell = Vec::new();
    for (child, d) in cells {
        cell.clear();
        cell.extend_from_slice(&child.to_be_bytes());
        cell.extend_from_slice(&d);
        page.add(&cell);
    }
    page
}
