"""n4a on a nirs4all `store.sqlite` workspace against Python's sqlite3, same sitting.

    python benches/store_vs_sqlite.py --store DIR --n4a target/release/n4a [--runs N]

Run by `benches/vs_duckdb.sh store`, which makes DIR: the 1M rows of
`big-10` written by `n4a export-store` (nirs4all 1.4.10's DDL verbatim, one
`predictions` row per prediction).

Timed, each a median of N runs after one untimed run:

- n4a, whole process, *store never seen*: a fresh N4A_CACHE_DIR each run,
  so there is no mirror and the call answers from SQLite in place (with
  N4A_STORE_MIRROR=off, so that the detached mirror update a first call
  starts does not run into the next timing; how long that update takes
  after a first call is measured once and printed); *later calls*: the
  mirror is fresh and the call reads its footers (plus the stamp's stats).
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

- top 10 of mse: n4a `top --metric mse --k 10`; SQL: the val rows of mse,
  ORDER BY val_score, dataset, rowid (n4a breaks ties by file order: the
  dataset's file, then its row, which is the rowid order).

Answers compared: totals and per-model counts equal; each page's ids equal
(ties in val_score broken by prediction id on both sides); the top lists'
ids equal.
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


def run(bin_, cache, *args, mirror=True):
    """One whole n4a process; its standard output (not parsed: parsing a
    3.5 MB summary in Python would be timed as n4a's)."""
    env = dict(os.environ, N4A_CACHE_DIR=cache)
    if not mirror:
        env["N4A_STORE_MIRROR"] = "off"
    return subprocess.run([bin_, *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, check=True).stdout


def n4a(bin_, cache, *args, mirror=True):
    return json.loads(run(bin_, cache, *args, mirror=mirror))


TOP = ("SELECT prediction_id FROM {t} WHERE metric = 'mse' AND partition = 'val' "
       "AND val_score IS NOT NULL AND val_score = val_score "
       "ORDER BY val_score ASC, dataset_name ASC, rowid ASC LIMIT 10")


def sql_top(store):
    con = connect(store)
    ids = [r[0] for r in con.execute(TOP.format(t="predictions")).fetchall()]
    con.close()
    return ids


def duck_top(store):
    con = duck(store)
    ids = [r[0] for r in con.execute(TOP.format(t="s.predictions")).fetchall()]
    con.close()
    return ids


def mirror_seconds(bin_, store, cache):
    """Seconds from a first call's end until its detached mirror update is
    done (the stamp file written)."""
    n4a(bin_, cache, "summary", store, "--format", "json")
    t = time.perf_counter()
    while True:
        stores = os.path.join(cache, "stores")
        done = os.path.isdir(stores) and any(
            os.path.isfile(os.path.join(stores, d, ".n4a-store-stamp")) for d in os.listdir(stores))
        if done:
            return time.perf_counter() - t
        if time.perf_counter() - t > 600:
            return float("nan")
        time.sleep(0.05)


def row(name, t, peer):
    ratio = f"{t / peer:>8.3f}" if peer else f"{'':>8}"
    print(f"{name:<44} {t:>9.4f} {ratio}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--n4a", required=True)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    store = a.store
    work = tempfile.mkdtemp(prefix="n4a-store-bench-")
    warm = os.path.join(work, "warm")
    with_duck = have_duckdb()

    def fresh_run(*args):
        # Never seen: a fresh cache, so no mirror; answered in place. The
        # mirror update a first call starts is turned off here (same code
        # path, minus a detached process that would run into the next
        # timing); its own duration is measured below.
        cold = os.path.join(work, "cold")
        shutil.rmtree(cold, ignore_errors=True)
        return run(a.n4a, cold, *args, mirror=False)

    def fresh(*args):
        return json.loads(fresh_run(*args))

    print(f"store: {store} ({os.path.getsize(os.path.join(store, 'store.sqlite')) / 2**20:.0f} MiB); "
          f"median of {a.runs} runs after one untimed, whole process for n4a, in-process for the peers")
    print(f"{'':<44} {'seconds':>9} {'n4a/DuckDB' if with_duck else ''}")

    sargs = ("summary", store, "--format", "json")
    s = fresh(*sargs)
    t_first = median_time(lambda: fresh_run(*sargs), a.runs)
    bg = mirror_seconds(a.n4a, store, warm)
    t_later = median_time(lambda: run(a.n4a, warm, *sargs), a.runs)
    t_sql = median_time(lambda: sql_summary(store), a.runs)
    t_dash = median_time(lambda: dashboard_summary(store), min(a.runs, 3))
    t_duck = median_time(lambda: duck_summary(store), a.runs) if with_duck else None
    mine = {"total": s["total_predictions"], "datasets": s["total_datasets"],
            "models": sorted((m["name"], m["count"]) for m in s["models"])}
    same = mine == sql_summary(store) and (not with_duck or mine == duck_summary(store))
    print("summary")
    row("  n4a, store never seen (in place)", t_first, t_duck)
    row("  n4a, later calls (mirror fresh)", t_later, t_duck)
    row("  sqlite3, SQL aggregates", t_sql, t_duck)
    row("  sqlite3, dashboard way", t_dash, t_duck)
    if with_duck:
        row("  DuckDB sqlite_scanner, fresh connection", t_duck, t_duck)
    print(f"  the mirror update a first call starts: done {bg:.1f} s after it (detached)")
    print(f"  answers: {'same answer' if same else 'ANSWERS DIFFER'}")

    for off in (0, 100_000):
        args = ("query", store, "--partition", "val", "--sort", "val_score:asc", "--offset", str(off),
                "--limit", "50", "--format", "json")
        q = fresh(*args)
        t_f = median_time(lambda: fresh_run(*args), a.runs)
        t_n = median_time(lambda: run(a.n4a, warm, *args), a.runs)
        t_s = median_time(lambda: sql_page(store, off), a.runs)
        t_k = median_time(lambda: duck_page(store, off), a.runs) if with_duck else None
        got = (q["total"], [r["id"] for r in q["records"]])
        later = n4a(a.n4a, warm, *args)
        same = got == (later["total"], [r["id"] for r in later["records"]]) == sql_page(store, off) \
            and (not with_duck or got == duck_page(store, off))
        print(f"page: partition val, val_score asc, 50 rows at offset {off:,}, with the total")
        row("  n4a, store never seen (in place)", t_f, t_k)
        row("  n4a, later calls (mirror fresh)", t_n, t_k)
        row("  sqlite3, COUNT + ORDER BY LIMIT", t_s, t_k)
        if with_duck:
            row("  DuckDB sqlite_scanner, fresh connection", t_k, t_k)
        print(f"  answers: {'same answer' if same else 'ANSWERS DIFFER'}")

    targs = ("top", store, "--metric", "mse", "--k", "10", "--format", "json")
    t = fresh(*targs)
    t_f = median_time(lambda: fresh_run(*targs), a.runs)
    t_n = median_time(lambda: run(a.n4a, warm, *targs), a.runs)
    t_s = median_time(lambda: sql_top(store), a.runs)
    t_k = median_time(lambda: duck_top(store), a.runs) if with_duck else None
    ids = [r["id"] for r in t["records"]]
    later = [r["id"] for r in n4a(a.n4a, warm, *targs)["records"]]
    same = ids == later == sql_top(store) and (not with_duck or ids == duck_top(store))
    print("top 10 of mse (val rows, lowest first)")
    row("  n4a, store never seen (in place)", t_f, t_k)
    row("  n4a, later calls (mirror fresh)", t_n, t_k)
    row("  sqlite3, ORDER BY LIMIT", t_s, t_k)
    if with_duck:
        row("  DuckDB sqlite_scanner, fresh connection", t_k, t_k)
    print(f"  answers: {'same answer' if same else 'ANSWERS DIFFER'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
