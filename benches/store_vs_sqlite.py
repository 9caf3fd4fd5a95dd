"""n4a on a nirs4all `store.sqlite` workspace against Python's sqlite3, same sitting.

    python benches/store_vs_sqlite.py --store DIR --n4a target/release/n4a [--runs N]

Run by `benches/vs_duckdb.sh store`, which makes DIR: the 1M rows of
`big-10` written by `n4a export-store` (nirs4all 1.4.10's DDL verbatim, one
`predictions` row per prediction).

Timed, each a median of N runs after one untimed run:

- summary, n4a: `n4a summary DIR --format json`, whole process.
  *first*: a fresh N4A_CACHE_DIR each run, so the call imports the store
  into its mirror (SQLite read + .meta.parquet write); *later*: the mirror
  is fresh and the call reads its footers only (plus the stamp's stats).
- summary, dashboard way (in-process, sqlite3): what nirs4all's dashboard
  does over a store: `query_predictions()` unpaged (SELECT every column of
  every prediction, ORDER BY created_at DESC, fetchall), then count and
  group in Python.
- summary, SQL way (in-process, sqlite3): the same answer from COUNT/GROUP BY
  (what a careful sqlite3 user writes), for an honest floor.
- page (partition val, sorted by val_score asc, 50 rows, offsets 0 and
  100,000) with its total: n4a `query`, whole process, mirror fresh; the
  dashboard way runs the query twice (unpaged to count, paged for the rows);
  the SQL way is COUNT(*) plus ORDER BY ... LIMIT/OFFSET.

- DuckDB's SQLite scanner (in-process, the `sqlite_scanner` extension from
  PyPI's `duckdb-extension-sqlite-scanner`, DuckDB 1.5.5 as that package
  pins): a fresh connection, ATTACH (TYPE sqlite, READ_ONLY) and the SQL
  way's queries, per run.

Answers compared: totals and per-model counts equal; each page's ids equal
(ties in val_score broken by prediction id on both sides).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time


def median_time(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def connect(store):
    db = os.path.join(store, "store.sqlite")
    con = sqlite3.connect(f"file:{os.path.abspath(db)}?mode=ro", uri=True)
    con.execute("PRAGMA query_only=ON")
    return con


def dashboard_summary(store):
    con = connect(store)
    cur = con.execute("SELECT * FROM predictions ORDER BY created_at DESC")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    models = {}
    for r in rows:
        m = models.setdefault(r["model_name"], [0, 0.0, 0])
        m[0] += 1
        if r["val_score"] is not None:
            m[1] += r["val_score"]
            m[2] += 1
    datasets = {r["dataset_name"] for r in rows}
    con.close()
    return {"total": len(rows), "datasets": len(datasets),
            "models": sorted((k, v[0]) for k, v in models.items())}


def sql_summary(store):
    con = connect(store)
    total, datasets = con.execute("SELECT COUNT(*), COUNT(DISTINCT dataset_name) FROM predictions").fetchone()
    models = con.execute("SELECT model_name, COUNT(*), AVG(val_score) FROM predictions GROUP BY model_name").fetchall()
    con.close()
    return {"total": total, "datasets": datasets, "models": sorted((m, n) for m, n, _ in models)}


PAGE = ("SELECT prediction_id FROM predictions WHERE partition = 'val' "
        "ORDER BY val_score ASC, prediction_id ASC LIMIT 50 OFFSET ?")


def dashboard_page(store, offset):
    con = connect(store)
    total = len(con.execute("SELECT * FROM predictions WHERE partition = 'val' ORDER BY created_at DESC").fetchall())
    ids = [r[0] for r in con.execute(PAGE.replace("SELECT prediction_id", "SELECT prediction_id, *"), [offset]).fetchall()]
    con.close()
    return total, ids


def sql_page(store, offset):
    con = connect(store)
    total = con.execute("SELECT COUNT(*) FROM predictions WHERE partition = 'val'").fetchone()[0]
    ids = [r[0] for r in con.execute(PAGE, [offset]).fetchall()]
    con.close()
    return total, ids


def duck(store):
    import duckdb
    import duckdb_extensions

    con = duckdb.connect()
    duckdb_extensions.import_extension("sqlite_scanner", con=con)
    con.execute(f"ATTACH '{os.path.join(store, 'store.sqlite')}' AS s (TYPE sqlite, READ_ONLY)")
    return con


def duck_summary(store):
    con = duck(store)
    total, datasets = con.execute("SELECT COUNT(*), COUNT(DISTINCT dataset_name) FROM s.predictions").fetchone()
    models = con.execute("SELECT model_name, COUNT(*), AVG(val_score) FROM s.predictions GROUP BY model_name").fetchall()
    con.close()
    return {"total": total, "datasets": datasets, "models": sorted((m, n) for m, n, _ in models)}


def duck_page(store, offset):
    con = duck(store)
    total = con.execute("SELECT COUNT(*) FROM s.predictions WHERE partition = 'val'").fetchone()[0]
    ids = [r[0] for r in con.execute(PAGE.replace("FROM predictions", "FROM s.predictions"), [offset]).fetchall()]
    con.close()
    return total, ids


def have_duckdb():
    try:
        import duckdb_extensions  # noqa: F401

        return True
    except ImportError:
        return False


def n4a(bin_, cache, *args):
    env = dict(os.environ, N4A_CACHE_DIR=cache)
    out = subprocess.run([bin_, *args], env=env, capture_output=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--n4a", required=True)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    store = a.store
    work = tempfile.mkdtemp(prefix="n4a-store-bench-")
    warm = os.path.join(work, "warm")

    def first():
        cold = os.path.join(work, "cold")
        shutil.rmtree(cold, ignore_errors=True)
        n4a(a.n4a, cold, "summary", store, "--format", "json")

    first_runs = max(1, min(a.runs, 3))
    t_first = median_time(first, first_runs)
    s = n4a(a.n4a, warm, "summary", store, "--format", "json")
    t_later = median_time(lambda: n4a(a.n4a, warm, "summary", store, "--format", "json"), a.runs)
    t_dash = median_time(lambda: dashboard_summary(store), a.runs)
    t_sql = median_time(lambda: sql_summary(store), a.runs)
    with_duck = have_duckdb()
    t_duck = median_time(lambda: duck_summary(store), a.runs) if with_duck else None
    mine = {"total": s["total_predictions"], "datasets": s["total_datasets"],
            "models": sorted((m["name"], m["count"]) for m in s["models"])}
    same = mine == dashboard_summary(store) == sql_summary(store) and (not with_duck or mine == duck_summary(store))
    ok = "same answer" if same else "ANSWERS DIFFER"
    print(f"store: {store} ({mine['total']:,} predictions, {mine['datasets']} datasets, "
          f"{os.path.getsize(os.path.join(store, 'store.sqlite')) / 2**20:.0f} MiB)")
    print(f"{'summary':<34} {'seconds':>9} {'vs dashboard':>13} {'vs SQL':>8}")
    for name, t in [(f"n4a first call (imports, {first_runs} runs)", t_first), ("n4a later calls", t_later),
                    ("sqlite3, dashboard way", t_dash), ("sqlite3, SQL aggregates", t_sql),
                    *([("DuckDB sqlite_scanner", t_duck)] if with_duck else [])]:
        print(f"{name:<34} {t:>9.4f} {t / t_dash:>13.3f} {t / t_sql:>8.3f}")
    print(f"answers: {ok}")
    print()
    print(f"{'page (val, val_score asc, 50)':<34} {'seconds':>9} {'vs dashboard':>13} {'vs SQL':>8}")
    for off in (0, 100_000):
        args = ("query", store, "--partition", "val", "--sort", "val_score:asc", "--offset", str(off),
                "--limit", "50", "--format", "json")
        q = n4a(a.n4a, warm, *args)
        t_n = median_time(lambda: n4a(a.n4a, warm, *args), a.runs)
        t_d = median_time(lambda: dashboard_page(store, off), a.runs)
        t_s = median_time(lambda: sql_page(store, off), a.runs)
        t_k = median_time(lambda: duck_page(store, off), a.runs) if with_duck else None
        got = (q["total"], [r["id"] for r in q["records"]])
        same = got == dashboard_page(store, off) == sql_page(store, off) and (not with_duck or got == duck_page(store, off))
        ok = "same answer" if same else "ANSWERS DIFFER"
        for name, t in [(f"n4a query, offset {off:,}", t_n), ("sqlite3, dashboard way (twice)", t_d),
                        ("sqlite3, COUNT + ORDER BY LIMIT", t_s),
                        *([("DuckDB sqlite_scanner", t_k)] if with_duck else [])]:
            print(f"{name:<34} {t:>9.4f} {t / t_d:>13.3f} {t / t_s:>8.3f}")
        print(f"answers: {ok}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
