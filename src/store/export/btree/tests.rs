use super::pages::PENDING_BYTE;
use super::record::{put_varint, varint_len};
use super::*;
use proptest::prelude::*;
use std::fs::File;

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
