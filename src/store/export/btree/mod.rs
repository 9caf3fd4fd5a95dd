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
//! one sort permutation (4 bytes a row) and 24 MiB of pages in flight.
//!
//! In data-flow order: `record` (a row's values as a payload), `pages`
//! (the file's pages, appended and written), `trees` (table and index
//! b-trees built bottom-up), then the writer here, which keeps the
//! indexed columns' keys and sorts them.

mod pages;
mod record;
mod trees;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::slice::ParallelSliceMut;
use rusqlite::Connection;

use crate::error::{Error, Result};
use pages::Pages;
use record::record;
pub(in crate::store::export) use record::Value;
use trees::{Geometry, IndexTree, TableTree};

/// The table this writer fills.
const TABLE: &str = "predictions";

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
mod tests;
